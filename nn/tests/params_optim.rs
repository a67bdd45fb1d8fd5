//! Flat parameters, replicas, and the optimizer's update rule.

use bigdl_nn::layers::{Linear, SpatialConvolution, Tanh};
use bigdl_nn::{
    Activity, Adadelta, Adagrad, Adam, Adamax, Module, OptimMethod, RmsProp, Schedule, Sequential,
    Sgd, clip_by_l2_norm, clip_by_value, compact, manual_seed, replicate,
};
use bigdl_tensor::{Generator, Tensor};

fn model() -> Sequential {
    Sequential::new()
        .add(SpatialConvolution::new(1, 2, (3, 3)).unwrap())
        .add(Tanh::new())
        .add(bigdl_nn::layers::Reshape::new(&[2 * 3 * 3]))
        .add(Linear::new(18, 3).unwrap())
}

fn input() -> Activity {
    Tensor::<f32>::uniform(&[2, 1, 5, 5], -1.0, 1.0, &mut Generator::new(9))
        .unwrap()
        .into()
}

#[test]
fn compact_keeps_values_and_makes_views() {
    manual_seed(11);
    let mut m = model();
    let before: Vec<Vec<f32>> = m.parameters().iter().map(|(w, _)| w.to_vec()).collect();
    let y0 = m.forward(&input()).unwrap().tensor("t").unwrap().to_vec();
    let flat = compact(&mut m).unwrap();
    let total: usize = before.iter().map(Vec::len).sum();
    assert_eq!(flat.weight.numel(), total);
    assert_eq!(flat.weight.to_vec(), before.concat());
    let y1 = m.forward(&input()).unwrap().tensor("t").unwrap().to_vec();
    assert_eq!(y0, y1);
    // Every parameter is a view of the flat buffers.
    for (w, g) in m.parameters() {
        assert!(w.shares_storage(&flat.weight) && g.shares_storage(&flat.grad));
    }
    // Gradients land in the flat gradient; writing the flat weight changes the model.
    m.zero_grad_parameters();
    let gy: Activity = Tensor::<f32>::ones(&[2, 3]).unwrap().into();
    m.backward(&input(), &gy).unwrap();
    assert!(flat.grad.to_vec().iter().any(|&g| g != 0.0));
    flat.weight.fill(0.0);
    let y2 = m.forward(&input()).unwrap().tensor("t").unwrap().to_vec();
    assert!(y2.iter().all(|&v| v == 0.0));
}

#[test]
fn replicas_share_weights_and_own_their_gradients() {
    manual_seed(12);
    let mut m = model();
    let flat = compact(&mut m).unwrap();
    let (mut r, rgrad) = replicate(&m).unwrap();
    for ((w, g), (rw, rg)) in m.parameters().iter().zip(r.parameters()) {
        assert!(rw.shares_storage(w));
        assert!(!rg.shares_storage(g) && rg.shares_storage(&rgrad));
    }
    let gy: Activity = Tensor::<f32>::ones(&[2, 3]).unwrap().into();
    m.zero_grad_parameters();
    r.zero_grad_parameters();
    m.forward(&input()).unwrap();
    m.backward(&input(), &gy).unwrap();
    r.forward(&input()).unwrap();
    r.backward(&input(), &gy).unwrap();
    assert_eq!(flat.grad.to_vec(), rgrad.to_vec());
    // The replica runs on another thread.
    let handle = std::thread::spawn(move || r.forward(&input()).map(|_| ()));
    handle.join().unwrap().unwrap();
}

