//! Quick throughput check of the element-wise kernels at every ISA level:
//! `cargo run --release -p bigdl-kernels --example ew_speed [N]`.

use std::time::Instant;

use bigdl_kernels::cpu::Isa;
use bigdl_kernels::elementwise::{self as ew, Unary};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 16);
    let x: Vec<f32> = (0..n).map(|i| (i % 2000) as f32 * 0.005 - 5.0).collect();
    let mut y = vec![0.0f32; n];
    for isa in Isa::supported() {
        for op in [
            Unary::Exp,
            Unary::Log,
            Unary::Tanh,
            Unary::Sigmoid,
            Unary::Relu,
        ] {
            let reps = (1 << 26) / n.max(1) + 1;
            let t = Instant::now();
            for _ in 0..reps {
                ew::unary_isa(isa, op, &x, &mut y).unwrap();
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "{isa:7} {:8} n={n}: {:.2} Gelem/s",
                op.name(),
                (n * reps) as f64 / s / 1e9
            );
        }
    }
}
