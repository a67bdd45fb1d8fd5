//! Every layer and criterion against central finite differences: the loss
//! `L = sum(forward(x) * gy)` for a random `gy`, perturbed input by input and
//! parameter by parameter (f32 forward, f64 sums), against `backward`.

use bigdl_nn::layers::*;
use bigdl_nn::{
    AbsCriterion, Activity, BCECriterion, CAddTable, CMaxTable, CMulTable, ClassNLLCriterion,
    Concat, ConcatTable, CosineEmbeddingCriterion, Criterion, CrossEntropyCriterion, GraphBuilder,
    Identity, JoinTable, MSECriterion, MarginCriterion, Module, MultiCriterion, NnError,
    ParallelCriterion, ParallelTable, SelectTable, Sequential, SmoothL1Criterion, SplitTable,
    TimeDistributedCriterion, manual_seed,
};
use bigdl_tensor::{Generator, Tensor};

fn rand(sizes: &[usize], seed: u64) -> Tensor<f32> {
    Tensor::uniform(sizes, -1.0, 1.0, &mut Generator::new(seed)).unwrap()
}

/// The tensors of an activity, depth first.
fn leaves(a: &Activity) -> Vec<Tensor<f32>> {
    match a {
        Activity::Tensor(t) => vec![t.clone()],
        Activity::Table(v) => v.iter().flat_map(leaves).collect(),
    }
}

/// A deep copy of `a` with `f(leaf index, tensor)` applied to each copy.
fn map_leaves(a: &Activity, next: &mut usize, f: &mut dyn FnMut(usize, &Tensor<f32>)) -> Activity {
    match a {
        Activity::Tensor(t) => {
            let c = t.deep_clone();
            f(*next, &c);
            *next += 1;
            c.into()
        }
        Activity::Table(v) => Activity::Table(v.iter().map(|x| map_leaves(x, next, f)).collect()),
    }
}

/// `sum over leaves of y . gy` in f64.
fn dot(y: &Activity, gy: &[Vec<f32>]) -> f64 {
    leaves(y)
        .iter()
        .zip(gy)
        .map(|(t, g)| {
            t.to_vec()
                .iter()
                .zip(g)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
        })
        .sum()
}

/// Up to `max` indices spread over `0..n`.
fn sample(n: usize, max: usize) -> impl Iterator<Item = usize> {
    (0..n).step_by((n / max).max(1))
}

fn assert_close(what: &str, fd: f64, an: f64) {
    assert!(
        (fd - an).abs() <= 5e-3 * fd.abs().max(an.abs()) + 1e-3,
        "{what}: finite difference {fd} vs backward {an}"
    );
}

/// Checks `backward` of `m` at `x` against finite differences.
fn check(m: &mut dyn Module, x: Tensor<f32>) {
    check_act(m, x.into(), 1e-2);
}

/// As [`check`] with step `eps` (small for chains with kinks: ReLU, max).
fn check_eps(m: &mut dyn Module, x: Tensor<f32>, eps: f32) {
    check_act(m, x.into(), eps);
}

/// As [`check`] for any activity (tables included).
fn check_act(m: &mut dyn Module, x: Activity, eps: f32) {
    check_act_except(m, x, eps, &[]);
}

