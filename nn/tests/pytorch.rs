//! Forward outputs, input and parameter gradients, losses and optimizer
//! trajectories against PyTorch (float64), from the fixtures that
//! `tests/fixtures/make_fixtures.py` writes (regenerate with it; it needs
//! torch, this test does not).

use bigdl_nn::layers::*;
use bigdl_nn::*;
use bigdl_tensor::Tensor;

fn load(case: &str, name: &str) -> Tensor<f32> {
    let path = format!(
        "{}/tests/fixtures/{case}.{name}.npy",
        env!("CARGO_MANIFEST_DIR")
    );
    Tensor::read_npy(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_near(what: &str, got: &Tensor<f32>, want: &Tensor<f32>, tol: f32) {
    assert_eq!(got.sizes(), want.sizes(), "{what}: shape");
    for (i, (a, b)) in got.to_vec().iter().zip(want.to_vec()).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}[{i}]: {a} vs PyTorch {b}"
        );
    }
}

/// Loads the case's parameters into `m`, runs forward and backward, compares.
fn check_layer(case: &str, m: &mut dyn Module) {
    for (i, (w, _)) in m.parameters().iter().enumerate() {
        w.copy_from(&load(case, &format!("p{i}"))).unwrap();
    }
    let x: Activity = load(case, "x").into();
    let y = m.forward(&x).unwrap();
    assert_near(
        &format!("{case} y"),
        y.tensor("t").unwrap(),
        &load(case, "y"),
        1e-5,
    );
    m.zero_grad_parameters();
    let gx = m.backward(&x, &load(case, "gy").into()).unwrap();
    assert_near(
        &format!("{case} gx"),
        gx.tensor("t").unwrap(),
        &load(case, "gx"),
        1e-5,
    );
    for (i, (_, g)) in m.parameters().iter().enumerate() {
        assert_near(
            &format!("{case} g{i}"),
            g,
            &load(case, &format!("g{i}")),
            1e-5,
        );
    }
}

#[test]
fn layers_match_pytorch() {
    check_layer("linear", &mut Linear::new(7, 5).unwrap());
    check_layer(
        "conv",
        &mut SpatialConvolution::with_groups(4, 6, (3, 3), 2)
            .unwrap()
            .stride(2, 1)
            .pad(1, 2)
            .dilation(1, 2),
    );
    check_layer(
        "maxpool",
        &mut SpatialMaxPooling::new((3, 3), (2, 2)).pad(1, 1).ceil(),
    );
    check_layer(
        "avgpool",
        &mut SpatialAveragePooling::new((3, 3), (2, 2))
            .pad(1, 1)
            .ceil()
            .count_include_pad(false),
    );
    let mut bn = BatchNormalization::spatial(3).unwrap();
    check_layer("batchnorm", &mut bn);
    // The forward and the finite-difference pass ran forward twice: compare
    // the running statistics of a fresh layer after one step.
    let mut fresh = BatchNormalization::spatial(3).unwrap();
    fresh.forward(&load("batchnorm", "x").into()).unwrap();
    let (rm, rv) = fresh.running_stats();
    let t = |v: &[f32]| Tensor::from_vec(v.to_vec(), &[3]).unwrap();
    assert_near(
        "batchnorm running_mean",
        &t(rm),
        &load("batchnorm", "running_mean"),
        1e-5,
    );
    assert_near(
        "batchnorm running_var",
        &t(rv),
        &load("batchnorm", "running_var"),
        1e-5,
    );
    check_layer("lrn", &mut SpatialCrossMapLRN::new(5, 1e-1, 0.75, 2.0));
    check_layer("prelu", &mut PReLU::new(3).unwrap());
    check_layer("zero_pad", &mut SpatialZeroPadding::new(1, 2, 0, 3));
    // Embeddings: no input gradient, the weight gradient scattered by index.
    let mut emb = LookupTable::new(7, 4).unwrap();
    emb.parameters()[0]
        .0
        .copy_from(&load("embedding", "p0"))
        .unwrap();
    let idx: Activity = load("embedding", "x").into();
    let y = emb.forward(&idx).unwrap();
    assert_near(
        "embedding y",
        y.tensor("t").unwrap(),
        &load("embedding", "y"),
        1e-6,
    );
    emb.zero_grad_parameters();
    emb.backward(&idx, &load("embedding", "gy").into()).unwrap();
    assert_near(
        "embedding g0",
        &emb.parameters()[0].1,
        &load("embedding", "g0"),
        1e-5,
    );
    check_layer("rec_rnn", &mut Recurrent::new(Cell::rnn(3, 4).unwrap()));
    check_layer("rec_lstm", &mut Recurrent::new(Cell::lstm(3, 4).unwrap()));
    check_layer("rec_gru", &mut Recurrent::new(Cell::gru(3, 4).unwrap()));
    check_layer("act_elu", &mut ELU::new(1.3));
    check_layer("act_leaky_relu", &mut LeakyReLU::new(0.1));
    check_layer("act_softplus", &mut SoftPlus::new(2.0));
    check_layer("act_hardtanh", &mut HardTanh::new(-0.5, 0.7));
    check_layer(
        "act_relu6",
        &mut Sequential::new()
            .add(MulConstant::new(8.0))
            .add(ReLU6::new()),
    );
    check_layer("act_sigmoid", &mut Sigmoid::new());
    check_layer("act_tanh", &mut Tanh::new());
    check_layer("act_softmax", &mut SoftMax::new());
    check_layer("act_softmin", &mut SoftMin::new());
    check_layer("act_log_softmax", &mut LogSoftMax::new());
}

