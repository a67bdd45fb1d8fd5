//! Convolution and pooling layer timings as JSON lines, for
//! `benches/conv_peers.py` (which adds PyTorch measured in the same run and
//! prints the table of `BENCHMARKS.md`).
//!
//! `BIGDL_NUM_THREADS=T conv_table MIN_MS`: for each layer of the table in
//! `bigdl_benches::LAYERS`, the median seconds of forward, backward-data and
//! backward-weights (conv) or forward and backward (max pooling), after a line
//! describing the layer's geometry. `conv_table MIN_MS NAME` times only the
//! layers whose name contains `NAME`. `BIGDL_CONV_ALGO=im2col|winograd`
//! runs the convolutions it applies to on that algorithm instead of the
//! plan's choice. `BIGDL_BENCH_BATCH=N` runs the convolutions at batch `N`
//! instead of the table's (e.g. 1, for inference latency).

use std::time::Duration;

use bigdl_benches::{LAYERS, Layer, median_secs};
use bigdl_kernels::conv::{Conv2d, ConvAlgo};
use bigdl_kernels::norm::{BatchNorm, Lrn};
use bigdl_kernels::pool2d::Pool2d;

fn main() {
    let min = Duration::from_millis(
        std::env::args()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    let emit = |name: &str, pass: &str, secs: f64| {
        println!(
            "{{\"impl\": \"bigdl\", \"layer\": \"{name}\", \"pass\": \"{pass}\", \"secs\": {secs:e}}}"
        );
    };
    // Optional second argument: only layers whose name contains it.
    let only = std::env::args().nth(2).unwrap_or_default();
    let forced = match std::env::var("BIGDL_CONV_ALGO").as_deref() {
        Ok("im2col") => Some(ConvAlgo::Im2col),
        Ok("winograd") => Some(ConvAlgo::Winograd),
        Ok(other) => panic!("BIGDL_CONV_ALGO={other}: expected im2col or winograd"),
        Err(_) => None,
    };
    let batch: Option<usize> = std::env::var("BIGDL_BENCH_BATCH").ok().map(|v| {
        v.parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("BIGDL_BENCH_BATCH={v}: expected a positive integer"))
    });
    for layer in LAYERS.iter().filter(|l| l.name().contains(only.as_str())) {
        match *layer {
            Layer::Conv {
                name,
                n,
                c,
                hw,
                oc,
                k,
                s,
                p,
            } => {
                let n = batch.unwrap_or(n);
                println!(
                    "{{\"layer\": \"{name}\", \"kind\": \"conv\", \"n\": {n}, \"c\": {c}, \"hw\": {hw}, \"oc\": {oc}, \"k\": {k}, \"s\": {s}, \"p\": {p}}}"
                );
                let mut plan = Conv2d::new(n, c, (hw, hw), oc, k, s, p)
                    .plan()
                    .expect("valid layer");
                if let Some(algo) = forced {
                    plan = plan.with_algo(algo).unwrap_or(plan);
                }
                let x = vec![0.5f32; plan.input_len()];
                let w = vec![0.01f32; plan.weight_len()];
                let b = vec![0.1f32; oc];
                let gy = vec![0.2f32; plan.output_len()];
                let (mut y, mut gx, mut gw, mut gb) = (
                    vec![0.0; plan.output_len()],
                    vec![0.0; x.len()],
                    vec![0.0; w.len()],
                    vec![0.0; oc],
                );
                let mut scratch = vec![0.0; plan.scratch_len()];
                emit(
                    name,
                    "fwd",
                    median_secs(min, || {
                        plan.forward(&x, &w, Some(&b), &mut y, &mut scratch)
                            .unwrap()
                    }),
                );
                emit(
                    name,
                    "bwd_data",
                    median_secs(min, || {
                        plan.backward_data(&gy, &w, &mut gx, &mut scratch).unwrap()
                    }),
                );
                emit(
                    name,
                    "bwd_weight",
                    median_secs(min, || {
                        plan.backward_weights(&x, &gy, &mut gw, Some(&mut gb), &mut scratch, false)
                            .unwrap()
                    }),
                );
            }
            Layer::MaxPool {
                name,
                n,
                c,
                hw,
                k,
                s,
                p,
                ceil,
            } => {
                println!(
                    "{{\"layer\": \"{name}\", \"kind\": \"maxpool\", \"n\": {n}, \"c\": {c}, \"hw\": {hw}, \"k\": {k}, \"s\": {s}, \"p\": {p}, \"ceil\": {ceil}}}"
                );
                let plan = Pool2d {
                    ceil_mode: ceil,
                    ..Pool2d::new(n, c, (hw, hw), k, s, p)
                }
                .plan()
                .expect("valid layer");
                let x: Vec<f32> = (0..plan.input_len()).map(|i| (i % 97) as f32).collect();
                let gy = vec![0.2f32; plan.output_len()];
                let (mut y, mut idx, mut gx) = (
                    vec![0.0; plan.output_len()],
                    vec![0; plan.output_len()],
                    vec![0.0; x.len()],
                );
                emit(
                    name,
                    "fwd",
                    median_secs(min, || plan.max_forward(&x, &mut y, &mut idx).unwrap()),
                );
                emit(
                    name,
                    "bwd_data",
                    median_secs(min, || plan.max_backward(&gy, &idx, &mut gx).unwrap()),
                );
            }
            Layer::BatchNorm { name, n, c, hw } => {
                println!(
                    "{{\"layer\": \"{name}\", \"kind\": \"batchnorm\", \"n\": {n}, \"c\": {c}, \"hw\": {hw}}}"
                );
                let bn = BatchNorm {
                    batch: n,
                    channels: c,
                    spatial: hw * hw,
                    eps: 1e-5,
                    momentum: 0.1,
                };
                let len = n * c * hw * hw;
                let x: Vec<f32> = (0..len).map(|i| (i % 97) as f32 * 0.01).collect();
                let (g, b) = (vec![1.0f32; c], vec![0.0f32; c]);
                let (mut rm, mut rv, mut y, mut gx) =
                    (vec![0.0; c], vec![1.0; c], vec![0.0; len], vec![0.0; len]);
                let (mut gg, mut gb) = (vec![0.0; c], vec![0.0; c]);
                let gy = vec![0.2f32; len];
                let saved = bn
                    .forward_train(&x, Some(&g), Some(&b), &mut y, &mut rm, &mut rv)
                    .unwrap();
                emit(
                    name,
                    "fwd",
                    median_secs(min, || {
                        bn.forward_train(&x, Some(&g), Some(&b), &mut y, &mut rm, &mut rv)
                            .unwrap();
                    }),
                );
                emit(
                    name,
                    "bwd_data",
                    median_secs(min, || {
                        bn.backward(
                            &x,
                            &gy,
                            Some(&g),
                            &saved,
                            &mut gx,
                            Some(&mut gg),
                            Some(&mut gb),
                        )
                        .unwrap()
                    }),
                );
            }
            Layer::Lrn { name, n, c, hw } => {
                println!(
                    "{{\"layer\": \"{name}\", \"kind\": \"lrn\", \"n\": {n}, \"c\": {c}, \"hw\": {hw}}}"
                );
                let lrn = Lrn {
                    batch: n,
                    channels: c,
                    spatial: hw * hw,
                    size: 5,
                    alpha: 1e-4,
                    beta: 0.75,
                    k: 2.0,
                };
                let len = n * c * hw * hw;
                let x: Vec<f32> = (0..len).map(|i| (i % 97) as f32 * 0.01).collect();
                let (mut y, mut sc, mut gx) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
                let gy = vec![0.2f32; len];
                emit(
                    name,
                    "fwd",
                    median_secs(min, || lrn.forward(&x, &mut y, &mut sc).unwrap()),
                );
                emit(
                    name,
                    "bwd_data",
                    median_secs(min, || lrn.backward(&x, &y, &sc, &gy, &mut gx).unwrap()),
                );
            }
        }
    }
}
