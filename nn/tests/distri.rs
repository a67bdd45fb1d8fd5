//! DistriOptimizer over the local backend (ranks as threads): bitwise the
//! same training as one process with the same global batches, sharded
//! optimizer state gathered into checkpoints and resumed from, the bf16
//! wire within its bound, and a departed rank failing the others.

use std::path::PathBuf;
use std::time::Duration;

use bigdl_comm::{Communicator, Wire, local};
use bigdl_nn::data::DataLoader;
use bigdl_nn::layers::*;
use bigdl_nn::train::{
    Clip, DistriOptimizer, LocalOptimizer, Parallelism, Report, Trigger, ValidationMethod,
};
use bigdl_nn::{
    Adam, ClassNLLCriterion, Criterion, Module, OptimMethod, Sequential, Sgd, manual_seed,
};

mod common;

fn tmpdir(name: &str) -> PathBuf {
    common::tmpdir("distri", name)
}

use common::toy;

type Make = fn() -> Box<dyn Module>;

fn mlp(hidden: usize, dropout: bool) -> Box<dyn Module> {
    let mut m = Sequential::new()
        .add(Flatten::new())
        .add(Linear::new(16, hidden).unwrap())
        .add(BatchNormalization::new(hidden).unwrap())
        .add(ReLU::new());
    if dropout {
        m = m.add(Dropout::new(0.2).unwrap());
    }
    Box::new(
        m.add(Linear::new(hidden, 3).unwrap())
            .add(LogSoftMax::new()),
    )
}

fn with_dropout() -> Box<dyn Module> {
    mlp(8, true)
}

fn without_dropout() -> Box<dyn Module> {
    mlp(8, false)
}

/// 2563 weights: enough for the bf16 wire to compress them.
fn wide() -> Box<dyn Module> {
    mlp(128, false)
}

fn nll() -> Box<dyn Criterion> {
    Box::new(ClassNLLCriterion::new())
}

fn optim(adam: bool) -> Box<dyn OptimMethod> {
    if adam {
        Box::new(Adam::new(0.01))
    } else {
        Box::new(Sgd::new(0.1).with_momentum(0.9).with_weight_decay(1e-3))
    }
}

fn validation() -> (DataLoader, Vec<ValidationMethod>) {
    (
        DataLoader::new(toy(), 32),
        vec![ValidationMethod::Top1, ValidationMethod::Loss(nll())],
    )
}

/// One process with `replicas` replicas (the reference).
fn single(replicas: usize, adam: bool, make: Make, end: Trigger) -> (Vec<f32>, Report) {
    // A fresh thread: the initialisation seed is per thread.
    std::thread::spawn(move || {
        manual_seed(5);
        let (vdata, methods) = validation();
        let mut o = LocalOptimizer::new(
            make(),
            &nll,
            optim(adam),
            DataLoader::new(toy(), 10).shuffle(9),
        )
        .unwrap()
        .end_when(end)
        .clip(Clip::Value(-1.0, 1.0))
        .validate(vdata, methods, Trigger::EveryEpoch);
        o.set_parallelism(Parallelism::DataParallel(replicas), &nll)
            .unwrap();
        let r = o.optimize(&mut |_| {}, &mut |_| {}).unwrap();
        (o.parameters().weight.to_vec(), r)
    })
    .join()
    .unwrap()
}

fn distri<C: Communicator>(
    comm: C,
    adam: bool,
    make: Make,
    end: Trigger,
    ckpt: Option<(&PathBuf, bool)>,
) -> bigdl_nn::Result<(Vec<f32>, Report)> {
    manual_seed(5);
    let (vdata, methods) = validation();
    let mut o = DistriOptimizer::new(
        make(),
        &nll,
        optim(adam),
        DataLoader::new(toy(), 10).shuffle(9),
        comm,
        1,
    )?
    .end_when(end)
    .clip(Clip::Value(-1.0, 1.0))
    .validate(vdata, methods, Trigger::EveryEpoch);
    if let Some((dir, resume)) = ckpt {
        o = o.checkpoint(dir.clone(), Trigger::SeveralIteration(5), resume);
    }
    let r = o.optimize(&mut |_| {}, &mut |_| {})?;
    Ok((o.parameters().weight.to_vec(), r))
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn ranks_train_bitwise_like_one_process() {
    for adam in [false, true] {
        for n in [1, 2, 4] {
            let end = Trigger::MaxEpoch(2);
            let (want, wr) = single(n, adam, with_dropout, end.clone());
            let got = local::run(n, |c| {
                distri(c, adam, with_dropout, end.clone(), None).unwrap()
            });
            for (r, (w, rep)) in got.iter().enumerate() {
                assert!(
                    same_bits(w, &want),
                    "adam {adam}, {n} ranks: rank {r} differs"
                );
                assert_eq!(rep.state, wr.state);
                // The global validation score, from each rank's part.
                for ((name, a), (_, b)) in rep.validation.iter().zip(&wr.validation) {
                    assert!((a - b).abs() < 1e-6, "{name}: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn sharded_state_checkpoints_and_resumes_bitwise() {
    for adam in [false, true] {
        let dir = tmpdir(&format!("resume-{adam}"));
        let end = Trigger::MaxIteration(17);
        let (want, _) = single(2, adam, without_dropout, end.clone());
        // Stop at 12 (checkpoints at 5, 10 and 12), then resume to 17.
        local::run(2, |c| {
            distri(
                c,
                adam,
                without_dropout,
                Trigger::MaxIteration(12),
                Some((&dir, false)),
            )
            .unwrap()
        });
        let got = local::run(2, |c| {
            distri(c, adam, without_dropout, end.clone(), Some((&dir, true))).unwrap()
        });
        for (w, rep) in &got {
            assert!(rep.resumed_from.is_some());
            assert!(same_bits(w, &want), "adam {adam}: resumed run differs");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn bf16_wire_trains_close_to_exact() {
    let end = Trigger::MaxEpoch(2);
    let (want, wr) = single(2, false, wide, end.clone());
    let got = local::run(2, |c| {
        distri(c.with_wire(Wire::Bf16), false, wide, end.clone(), None).unwrap()
    });
    assert!(same_bits(&got[0].0, &got[1].0), "ranks disagree");
    assert!(!same_bits(&got[0].0, &want), "nothing was compressed");
    // 20 steps, each with gradients and weights rounded to 8 bits (the
    // forward pass sees rounded weights; the optimizer keeps exact ones).
    let scale = want.iter().fold(0f32, |m, w| m.max(w.abs()));
    let worst = got[0]
        .0
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst < 0.1 * scale,
        "max |difference| {worst} for weights up to {scale}"
    );
    let (acc, want_acc) = (got[0].1.validation[0].1, wr.validation[0].1);
    assert!(
        (acc - want_acc).abs() < 0.05,
        "accuracy {acc} vs {want_acc}"
    );
}

#[test]
fn a_departed_rank_fails_the_others() {
    let results = local::run(3, |c| {
        let c = c.with_timeout(Duration::from_secs(5));
        let end = if c.rank() == 1 {
            Trigger::MaxIteration(3)
        } else {
            Trigger::MaxIteration(30)
        };
        distri(c, false, without_dropout, end, None).map(|_| ())
    });
    // Rank 1 stops after 3 iterations (its end-of-training gather meets
    // the others' next reduce-scatter); the others must fail, not hang.
    for r in [0, 2] {
        let e = results[r].as_ref().unwrap_err().to_string();
        assert!(
            e.contains("is gone") || e.contains("timed out") || e.contains("rank 1 sent"),
            "{e}"
        );
    }
}