#[test]
fn sgd_matches_torch_update_rules() {
    // Closed form over three steps, one weight, constant gradient g = 1,
    // w0 = 1: lr 0.1, weight decay 0.01, momentum 0.9, dampening 0.1.
    let mut sgd = Sgd::new(0.1)
        .with_weight_decay(0.01)
        .with_momentum(0.9)
        .with_dampening(0.1);
    let (mut w, mut v) = (1.0f64, 0.0f64);
    let mut ws = [1.0f32];
    for step in 0..3 {
        let d = 1.0 + 0.01 * w;
        v = if step == 0 { d } else { 0.9 * v + 0.9 * d };
        w -= 0.1 * v;
        sgd.step(&mut ws, &[1.0]).unwrap();
        assert!(
            (ws[0] as f64 - w).abs() < 1e-6,
            "step {step}: {} vs {w}",
            ws[0]
        );
    }
    // Nesterov and learning-rate decay.
    let mut sgd = Sgd::new(0.2)
        .with_momentum(0.5)
        .with_nesterov(true)
        .with_lr_decay(0.5);
    let (mut w, mut v) = (2.0f64, 0.0f64);
    let mut ws = [2.0f32];
    for step in 0..3u32 {
        let g = 0.3 * w; // gradient of 0.15 w^2
        v = if step == 0 { g } else { 0.5 * v + g };
        let lr = 0.2 / (1.0 + step as f64 * 0.5);
        w -= lr * (g + 0.5 * v);
        let gs = [0.3 * ws[0]];
        sgd.step(&mut ws, &gs).unwrap();
        assert!(
            (ws[0] as f64 - w).abs() < 1e-6,
            "nesterov step {step}: {} vs {w}",
            ws[0]
        );
    }
    // Invalid configurations and lengths are errors.
    let mut bad = Sgd::new(0.1).with_nesterov(true);
    assert!(bad.step(&mut [1.0], &[1.0]).is_err());
    assert!(Sgd::new(0.1).step(&mut [1.0, 2.0], &[1.0]).is_err());
}

#[test]
fn every_optimizer_resumes_exactly_from_its_state() {
    let grads: Vec<Vec<f32>> = (0..6)
        .map(|i| (0..5).map(|j| ((i * 5 + j) as f32 * 0.37).sin()).collect())
        .collect();
    let makers: Vec<fn() -> Box<dyn OptimMethod>> = vec![
        || {
            Box::new(
                Sgd::new(0.05)
                    .with_momentum(0.9)
                    .with_weight_decay(1e-3)
                    .with_lr_decay(0.01),
            )
        },
        || Box::new(Adam::new(0.01)),
        || Box::new(Adamax::new(0.01)),
        || Box::new(Adagrad::new(0.1)),
        || Box::new(Adadelta::new(1.0)),
        || Box::new(RmsProp::new(0.01)),
    ];
    for make in makers {
        let mut straight = make();
        let mut w1 = vec![0.5f32; 5];
        for g in &grads {
            straight.step(&mut w1, g).unwrap();
        }
        let mut first = make();
        let mut w2 = vec![0.5f32; 5];
        for g in &grads[..3] {
            first.step(&mut w2, g).unwrap();
        }
        let mut resumed = make();
        resumed.set_state(first.state().clone());
        for g in &grads[3..] {
            resumed.step(&mut w2, g).unwrap();
        }
        assert_eq!(w1, w2, "{}", straight.name());
        assert_eq!(straight.state(), resumed.state(), "{}", straight.name());
        // A state for other weights is an error, not a panic.
        assert!(resumed.step(&mut [1.0; 3], &[1.0; 3]).is_err());
    }
}

#[test]
fn schedules_and_clipping() {
    let step = Schedule::Step {
        step_size: 10,
        gamma: 0.5,
    };
    assert_eq!(step.rate(0.1, 9), 0.1);
    assert_eq!(step.rate(0.1, 25), 0.025);
    let multi = Schedule::MultiStep {
        milestones: vec![5, 8],
        gamma: 0.1,
    };
    assert_eq!(
        [multi.rate(1.0, 4), multi.rate(1.0, 5), multi.rate(1.0, 9)],
        [1.0, 0.1, 0.1f32 * 0.1]
    );
    let exp = Schedule::Exponential {
        decay_step: 4,
        rate: 0.5,
    };
    assert!((exp.rate(1.0, 2) - 0.5f32.sqrt()).abs() < 1e-6);
    let poly = Schedule::Poly {
        power: 2.0,
        max_iteration: 10,
    };
    assert!((poly.rate(1.0, 5) - 0.25).abs() < 1e-6);
    assert_eq!(poly.rate(1.0, 10), 0.0);
    let warm = Schedule::Warmup {
        steps: 4,
        start_factor: 0.2,
        after: Box::new(step.clone()),
    };
    assert!((warm.rate(1.0, 0) - 0.2).abs() < 1e-6);
    assert!((warm.rate(1.0, 2) - 0.6).abs() < 1e-6);
    assert_eq!(warm.rate(1.0, 4 + 10), 0.5);
    let mut plateau = Schedule::plateau(0.5, 1, 0.01, true);
    for (score, want) in [(0.5, 1.0), (0.6, 1.0), (0.6, 1.0), (0.55, 0.5), (0.7, 0.5)] {
        plateau.observe(score);
        assert_eq!(plateau.rate(1.0, 0), want, "after score {score}");
    }
    for _ in 0..20 {
        plateau.observe(0.1);
    }
    assert_eq!(plateau.rate(1.0, 0), 0.01);

    let mut g = vec![3.0f32, -4.0];
    assert_eq!(clip_by_l2_norm(&mut g, 1.0), 5.0);
    assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] + 0.8).abs() < 1e-6);
    clip_by_value(&mut g, -0.5, 0.5);
    assert_eq!(g, [0.5, -0.5]);
}

