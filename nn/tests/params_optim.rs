//! Flat parameters, replicas, and the optimizer's update rule.

use bigdl_nn::layers::{Linear, SpatialConvolution, Tanh};
use bigdl_nn::{Activity, Module, OptimMethod, Sequential, Sgd, compact, manual_seed, replicate};
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