fn check_criterion(case: &str, c: &mut dyn Criterion) {
    let (x, t): (Activity, Activity) = (load(case, "x").into(), load(case, "t").into());
    let loss = c.forward(&x, &t).unwrap();
    let want = load(case, "loss").to_vec()[0];
    assert!(
        (loss - want).abs() <= 1e-5 * (1.0 + want.abs()),
        "{case} loss {loss} vs PyTorch {want}"
    );
    let g = c.backward(&x, &t).unwrap();
    assert_near(
        &format!("{case} gx"),
        g.tensor("t").unwrap(),
        &load(case, "gx"),
        1e-5,
    );
}

#[test]
fn criterions_match_pytorch() {
    check_criterion(
        "nll",
        &mut ClassNLLCriterion::new().weights(&load("nll", "w").to_vec()),
    );
    check_criterion("cross_entropy", &mut CrossEntropyCriterion::new());
    check_criterion("mse", &mut MSECriterion::new());
    check_criterion("l1", &mut AbsCriterion::new());
    check_criterion("smooth_l1", &mut SmoothL1Criterion::new());
    check_criterion(
        "bce",
        &mut BCECriterion::new().weights(&load("bce", "w").to_vec()),
    );
    let x: Activity = Activity::Table(vec![
        load("cosine", "x1").into(),
        load("cosine", "x2").into(),
    ]);
    let t: Activity = load("cosine", "t").into();
    let mut c = CosineEmbeddingCriterion::new(0.2);
    let loss = c.forward(&x, &t).unwrap();
    let want = load("cosine", "loss").to_vec()[0];
    assert!((loss - want).abs() <= 1e-5, "cosine loss {loss} vs {want}");
    let g = c.backward(&x, &t).unwrap();
    let g = g.table("t").unwrap();
    assert_near(
        "cosine g1",
        g[0].tensor("t").unwrap(),
        &load("cosine", "g1"),
        1e-5,
    );
    assert_near(
        "cosine g2",
        g[1].tensor("t").unwrap(),
        &load("cosine", "g2"),
        1e-5,
    );
}

#[test]
fn optimizers_match_pytorch() {
    let w0 = load("optim", "w0").to_vec();
    let grads = load("optim", "grads").to_vec();
    let cases: Vec<(&str, Box<dyn OptimMethod>)> = vec![
        (
            "sgd_momentum",
            Box::new(
                Sgd::new(0.1)
                    .with_momentum(0.9)
                    .with_dampening(0.1)
                    .with_weight_decay(0.01),
            ),
        ),
        (
            "sgd_nesterov",
            Box::new(Sgd::new(0.1).with_momentum(0.9).with_nesterov(true)),
        ),
        ("adam", {
            let mut a = Adam::new(0.01);
            a.weight_decay = 0.01;
            Box::new(a)
        }),
        ("adamax", Box::new(Adamax::new(0.02))),
        ("adagrad", {
            let mut a = Adagrad::new(0.1);
            a.lr_decay = 0.05;
            a.weight_decay = 0.01;
            Box::new(a)
        }),
        ("adadelta", Box::new(Adadelta::new(1.0))),
        ("rmsprop", {
            let mut r = RmsProp::new(0.01);
            r.weight_decay = 0.01;
            Box::new(r)
        }),
    ];
    for (name, mut opt) in cases {
        let path = load(&format!("optim_{name}"), "path").to_vec();
        let mut w = w0.clone();
        for (step, g) in grads.chunks(w.len()).enumerate() {
            opt.step(&mut w, g).unwrap();
            for (i, (&a, &b)) in w.iter().zip(&path[step * w.len()..]).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{name} step {step} w[{i}]: {a} vs PyTorch {b}"
                );
            }
        }
    }
}
