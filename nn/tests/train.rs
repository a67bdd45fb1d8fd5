//! LocalOptimizer end to end on a small synthetic data set: learning,
//! bitwise-exact resume from checkpoints (at epoch ends and mid-epoch, with
//! batch norm and dropout state), corrupt checkpoints skipped, summaries.

use std::path::PathBuf;

use bigdl_nn::data::DataLoader;
use bigdl_nn::layers::*;
use bigdl_nn::train::{Clip, LocalOptimizer, Parallelism, Trigger, ValidationMethod, checkpoint};
use bigdl_nn::{ClassNLLCriterion, Criterion, Module, Sequential, Sgd, manual_seed};

mod common;

fn tmpdir(name: &str) -> PathBuf {
    common::tmpdir("train", name)
}

use common::toy;

fn model() -> Box<dyn Module> {
    Box::new(
        Sequential::new()
            .add(Reshape::new(&[16]))
            .add(Linear::new(16, 8).unwrap())
            .add(BatchNormalization::new(8).unwrap())
            .add(ReLU::new())
            .add(Dropout::new(0.2).unwrap())
            .add(Linear::new(8, 3).unwrap())
            .add(LogSoftMax::new()),
    )
}

fn nll() -> Box<dyn Criterion> {
    Box::new(ClassNLLCriterion::new())
}

fn optimizer(end: Trigger, replicas: usize) -> LocalOptimizer {
    manual_seed(5);
    let data = DataLoader::new(toy(), 10).shuffle(9);
    let mut o = LocalOptimizer::new(
        model(),
        &nll,
        Box::new(Sgd::new(0.1).with_momentum(0.9)),
        data,
    )
    .unwrap()
    .end_when(end)
    .validate(
        DataLoader::new(toy(), 32),
        vec![ValidationMethod::Top1, ValidationMethod::Loss(nll())],
        Trigger::EveryEpoch,
    );
    o.set_parallelism(Parallelism::DataParallel(replicas), &nll)
        .unwrap();
    o
}

fn weights(o: &LocalOptimizer) -> Vec<f32> {
    o.parameters().weight.to_vec()
}

#[test]
fn learns_the_toy_problem() {
    let mut o = optimizer(Trigger::MaxEpoch(8), 2);
    let mut losses = Vec::new();
    let r = o
        .optimize(&mut |p| losses.push(p.state.loss), &mut |_| {})
        .unwrap();
    assert_eq!((r.state.epoch, r.state.iteration), (8, 80));
    let mean = |l: &[f32]| l.iter().sum::<f32>() / l.len() as f32;
    let (first, last) = (mean(&losses[..10]), mean(&losses[losses.len() - 10..]));
    assert!(
        last < first * 0.5,
        "first epoch {first}, last {last}: {losses:?}"
    );
    let top1 = r
        .validation
        .iter()
        .find(|(n, _)| n == "Top1Accuracy")
        .unwrap()
        .1;
    assert!(top1 > 0.9, "top-1 {top1}");
}

