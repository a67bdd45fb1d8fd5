//! Element-wise kernel timings as JSON lines, for `benches/elementwise_peers.py`
//! (which adds NumPy and PyTorch measured in the same run and prints the tables
//! of `BENCHMARKS.md`).
//!
//! `BIGDL_NUM_THREADS=T ew_table T MIN_MS`: for each op and size, the median
//! seconds per call on the engine's pool of T threads, plus a STREAM-like triad
//! `a = b + s * c` on the largest size.

use std::time::Duration;

use bigdl_benches::median_secs;
use bigdl_kernels::elementwise::{self as ew, Binary, Unary};

const SIZES: [usize; 4] = [1 << 10, 1 << 16, 1 << 20, 1 << 24];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let min = Duration::from_millis(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(300));
    let pool_threads = bigdl_kernels::pool::num_threads();
    if pool_threads != threads {
        eprintln!("ew_table: run with BIGDL_NUM_THREADS={threads} (the pool has {pool_threads})");
        std::process::exit(2);
    }
    let run = |f: &mut dyn FnMut()| median_secs(min, f);
    for &n in &SIZES {
        let x: Vec<f32> = (0..n).map(|i| (i % 2000) as f32 * 0.005 - 5.0).collect();
        let mut y = vec![0.0f32; n];
        let z = vec![0.5f32; n];
        let emit = |op: &str, secs: f64| {
            println!(
                "{{\"impl\": \"bigdl\", \"op\": \"{op}\", \"n\": {n}, \"threads\": {threads}, \"secs\": {secs:e}}}"
            );
        };
        for op in [
            Unary::Exp,
            Unary::Tanh,
            Unary::Sigmoid,
            Unary::Log,
            Unary::Relu,
        ] {
            let xs: Vec<f32> = if op == Unary::Log {
                x.iter().map(|v| v.abs() + 0.1).collect()
            } else {
                x.clone()
            };
            let s = run(&mut || ew::unary(op, &xs, &mut y).unwrap());
            emit(op.name(), s);
        }
        let s = run(&mut || ew::binary(Binary::Add, &x, &z, &mut y).unwrap());
        emit("add", s);
        let s = run(&mut || ew::axpy(0.5, &x, &mut y).unwrap());
        emit("axpy", s);
        let s = run(&mut || {
            std::hint::black_box(ew::sum(&x));
        });
        emit("sum", s);
        let s = run(&mut || ew::softmax(&x, &mut y, 1024.min(n)).unwrap());
        emit("softmax", s);
        if n == *SIZES.last().unwrap() {
            // STREAM triad, the machine's streaming bandwidth reference.
            let (mut a, b, c) = (vec![0.0f32; n], x.clone(), z.clone());
            let triad = |a: &mut [f32], b: &[f32], c: &[f32]| {
                for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                    *a = b + 0.5 * c;
                }
            };
            let s = run(&mut || {
                use rayon::prelude::*;
                bigdl_kernels::pool::pool().install(|| {
                    a.par_chunks_mut(1 << 16)
                        .zip(b.par_chunks(1 << 16).zip(c.par_chunks(1 << 16)))
                        .for_each(|(a, (b, c))| triad(a, b, c))
                });
                std::hint::black_box(&a);
            });
            emit("triad", s);
        }
    }
}