#[test]
fn sgd_state_restores_exactly() {
    let grads: Vec<Vec<f32>> = (0..6)
        .map(|i| (0..5).map(|j| ((i * 5 + j) as f32 * 0.37).sin()).collect())
        .collect();
    let mk = || {
        Sgd::new(0.05)
            .with_momentum(0.9)
            .with_weight_decay(1e-3)
            .with_lr_decay(0.01)
    };
    let mut straight = mk();
    let mut w1 = vec![0.5f32; 5];
    for g in &grads {
        straight.step(&mut w1, g).unwrap();
    }
    let mut first = mk();
    let mut w2 = vec![0.5f32; 5];
    for g in &grads[..3] {
        first.step(&mut w2, g).unwrap();
    }
    let mut resumed = mk();
    resumed.set_state(first.state().clone());
    for g in &grads[3..] {
        resumed.step(&mut w2, g).unwrap();
    }
    assert_eq!(w1, w2);
}

#[test]
fn replicas_draw_their_own_dropout_masks() {
    manual_seed(13);
    let m = Sequential::new().add(bigdl_nn::layers::Dropout::new(0.5).unwrap());
    let (mut a, _) = replicate(&m).unwrap();
    let (mut b, _) = replicate(&m).unwrap();
    let x: Activity = Tensor::<f32>::ones(&[64]).unwrap().into();
    let ya = a.forward(&x).unwrap().tensor("t").unwrap().to_vec();
    let yb = b.forward(&x).unwrap().tensor("t").unwrap().to_vec();
    assert_ne!(ya, yb);
}

/// `backward_parameters` (what an optimizer's step calls) accumulates the
/// parameter gradients `backward` does, bit for bit, on models whose first
/// module has no parameters (LeNet-5 starts with a Reshape) or has them
/// (ResNet-8, and a lone convolution or linear layer).
#[test]
fn backward_parameters_matches_backward() {
    let cases: Vec<(Box<dyn Module>, Vec<usize>)> = vec![
        (
            Box::new(bigdl_nn::models::lenet5(10).unwrap()),
            vec![3, 784],
        ),
        (
            Box::new(bigdl_nn::models::resnet_cifar(8, 10).unwrap()),
            vec![2, 3, 8, 8],
        ),
        (Box::new(model()), vec![2, 1, 5, 5]),
        (
            Box::new(SpatialConvolution::new(2, 3, (3, 3)).unwrap()),
            vec![2, 2, 6, 5],
        ),
        (Box::new(Linear::new(7, 4).unwrap()), vec![3, 7]),
    ];
    for (m, shape) in cases {
        manual_seed(5);
        let x: Activity = Tensor::<f32>::uniform(&shape, -1.0, 1.0, &mut Generator::new(3))
            .unwrap()
            .into();
        let grads = |mut m: Box<dyn Module>, full: bool| {
            m.zero_grad_parameters();
            let y = m.forward(&x).unwrap();
            let y = y.tensor("t").unwrap();
            let gy: Vec<f32> = y.to_vec().iter().map(|v| v * 0.5 - 0.1).collect();
            let gy = Activity::from(Tensor::from_vec(gy, y.sizes()).unwrap());
            if full {
                m.backward(&x, &gy).unwrap();
            } else {
                m.backward_parameters(&x, &gy).unwrap();
            }
            m.parameters()
                .iter()
                .flat_map(|(_, g)| g.to_vec())
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        };
        let want = grads(m.clone_module(), true);
        assert!(!want.is_empty());
        assert_eq!(grads(m, false), want);
    }
}