#[test]
fn resume_is_bitwise_exact_and_skips_corrupt_checkpoints() {
    for (name, every) in [
        ("epochs", Trigger::EveryEpoch),
        ("iterations", Trigger::SeveralIteration(7)),
    ] {
        let dir = tmpdir(name);
        // Uninterrupted: 5 epochs.
        let mut straight = optimizer(Trigger::MaxEpoch(5), 2);
        straight.optimize(&mut |_| {}, &mut |_| {}).unwrap();
        // Interrupted after 23 iterations (mid-epoch), checkpointing as it goes.
        let mut first =
            optimizer(Trigger::MaxIteration(23), 2).checkpoint(dir.clone(), every.clone(), false);
        first.optimize(&mut |_| {}, &mut |_| {}).unwrap();
        // A corrupt newer checkpoint is skipped with a warning naming it.
        let bogus = dir.join(checkpoint::file_name(999));
        std::fs::write(&bogus, b"BDLCKPT\0garbage").unwrap();
        let mut resumed =
            optimizer(Trigger::MaxEpoch(5), 2).checkpoint(dir.clone(), every.clone(), true);
        let mut warnings = Vec::new();
        let r = resumed
            .optimize(&mut |_| {}, &mut |m| warnings.push(m))
            .unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("skipping") && w.contains("checkpoint.000000000999.bdl")),
            "{warnings:?}"
        );
        assert!(r.resumed_from.is_some());
        assert_eq!(r.state.iteration, 50);
        assert_eq!(weights(&straight), weights(&resumed), "{name}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn checkpoints_are_checked_before_use() {
    let dir = tmpdir("check");
    let mut o =
        optimizer(Trigger::MaxIteration(3), 1).checkpoint(dir.clone(), Trigger::Never, false);
    o.optimize(&mut |_| {}, &mut |_| {}).unwrap();
    let path = dir.join(checkpoint::file_name(3));
    let good = std::fs::read(&path).unwrap();
    let try_load = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let mut fresh =
            optimizer(Trigger::MaxIteration(3), 1).checkpoint(dir.clone(), Trigger::Never, true);
        let mut warnings = Vec::new();
        let r = fresh
            .optimize(&mut |_| {}, &mut |m| warnings.push(m))
            .unwrap();
        (r.resumed_from.is_some(), warnings.join("\n"))
    };
    assert!(try_load(&good).0);
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let (ok, w) = try_load(&flipped);
    assert!(!ok && w.contains("checksum"), "{w}");
    let (ok, w) = try_load(&good[..good.len() / 2]);
    assert!(!ok && w.contains("truncated"), "{w}");
    let (ok, w) = try_load(b"not a checkpoint at all");
    assert!(!ok && w.contains("not a bigdl checkpoint"), "{w}");
    // A different thread count cannot resume exactly: refused with a reason.
    std::fs::write(&path, &good).unwrap();
    let mut two =
        optimizer(Trigger::MaxIteration(3), 2).checkpoint(dir.clone(), Trigger::Never, true);
    let mut warnings = Vec::new();
    let r = two
        .optimize(&mut |_| {}, &mut |m| warnings.push(m))
        .unwrap();
    assert!(
        r.resumed_from.is_none() && warnings.join("").contains("thread count"),
        "{warnings:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn summaries_are_written() {
    let dir = tmpdir("summary");
    let mut o = optimizer(Trigger::MaxEpoch(2), 2).summary(&dir).unwrap();
    o.optimize(&mut |_| {}, &mut |_| {}).unwrap();
    let train = std::fs::read_to_string(dir.join("train.csv")).unwrap();
    assert_eq!(train.lines().count(), 1 + 20, "{train}");
    let val = std::fs::read_to_string(dir.join("validation.csv")).unwrap();
    assert!(
        val.contains(",Top1Accuracy,") && val.contains(",Loss,"),
        "{val}"
    );
    let events: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .collect();
    assert_eq!(events.len(), 1);
    assert!(events[0].metadata().unwrap().len() > 100);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn clipping_bounds_the_step() {
    // With the gradient clipped to an L2 norm of 1e-3, plain SGD at lr 0.1 moves
    // the weights by at most 1e-4 per step.
    manual_seed(5);
    let data = DataLoader::new(toy(), 10);
    let mut o = LocalOptimizer::new(model(), &nll, Box::new(Sgd::new(0.1)), data)
        .unwrap()
        .end_when(Trigger::MaxIteration(1))
        .clip(Clip::L2Norm(1e-3));
    let before = weights(&o);
    o.optimize(&mut |_| {}, &mut |_| {}).unwrap();
    let moved: f64 = before
        .iter()
        .zip(weights(&o))
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(moved > 0.0 && moved <= 1.0001e-4, "moved {moved}");
}

#[test]
fn zoo_models_produce_class_scores() {
    use bigdl_nn::models;
    use bigdl_tensor::Tensor;
    let out = |m: &mut dyn Module, shape: &[usize]| {
        m.evaluate();
        let x = Tensor::<f32>::ones(shape).unwrap();
        m.forward(&x.into())
            .unwrap()
            .tensor("t")
            .unwrap()
            .sizes()
            .to_vec()
    };
    assert_eq!(
        out(&mut models::lenet5(10).unwrap(), &[2, 1, 28, 28]),
        [2, 10]
    );
    assert_eq!(out(&mut models::lenet5(10).unwrap(), &[3, 784]), [3, 10]);
    assert_eq!(
        out(&mut models::resnet_cifar(20, 10).unwrap(), &[2, 3, 32, 32]),
        [2, 10]
    );
    assert_eq!(
        out(&mut models::vgg16_cifar(10).unwrap(), &[2, 3, 32, 32]),
        [2, 10]
    );
    assert_eq!(
        out(&mut models::autoencoder().unwrap(), &[2, 1, 28, 28]),
        [2, 784]
    );
    assert_eq!(
        out(
            &mut models::lstm_classifier(50, 8, 6, 5, 3).unwrap(),
            &[2, 5]
        ),
        [2, 3]
    );
    assert_eq!(
        out(&mut models::inception_v1(1000).unwrap(), &[1, 3, 224, 224]),
        [1, 1000]
    );
    assert_eq!(
        out(&mut models::resnet50(1000).unwrap(), &[1, 3, 224, 224]),
        [1, 1000]
    );
    assert!(models::resnet_cifar(21, 10).is_err());
    // Parameter counts of the small models (LeNet-5 as BigDL's; ResNet-20 with
    // projection shortcuts).
    let count = |m: &mut dyn Module| m.parameters().iter().map(|(w, _)| w.numel()).sum::<usize>();
    assert_eq!(count(&mut models::lenet5(10).unwrap()), 22278);
    assert_eq!(count(&mut models::resnet_cifar(20, 10).unwrap()), 272474);
}