/// As [`check_act`], leaving the input leaves `fixed` (e.g. sequence
/// lengths) unperturbed.
fn check_act_except(m: &mut dyn Module, x: Activity, eps: f32, fixed: &[usize]) {
    let name = m.name().to_string();
    let y = m.forward(&x).unwrap();
    let gy: Vec<Vec<f32>> = leaves(&y)
        .iter()
        .enumerate()
        .map(|(k, t)| rand(t.sizes(), 7 + k as u64).to_vec())
        .collect();
    let mut k = 0;
    let gya = map_leaves(&y, &mut 0, &mut |_, t| {
        t.as_slice_mut().unwrap().copy_from_slice(&gy[k]);
        k += 1;
    });
    m.zero_grad_parameters();
    let gx = leaves(&m.backward(&x, &gya).unwrap());
    let xs = leaves(&x);
    assert_eq!(gx.len(), xs.len(), "{name}: grad_input structure");
    let loss = |m: &mut dyn Module, x: &Activity| dot(&m.forward(x).unwrap(), &gy);
    for (leaf, (xt, gt)) in xs.iter().zip(&gx).enumerate() {
        assert_eq!(gt.sizes(), xt.sizes(), "{name}: grad_input shape");
        if fixed.contains(&leaf) {
            continue;
        }
        let gt = gt.to_vec();
        for i in sample(xt.numel(), 60) {
            let mut at = |delta: f32| {
                let xp = map_leaves(&x, &mut 0, &mut |l, t| {
                    if l == leaf {
                        t.as_slice_mut().unwrap()[i] += delta;
                    }
                });
                loss(m, &xp)
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            assert_close(&format!("{name} dx{leaf}[{i}]"), fd, gt[i] as f64);
        }
    }
    for (p, (w, g)) in m.parameters().into_iter().enumerate() {
        let g = g.to_vec();
        for j in sample(w.numel(), 40) {
            let v = w.as_slice().unwrap()[j];
            w.as_slice_mut().unwrap()[j] = v + eps;
            let lp = loss(m, &x);
            w.as_slice_mut().unwrap()[j] = v - eps;
            let lm = loss(m, &x);
            w.as_slice_mut().unwrap()[j] = v;
            assert_close(
                &format!("{name} param {p}[{j}]"),
                (lp - lm) / (2.0 * eps as f64),
                g[j] as f64,
            );
        }
    }
}

/// Inputs whose values are at least `gap` apart (no ties for max pooling) and
/// at least `gap / 2` away from 0 (no ReLU kinks).
fn spread(sizes: &[usize], gap: f32) -> Tensor<f32> {
    let n: usize = sizes.iter().product();
    let mut g = Generator::new(3);
    let keys = Tensor::<f32>::uniform(&[n], 0.0, 1.0, &mut g)
        .unwrap()
        .to_vec();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    let mut v = vec![0.0f32; n];
    for (rank, &i) in order.iter().enumerate() {
        v[i] = (rank as f32 + 0.5 - (n / 2) as f32) * gap;
    }
    Tensor::from_vec(v, sizes).unwrap()
}

#[test]
fn linear() {
    manual_seed(1);
    check(&mut Linear::new(7, 5).unwrap(), rand(&[3, 7], 1));
    check(&mut Linear::new(7, 5).unwrap(), rand(&[7], 2));
    check(
        &mut Linear::new(4, 6).unwrap().without_bias(),
        rand(&[2, 4], 3),
    );
}

#[test]
fn spatial_convolution() {
    manual_seed(2);
    check(
        &mut SpatialConvolution::new(2, 3, (3, 3)).unwrap(),
        rand(&[2, 2, 6, 5], 1),
    );
    check(
        &mut SpatialConvolution::new(3, 4, (3, 2))
            .unwrap()
            .stride(2, 1)
            .pad(1, 2),
        rand(&[1, 3, 7, 6], 2),
    );
    check(
        &mut SpatialConvolution::with_groups(4, 6, (3, 3), 2)
            .unwrap()
            .dilation(2, 1)
            .pad(2, 1),
        rand(&[2, 4, 7, 7], 3),
    );
    // One image without a batch dimension, no bias.
    check(
        &mut SpatialConvolution::new(2, 2, (2, 2))
            .unwrap()
            .without_bias(),
        rand(&[2, 5, 4], 4),
    );
}

#[test]
fn pooling() {
    check(
        &mut SpatialMaxPooling::new((2, 2), (2, 2)),
        spread(&[2, 3, 6, 6], 0.05),
    );
    check(
        &mut SpatialMaxPooling::new((3, 3), (2, 2)).pad(1, 1).ceil(),
        spread(&[1, 2, 7, 8], 0.05),
    );
    check(
        &mut SpatialAveragePooling::new((3, 2), (2, 2)),
        rand(&[2, 2, 7, 6], 1),
    );
    check(
        &mut SpatialAveragePooling::new((3, 3), (2, 2))
            .pad(1, 1)
            .ceil()
            .count_include_pad(false),
        rand(&[3, 6, 5], 2),
    );
    check(&mut SpatialAveragePooling::global(), rand(&[2, 3, 4, 5], 3));
}

#[test]
fn activations() {
    check(&mut ReLU::new(), spread(&[3, 17], 0.1));
    check(&mut Tanh::new(), rand(&[4, 9], 1));
    check(&mut Sigmoid::new(), rand(&[2, 3, 5], 2));
    check(&mut SoftMax::new(), rand(&[3, 7], 3));
    check(&mut LogSoftMax::new(), rand(&[3, 7], 4));
    check(&mut LogSoftMax::new(), rand(&[10], 5));
}

#[test]
fn reshape_and_sequential() {
    check(&mut Reshape::new(&[12]), rand(&[2, 3, 4], 1));
    let mut one = Reshape::batched(&[12]);
    let y = one.forward(&rand(&[1, 3, 4], 1).into()).unwrap();
    assert_eq!(y.tensor("t").unwrap().sizes(), &[1, 12]);
    check(&mut one, rand(&[1, 3, 4], 1));
    assert!(
        Reshape::batched(&[12])
            .forward(&rand(&[12], 1).into())
            .is_err()
    );
    manual_seed(3);
    // A small LeNet: every kind of layer in one chain.
    let mut lenet = Sequential::new()
        .add(Reshape::new(&[1, 12, 12]))
        .add(SpatialConvolution::new(1, 3, (5, 5)).unwrap())
        .add(Tanh::new())
        .add(SpatialMaxPooling::new((2, 2), (2, 2)))
        .add(Reshape::new(&[3 * 4 * 4]))
        .add(Linear::new(48, 10).unwrap())
        .add(ReLU::new())
        .add(Linear::new(10, 4).unwrap())
        .add(LogSoftMax::new());
    check_eps(&mut lenet, rand(&[2, 144], 2), 1e-3);
    // Again with every parameter a view of one flat buffer.
    bigdl_nn::compact(&mut lenet).unwrap();
    check_eps(&mut lenet, rand(&[2, 144], 4), 1e-3);
}

/// A criterion's gradient against finite differences of its loss.
fn check_criterion(c: &mut dyn Criterion, x: Tensor<f32>, target: Activity) {
    check_criterion_act(c, x.into(), target, 1e-2);
}

/// As [`check_criterion`] for any input activity, with step `eps`.
fn check_criterion_act(c: &mut dyn Criterion, x: Activity, target: Activity, eps: f32) {
    let g = leaves(&c.backward(&x, &target).unwrap());
    let xs = leaves(&x);
    assert_eq!(g.len(), xs.len(), "{}: gradient structure", c.name());
    for (leaf, (xt, gt)) in xs.iter().zip(&g).enumerate() {
        assert_eq!(xt.sizes(), gt.sizes(), "{}: gradient shape", c.name());
        for (i, &gi) in gt.to_vec().iter().enumerate() {
            let mut at = |delta: f32| {
                let xp = map_leaves(&x, &mut 0, &mut |l, t| {
                    if l == leaf {
                        t.as_slice_mut().unwrap()[i] += delta;
                    }
                });
                c.forward(&xp, &target).unwrap() as f64
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            assert_close(&format!("{} dx{leaf}[{i}]", c.name()), fd, gi as f64);
        }
    }
}

#[test]
fn criterions() {
    let classes: Activity = Tensor::from_vec(vec![2.0f32, 0.0, 3.0], &[3])
        .unwrap()
        .into();
    check_criterion(
        &mut ClassNLLCriterion::new(),
        rand(&[3, 4], 1),
        classes.clone(),
    );
    check_criterion(
        &mut ClassNLLCriterion::new().weights(&[0.5, 1.0, 2.0, 1.5]),
        rand(&[3, 4], 2),
        classes.clone(),
    );
    check_criterion(
        &mut ClassNLLCriterion::new().size_average(false),
        rand(&[3, 4], 3),
        classes.clone(),
    );
    check_criterion(
        &mut CrossEntropyCriterion::new(),
        rand(&[3, 4], 4),
        classes.clone(),
    );
    check_criterion(
        &mut MSECriterion::new(),
        rand(&[2, 5], 5),
        rand(&[2, 5], 6).into(),
    );

    // Closed forms.
    let lp = Tensor::from_vec(vec![-1.0f32, -2.0, -0.5, -3.0], &[2, 2]).unwrap();
    let t: Activity = Tensor::from_vec(vec![1.0f32, 0.0], &[2]).unwrap().into();
    let l = ClassNLLCriterion::new().forward(&lp.into(), &t).unwrap();
    assert_eq!(l, (2.0 + 0.5) / 2.0);
}

#[test]
fn wrong_shapes_and_targets_are_errors_naming_the_layer() {
    let mut lin = Linear::new(4, 2).unwrap();
    let err = lin.forward(&rand(&[3, 5], 1).into()).unwrap_err();
    assert!(
        matches!(&err, NnError::Shape { layer, got, .. } if layer.contains("Linear") && got == &[3, 5])
    );
    assert!(err.to_string().contains("[N, 4]"), "{err}");
    let mut conv = SpatialConvolution::new(3, 2, (3, 3)).unwrap();
    let err = conv.forward(&rand(&[1, 2, 5, 5], 1).into()).unwrap_err();
    assert!(
        err.to_string().contains("SpatialConvolution") && err.to_string().contains("[1, 2, 5, 5]")
    );
    // Kernel larger than the padded input.
    assert!(conv.forward(&rand(&[1, 3, 2, 2], 1).into()).is_err());
    // Gradient of the wrong shape.
    let x: Activity = rand(&[2, 4], 2).into();
    lin.forward(&x).unwrap();
    assert!(lin.backward(&x, &rand(&[2, 3], 3).into()).is_err());
    // Tables where tensors belong.
    assert!(matches!(
        ReLU::new().forward(&Activity::Table(vec![])),
        Err(NnError::Activity { .. })
    ));
    // Targets outside the classes or fractional.
    let mut nll = ClassNLLCriterion::new();
    for bad in [4.0f32, -1.0, 0.5, f32::NAN] {
        let t: Activity = Tensor::from_vec(vec![bad], &[1]).unwrap().into();
        assert!(
            nll.forward(&rand(&[1, 4], 1).into(), &t).is_err(),
            "target {bad}"
        );
    }
}

#[test]
fn acc_grad_parameters_scales_and_accumulates() {
    manual_seed(4);
    let cases: Vec<(Box<dyn Module>, Tensor<f32>)> = vec![
        (
            Box::new(SpatialConvolution::new(2, 3, (3, 3)).unwrap()),
            rand(&[2, 2, 5, 5], 1),
        ),
        (Box::new(Linear::new(5, 4).unwrap()), rand(&[3, 5], 2)),
        (
            Box::new(BatchNormalization::spatial(2).unwrap()),
            rand(&[3, 2, 2, 2], 3),
        ),
        (
            Box::new(BatchNormalization::new(4).unwrap()),
            rand(&[5, 4], 4),
        ),
        (
            Box::new(Recurrent::new(Cell::gru(3, 2).unwrap())),
            rand(&[2, 3, 3], 5),
        ),
        (
            Box::new(
                Sequential::new()
                    .add(
                        ConcatTable::new()
                            .add(
                                Sequential::new()
                                    .add(SpatialConvolution::new(2, 2, (3, 3)).unwrap().pad(1, 1))
                                    .add(BatchNormalization::spatial(2).unwrap()),
                            )
                            .add(Identity::new()),
                    )
                    .add(CAddTable::new()),
            ),
            rand(&[2, 2, 3, 3], 7),
        ),
        (
            Box::new(
                Concat::new(1)
                    .add(BatchNormalization::spatial(2).unwrap())
                    .add(SpatialConvolution::new(2, 1, (1, 1)).unwrap()),
            ),
            rand(&[2, 2, 3, 3], 8),
        ),
        (
            {
                let mut g = GraphBuilder::new();
                let x = g.input();
                let a = g.node(Linear::new(3, 3).unwrap(), &[x]).unwrap();
                let b = g.node(BatchNormalization::new(3).unwrap(), &[a]).unwrap();
                let c = g.node(CAddTable::new(), &[a, b]).unwrap();
                Box::new(g.build(&[x], &[c]).unwrap())
            },
            rand(&[4, 3], 9),
        ),
        (
            Box::new(
                SpatialFullConvolution::new(2, 3, (2, 2), 1)
                    .unwrap()
                    .stride(2, 2),
            ),
            rand(&[2, 2, 3, 3], 6),
        ),
    ];
    for (mut m, x) in cases {
        let x: Activity = x.into();
        let y = m.forward(&x).unwrap();
        let gy: Activity = rand(y.tensor("t").unwrap().sizes(), 5).into();
        m.zero_grad_parameters();
        let fused = m.backward(&x, &gy).unwrap().tensor("t").unwrap().to_vec();
        let once: Vec<Vec<f32>> = m.parameters().iter().map(|(_, g)| g.to_vec()).collect();
        // The two halves give what the fused backward gave.
        m.zero_grad_parameters();
        let gx = m
            .update_grad_input(&x, &gy)
            .unwrap()
            .tensor("t")
            .unwrap()
            .to_vec();
        m.acc_grad_parameters(&x, &gy, 1.0).unwrap();
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * (1.0 + b.abs());
        assert!(
            gx.iter().zip(&fused).all(|(&a, &b)| close(a, b)),
            "{}",
            m.name()
        );
        for ((_, g), o) in m.parameters().iter().zip(&once) {
            assert!(
                g.to_vec().iter().zip(o).all(|(&a, &b)| close(a, b)),
                "{}",
                m.name()
            );
        }
        // A scaled second call adds.
        m.acc_grad_parameters(&x, &gy, 0.5).unwrap();
        for ((_, g), o) in m.parameters().iter().zip(&once) {
            for (a, b) in g.to_vec().iter().zip(o) {
                assert!(close(*a, 1.5 * b), "{}: {a} vs 1.5 * {b}", m.name());
            }
        }
    }
}

#[test]
fn pointwise_layers() {
    let kinky = || spread(&[3, 13], 0.1);
    let positive = || Tensor::<f32>::uniform(&[2, 9], 0.5, 2.0, &mut Generator::new(5)).unwrap();
    check(&mut ReLU6::new(), spread(&[4, 40], 0.33));
    check(&mut LeakyReLU::new(0.1), kinky());
    check(&mut ELU::new(1.3), kinky());
    check(&mut HardTanh::new(-1.0, 1.0), kinky());
    check(&mut SoftPlus::new(2.0), rand(&[3, 8], 1));
    check(&mut Threshold::new(0.3, -2.0), kinky());
    check(&mut Abs::new(), kinky());
    check(&mut Power::new(2.5, 0.5, 1.0), positive());
    check(&mut Sqrt::new(), positive());
    check(&mut Square::new(), rand(&[5, 3], 2));
    check(&mut Exp::new(), rand(&[5, 3], 3));
    check(&mut Log::new(), positive());
    check(&mut MulConstant::new(-1.5), rand(&[4], 4));
    check(&mut AddConstant::new(0.5), rand(&[4], 5));
    check(&mut SoftMin::new(), rand(&[3, 6], 6));
    // SoftPlus above its linear threshold.
    check(
        &mut SoftPlus::new(30.0),
        Tensor::from_vec(vec![1.0f32, 2.0, -0.5], &[3]).unwrap(),
    );
}

#[test]
fn normalisation_layers() {
    check(&mut BatchNormalization::new(5).unwrap(), rand(&[6, 5], 1));
    check(
        &mut BatchNormalization::spatial(3).unwrap(),
        rand(&[4, 3, 3, 2], 2),
    );
    check(
        &mut BatchNormalization::spatial(3).unwrap().without_affine(),
        rand(&[2, 3, 2, 2], 3),
    );
    // Non-trivial affine parameters, in inference mode after a few batches.
    let mut bn = BatchNormalization::spatial(2).unwrap();
    for s in 0..3 {
        bn.forward(&rand(&[3, 2, 2, 2], 10 + s).into()).unwrap();
    }
    bn.evaluate();
    check(&mut bn, rand(&[2, 2, 2, 2], 4));
    check(
        &mut SpatialCrossMapLRN::new(3, 0.5, 0.75, 1.0),
        rand(&[2, 5, 2, 3], 5),
    );
    check(
        &mut SpatialCrossMapLRN::new(5, 1e-1, 0.75, 2.0),
        rand(&[4, 3, 3], 6),
    );
}

#[test]
fn dropout_masks_scale_and_repeat() {
    bigdl_nn::manual_seed(21);
    let mut d = Dropout::new(0.25).unwrap();
    let x = Tensor::<f32>::ones(&[40, 100]).unwrap();
    let xa: Activity = x.clone().into();
    let y = d.forward(&xa).unwrap().tensor("t").unwrap().to_vec();
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / y.len() as f64;
    assert!((kept - 0.75).abs() < 0.03, "kept {kept}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    // The backward pass uses the same mask.
    let gx = d.backward(&xa, &xa).unwrap().tensor("t").unwrap().to_vec();
    assert_eq!(gx, y);
    // A new mask per call; the same sequence after the same seed.
    let y2 = d.forward(&xa).unwrap().tensor("t").unwrap().to_vec();
    assert_ne!(y, y2);
    bigdl_nn::manual_seed(21);
    let mut again = Dropout::new(0.25).unwrap();
    assert_eq!(again.forward(&xa).unwrap().tensor("t").unwrap().to_vec(), y);
    // Identity in inference mode; bad probabilities are errors.
    d.evaluate();
    assert_eq!(
        d.forward(&xa).unwrap().tensor("t").unwrap().to_vec(),
        x.to_vec()
    );
    assert!(Dropout::new(1.0).is_err() && Dropout::new(-0.1).is_err());
}

fn table(ts: Vec<Tensor<f32>>) -> Activity {
    Activity::Table(ts.into_iter().map(Activity::from).collect())
}

#[test]
fn tables_and_containers() {
    manual_seed(31);
    let x = || rand(&[2, 3], 1);
    check(&mut Identity::new(), x());
    check(
        &mut ConcatTable::new()
            .add(Linear::new(3, 2).unwrap())
            .add(Tanh::new()),
        x(),
    );
    check_act(
        &mut ParallelTable::new()
            .add(Linear::new(3, 4).unwrap())
            .add(Sigmoid::new()),
        table(vec![rand(&[2, 3], 2), rand(&[5], 3)]),
        1e-2,
    );
    check(
        &mut Concat::new(1)
            .add(SpatialConvolution::new(2, 3, (1, 1)).unwrap())
            .add(SpatialConvolution::new(2, 1, (3, 3)).unwrap().pad(1, 1)),
        rand(&[2, 2, 4, 4], 4),
    );
    let three = || table(vec![rand(&[2, 3], 5), rand(&[2, 3], 6), rand(&[2, 3], 7)]);
    check_act(&mut CAddTable::new(), three(), 1e-2);
    check_act(&mut CMulTable::new(), three(), 1e-2);
    check_act(&mut CMaxTable::new(), three(), 1e-2);
    check_act(
        &mut JoinTable::new(1),
        table(vec![rand(&[2, 3], 8), rand(&[2, 1], 9)]),
        1e-2,
    );
    check(&mut SplitTable::new(1), rand(&[2, 3, 2], 10));
    check_act(&mut SelectTable::new(1), three(), 1e-2);
    // A residual block: ConcatTable(branch, Identity) -> CAddTable.
    let mut residual = Sequential::new()
        .add(
            ConcatTable::new()
                .add(
                    Sequential::new()
                        .add(SpatialConvolution::new(2, 2, (3, 3)).unwrap().pad(1, 1))
                        .add(Tanh::new()),
                )
                .add(Identity::new()),
        )
        .add(CAddTable::new());
    check(&mut residual, rand(&[2, 2, 3, 3], 11));
    // Table errors name the layer.
    let err = CAddTable::new().forward(&x().into()).unwrap_err();
    assert!(err.to_string().contains("CAddTable"), "{err}");
    let err = JoinTable::new(0)
        .forward(&table(vec![rand(&[2, 3], 1), rand(&[2, 4], 2)]))
        .unwrap_err();
    assert!(err.to_string().contains("[2, 4]"), "{err}");
    assert!(SelectTable::new(5).forward(&three()).is_err());
}

#[test]
fn shape_layers() {
    let x = || rand(&[2, 3, 4], 1);
    check(&mut View::new(&[Some(4), None]), x());
    check(&mut Squeeze::new(Some(1)), rand(&[3, 1, 2], 2));
    check(&mut Squeeze::new(None), rand(&[1, 3, 1, 2], 3));
    check(&mut Unsqueeze::new(2), x());
    check(&mut Transpose::new(&[(0, 2), (1, 2)]), x());
    check(&mut Narrow::new(2, 1, 2), x());
    check(&mut Select::new(1, 2), x());
    check(&mut Contiguous::new(), x());
    check(
        &mut SpatialZeroPadding::new(1, 2, 0, 3),
        rand(&[2, 2, 3, 3], 4),
    );
    check(&mut Padding::new(1, 2, 1, -0.5), x());
    check(&mut Reverse::new(1), x());
    check(&mut Reverse::new(2), x());
    // SAME for a 3x3 kernel with stride 2 on 5x6: 2 rows (1 + 1) and 1
    // column (after, or before when lower); 7x5 with (2, 3), dilation 2.
    check(
        &mut SamePadding::new((3, 3), (2, 2), (1, 1), false, 0.0).unwrap(),
        rand(&[2, 5, 6], 7),
    );
    check(
        &mut SamePadding::new((3, 2), (2, 3), (2, 1), true, -1.0).unwrap(),
        rand(&[1, 2, 7, 5], 8),
    );
    check(&mut Sum::new(1), x());
    check(&mut Mean::new(2), x());
    check(&mut Max::new(1), spread(&[2, 5, 3], 0.05));
    check(&mut Max::new(0), spread(&[4, 3], 0.05));
    // Values and errors.
    let y = Max::new(1)
        .forward(
            &Tensor::from_vec(vec![1.0f32, 5.0, 2.0, 7.0, 0.0, 3.0], &[2, 3])
                .unwrap()
                .into(),
        )
        .unwrap();
    assert_eq!(y.tensor("t").unwrap().to_vec(), [5.0, 7.0]);
    assert!(View::new(&[Some(5), None]).forward(&x().into()).is_err());
    assert!(Narrow::new(2, 3, 2).forward(&x().into()).is_err());
    assert!(Sum::new(3).forward(&x().into()).is_err());
    let y = Reverse::new(1)
        .forward(
            &Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 3, 2])
                .unwrap()
                .into(),
        )
        .unwrap();
    assert_eq!(
        y.tensor("t").unwrap().to_vec(),
        [5.0, 6.0, 3.0, 4.0, 1.0, 2.0]
    );
    assert!(Reverse::new(3).forward(&x().into()).is_err());
    let same = |lower| {
        let mut m = SamePadding::new((3, 3), (2, 2), (1, 1), lower, -1.0).unwrap();
        let y = m
            .forward(&Tensor::<f32>::ones(&[1, 4, 5]).unwrap().into())
            .unwrap();
        y.tensor("t").unwrap().clone()
    };
    // 4 rows: total 1 (after, or before); 5 columns: total 2, one each side.
    let (up, low) = (same(false), same(true));
    assert_eq!((up.sizes(), low.sizes()), (&[1, 5, 7][..], &[1, 5, 7][..]));
    assert_eq!(up.to_vec()[..7], [-1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0]);
    assert_eq!(up.to_vec()[28..], [-1.0; 7]);
    assert_eq!(low.to_vec()[..7], [-1.0; 7]);
    assert!(SamePadding::new((3, 3), (0, 2), (1, 1), false, 0.0).is_err());
    assert!(SamePadding::new((3, 3), (2, 2), (1, 1), false, f32::NAN).is_err());
    let mut pad = SpatialZeroPadding::new(1, 1, 1, 1);
    let xa: Activity = rand(&[1, 2, 2], 5).into();
    pad.forward(&xa).unwrap();
    assert!(pad.backward(&xa, &rand(&[1, 1, 1], 6).into()).is_err());
}

#[test]
fn learnable_elementwise_layers() {
    manual_seed(41);
    check(&mut CMul::new(&[3, 1, 1]).unwrap(), rand(&[2, 3, 2, 2], 1));
    check(&mut CAdd::new(&[4]).unwrap(), rand(&[3, 4], 2));
    check(
        &mut Scale::new(&[1, 3, 1, 1]).unwrap(),
        rand(&[2, 3, 2, 2], 3),
    );
    check(&mut PReLU::new(3).unwrap(), spread(&[2, 3, 2, 2], 0.1));
    check(&mut PReLU::new(3).unwrap(), spread(&[3, 2, 2], 0.1));
    check(&mut PReLU::new(0).unwrap(), spread(&[4, 5], 0.1));
    assert!(
        CMul::new(&[5])
            .unwrap()
            .forward(&rand(&[2, 4], 4).into())
            .is_err()
    );
    assert!(
        PReLU::new(3)
            .unwrap()
            .forward(&rand(&[2, 4], 4).into())
            .is_err()
    );
}

#[test]
fn more_criterions() {
    let x = || rand(&[3, 4], 1);
    let t = || -> Activity { rand(&[3, 4], 2).into() };
    // Inputs at least 0.05 from the targets (0): away from the kink.
    let zeros: Activity = Tensor::<f32>::zeros(&[3, 4]).unwrap().into();
    check_criterion(
        &mut AbsCriterion::new(),
        spread(&[3, 4], 0.1),
        zeros.clone(),
    );
    check_criterion(
        &mut SmoothL1Criterion::new(),
        rand(&[3, 4], 3).mul_scalar(2.0),
        t(),
    );
    let signs: Activity = Tensor::from_vec(
        (0..12)
            .map(|i| if i % 3 == 0 { 1.0f32 } else { -1.0 })
            .collect(),
        &[3, 4],
    )
    .unwrap()
    .into();
    check_criterion(&mut MarginCriterion::new(0.7), spread(&[3, 4], 0.13), signs);
    let probs = || Tensor::<f32>::uniform(&[2, 5], 0.1, 0.9, &mut Generator::new(4)).unwrap();
    let labels: Activity = Tensor::<f32>::uniform(&[2, 5], 0.0, 1.0, &mut Generator::new(5))
        .unwrap()
        .into();
    check_criterion(&mut BCECriterion::new(), probs(), labels.clone());
    check_criterion(
        &mut BCECriterion::new()
            .weights(&[1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 1.0, 2.0, 1.0, 0.1])
            .size_average(false),
        probs(),
        labels,
    );
    let pair = table(vec![rand(&[4, 3], 6), rand(&[4, 3], 7)]);
    let ys: Activity = Tensor::from_vec(vec![1.0f32, -1.0, -1.0, 1.0], &[4])
        .unwrap()
        .into();
    check_criterion_act(
        &mut CosineEmbeddingCriterion::new(-0.9),
        pair.clone(),
        ys.clone(),
        1e-3,
    );
    check_criterion_act(&mut CosineEmbeddingCriterion::new(0.0), pair, ys, 1e-3);
    // Per time step: class targets [N, T].
    let steps: Activity = Tensor::from_vec(vec![0.0f32, 2.0, 1.0, 1.0, 0.0, 2.0], &[2, 3])
        .unwrap()
        .into();
    check_criterion(
        &mut TimeDistributedCriterion::new(CrossEntropyCriterion::new()).size_average(true),
        rand(&[2, 3, 3], 8),
        steps,
    );
    check_criterion(
        &mut MultiCriterion::new()
            .add(MSECriterion::new(), 0.5)
            .add(AbsCriterion::new(), 2.0),
        spread(&[3, 4], 0.1),
        zeros,
    );
    check_criterion_act(
        &mut ParallelCriterion::new()
            .add(MSECriterion::new(), 1.5)
            .add(SmoothL1Criterion::new(), 1.0),
        table(vec![rand(&[2, 2], 9), rand(&[3], 10)]),
        table(vec![rand(&[2, 2], 11), rand(&[3], 12)]),
        1e-2,
    );
    // Closed forms and errors.
    let l = AbsCriterion::new()
        .forward(
            &Tensor::from_vec(vec![1.0f32, -1.0], &[2]).unwrap().into(),
            &Tensor::from_vec(vec![0.0f32, 1.0], &[2]).unwrap().into(),
        )
        .unwrap();
    assert_eq!(l, 1.5);
    assert!(
        AbsCriterion::new()
            .forward(&x().into(), &rand(&[2, 4], 1).into())
            .is_err()
    );
    assert!(
        CosineEmbeddingCriterion::new(0.0)
            .forward(
                &table(vec![rand(&[2, 3], 1), rand(&[2, 3], 2)]),
                &rand(&[2], 3).into()
            )
            .is_err()
    );
}

#[test]
fn graph_container() {
    manual_seed(51);
    // Two inputs, a node read twice (its gradients summed), two outputs.
    let mut g = GraphBuilder::new();
    let a = g.input();
    let b = g.input();
    let la = g.node(Linear::new(3, 4).unwrap(), &[a]).unwrap();
    let t = g.node(Tanh::new(), &[la]).unwrap();
    let lb = g.node(Linear::new(2, 4).unwrap(), &[b]).unwrap();
    let sum = g.node(CAddTable::new(), &[la, t, lb]).unwrap();
    let out2 = g.node(Sigmoid::new(), &[t]).unwrap();
    let mut graph = g.build(&[a, b], &[sum, out2]).unwrap();
    check_act(
        &mut graph,
        table(vec![rand(&[2, 3], 1), rand(&[2, 2], 2)]),
        1e-2,
    );
    // One input and one output: plain tensors in and out, as Sequential.
    let mut g = GraphBuilder::new();
    let x = g.input();
    let c = g
        .node(
            SpatialConvolution::new(2, 2, (3, 3)).unwrap().pad(1, 1),
            &[x],
        )
        .unwrap();
    let r = g.node(CAddTable::new(), &[c, x]).unwrap();
    let mut residual = g.build(&[x], &[r]).unwrap();
    check(&mut residual, rand(&[2, 2, 4, 4], 3));
    bigdl_nn::compact(&mut residual).unwrap();
    check(&mut residual, rand(&[2, 2, 4, 4], 4));
    // Bad graphs are errors.
    let mut g = GraphBuilder::new();
    let x = g.input();
    let stray = g.input();
    let y = g.node(Tanh::new(), &[x]).unwrap();
    assert!(g.node(Tanh::new(), &[]).is_err());
    assert!(g.build(&[x], &[y, stray]).is_err());
}

#[test]
fn full_convolution_and_embeddings() {
    manual_seed(61);
    check(
        &mut SpatialFullConvolution::new(2, 3, (3, 3), 1)
            .unwrap()
            .stride(2, 2)
            .pad(1, 1)
            .adj(1, 0),
        rand(&[2, 2, 3, 4], 1),
    );
    check(
        &mut SpatialFullConvolution::new(4, 2, (2, 3), 2)
            .unwrap()
            .without_bias(),
        rand(&[4, 3, 3], 2),
    );
    // Embeddings: the gradient lands in the looked-up rows (twice for a repeat).
    let mut emb = LookupTable::new(5, 3).unwrap();
    let idx: Activity = Tensor::from_vec(vec![4.0f32, 1.0, 4.0, 0.0], &[2, 2])
        .unwrap()
        .into();
    let y = emb.forward(&idx).unwrap();
    assert_eq!(y.tensor("t").unwrap().sizes(), &[2, 2, 3]);
    let w = emb.weight().to_vec();
    assert_eq!(y.tensor("t").unwrap().to_vec()[..3], w[12..15]);
    emb.zero_grad_parameters();
    let gy: Activity = Tensor::<f32>::ones(&[2, 2, 3]).unwrap().into();
    emb.backward(&idx, &gy).unwrap();
    let g = emb.parameters()[0].1.to_vec();
    assert_eq!(
        g,
        [1., 1., 1., 1., 1., 1., 0., 0., 0., 0., 0., 0., 2., 2., 2.]
    );
    for bad in [5.0f32, -1.0, 0.5] {
        let i: Activity = Tensor::from_vec(vec![bad], &[1]).unwrap().into();
        assert!(emb.forward(&i).is_err(), "index {bad}");
    }
}

#[test]
fn recurrent_layers() {
    manual_seed(71);
    check(
        &mut Recurrent::new(Cell::rnn(3, 4).unwrap()),
        rand(&[2, 5, 3], 1),
    );
    check(
        &mut Recurrent::new(Cell::lstm(3, 4).unwrap()),
        rand(&[2, 4, 3], 2),
    );
    check(
        &mut Recurrent::new(Cell::gru(3, 4).unwrap()),
        rand(&[2, 4, 3], 3),
    );
    check(
        &mut BiRecurrent::new(Cell::lstm(3, 2).unwrap(), Cell::gru(3, 2).unwrap()).unwrap(),
        rand(&[2, 3, 3], 4),
    );
    // LSTM with peepholes; initial states in, the last states out.
    check(
        &mut Recurrent::new(Cell::lstm_peephole(3, 4).unwrap()),
        rand(&[2, 4, 3], 8),
    );
    let states = |k: usize| -> Activity {
        let mut t = vec![rand(&[2, 4, 3], 9).into()];
        t.extend((0..k).map(|i| rand(&[2, 4], 10 + i as u64).into()));
        Activity::Table(t)
    };
    check_act(
        &mut Recurrent::new(Cell::lstm_peephole(3, 4).unwrap()).with_final_states(),
        states(2),
        1e-2,
    );
    check_act(
        &mut Recurrent::new(Cell::lstm(3, 4).unwrap()),
        states(1),
        1e-2,
    );
    check_act(
        &mut Recurrent::new(Cell::gru_with(3, 4, false).unwrap()),
        states(1),
        1e-2,
    );
    check_act(
        &mut Recurrent::new(Cell::rnn(3, 4).unwrap())
            .reversed()
            .with_final_states(),
        states(1),
        1e-2,
    );
    // Sequence lengths (whole numbers: not perturbed), reversed or not.
    let lengths = |k: usize| -> Activity {
        let mut t = vec![
            rand(&[3, 4, 3], 9).into(),
            Tensor::from_vec(vec![4.0f32, 2.0, 0.0], &[3])
                .unwrap()
                .into(),
        ];
        t.extend((0..k).map(|i| rand(&[3, 4], 10 + i as u64).into()));
        Activity::Table(t)
    };
    for reversed in [false, true] {
        let mut lstm = Recurrent::new(Cell::lstm_peephole(3, 4).unwrap())
            .with_lengths()
            .with_final_states();
        let mut gru = Recurrent::new(Cell::gru_with(3, 4, false).unwrap()).with_lengths();
        if reversed {
            lstm = lstm.reversed();
            gru = gru.reversed();
        }
        check_act_except(&mut lstm, lengths(2), 1e-2, &[1]);
        check_act_except(&mut gru, lengths(1), 1e-2, &[1]);
    }
    // A cell state for a GRU, a state of the wrong shape, lengths that are
    // not whole numbers up to T or missing: errors.
    let mut gru = Recurrent::new(Cell::gru(3, 4).unwrap());
    assert!(gru.forward(&states(2)).is_err());
    let bad = Activity::Table(vec![rand(&[2, 4, 3], 9).into(), rand(&[2, 3], 1).into()]);
    assert!(gru.forward(&bad).is_err());
    let mut gru = Recurrent::new(Cell::gru(3, 4).unwrap()).with_lengths();
    assert!(gru.forward(&rand(&[2, 4, 3], 9).into()).is_err());
    for l in [5.0f32, -1.0, 1.5, f32::NAN] {
        let x = Activity::Table(vec![
            rand(&[2, 4, 3], 9).into(),
            Tensor::from_vec(vec![1.0, l], &[2]).unwrap().into(),
        ]);
        assert!(gru.forward(&x).is_err(), "length {l}");
    }
    // GRU with the reset gate before the hidden product (ONNX's default).
    check(
        &mut Recurrent::new(Cell::gru_with(3, 4, false).unwrap()),
        rand(&[2, 4, 3], 6),
    );
    check(
        &mut TimeDistributed::new(Linear::new(3, 2).unwrap()),
        rand(&[2, 4, 3], 5),
    );
    // An LSTM text classifier's shape: embeddings, LSTM, last step, linear.
    let mut clf = Sequential::new()
        .add(Recurrent::new(Cell::lstm(3, 4).unwrap()))
        .add(Select::new(1, 2))
        .add(Linear::new(4, 2).unwrap())
        .add(LogSoftMax::new());
    check(&mut clf, rand(&[2, 3, 3], 6));
    assert!(
        Recurrent::new(Cell::rnn(3, 4).unwrap())
            .forward(&rand(&[2, 5, 4], 1).into())
            .is_err()
    );
    assert!(BiRecurrent::new(Cell::rnn(3, 4).unwrap(), Cell::rnn(3, 5).unwrap()).is_err());
}

/// Sequence lengths: a sequence's outputs and last states are those of the
/// same recurrence run on that sequence alone, cut to its length; outputs
/// past its end are zeros. Forward and reversed.
#[test]
fn recurrent_lengths_equal_cut_sequences() {
    manual_seed(5);
    let (x, h0, c0) = (rand(&[2, 5, 3], 21), rand(&[2, 4], 22), rand(&[2, 4], 23));
    let lens = Tensor::from_vec(vec![5.0f32, 3.0], &[2]).unwrap();
    for reversed in [false, true] {
        let mut m = Recurrent::new(Cell::lstm_peephole(3, 4).unwrap())
            .with_lengths()
            .with_final_states();
        let mut alone = Recurrent::new(Cell::lstm_peephole(3, 4).unwrap()).with_final_states();
        if reversed {
            m = m.reversed();
            alone = alone.reversed();
        }
        for ((a, _), (w, _)) in alone.parameters().iter().zip(m.parameters()) {
            a.copy_from(&w).unwrap();
        }
        let all = m
            .forward(&Activity::Table(vec![
                x.clone().into(),
                lens.clone().into(),
                h0.clone().into(),
                c0.clone().into(),
            ]))
            .unwrap();
        let all = leaves(&all);
        for (b, len) in [(0, 5), (1, 3)] {
            let one = |t: &Tensor<f32>| t.narrow(0, b, 1).unwrap().contiguous();
            let cut = alone
                .forward(&Activity::Table(vec![
                    one(&x).narrow(1, 0, len).unwrap().contiguous().into(),
                    one(&h0).into(),
                    one(&c0).into(),
                ]))
                .unwrap();
            let cut = leaves(&cut);
            let y = one(&all[0]);
            let close = |a: &[f32], b: &[f32], what: &str| {
                assert_eq!(a.len(), b.len(), "{what}");
                for (u, v) in a.iter().zip(b) {
                    assert!((u - v).abs() < 1e-5, "{what}: {a:?} vs {b:?}");
                }
            };
            let what = format!("reversed {reversed}, sequence {b}");
            close(
                &y.narrow(1, 0, len).unwrap().to_vec(),
                &cut[0].to_vec(),
                &what,
            );
            assert!(
                y.narrow(1, len, 5 - len)
                    .unwrap()
                    .to_vec()
                    .iter()
                    .all(|&v| v == 0.0)
            );
            close(&one(&all[1]).to_vec(), &cut[1].to_vec(), &what);
            close(&one(&all[2]).to_vec(), &cut[2].to_vec(), &what);
        }
    }
}
