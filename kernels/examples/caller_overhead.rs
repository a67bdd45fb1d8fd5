//! Serial work between parallel GEMMs: how much do the pool's idle workers slow
//! the calling thread? `cargo run --release -p bigdl-kernels --example caller_overhead`.

use std::time::Instant;

use bigdl_kernels::gemm::Gemm;

fn main() {
    let (m, n, k) = (16, 1024, 144);
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let mut serial = vec![1.0f32; 150_000];
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..128 {
            // ~50 us of serial work, like an im2col, then a small parallel GEMM.
            for v in serial.iter_mut() {
                *v = (*v * 1.000_001).sqrt();
            }
            Gemm::new(m, n, k).run(&a, &b, &mut c).unwrap();
        }
        println!("{:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    }
    std::hint::black_box(&serial);
    // A convolution run image by image from the calling thread, each image's
    // GEMM split over the pool.
    let mut plan = bigdl_kernels::conv::Conv2d::new(128, 16, (32, 32), 16, 3, 1, 1)
        .plan()
        .unwrap();
    (plan.threads, plan.block) = (1, 1);
    let x = vec![0.5f32; plan.input_len()];
    let w = vec![0.01f32; plan.weight_len()];
    let mut y = vec![0.0; plan.output_len()];
    let mut s = vec![0.0; plan.scratch_len()];
    for _ in 0..3 {
        let t = Instant::now();
        plan.forward(&x, &w, None, &mut y, &mut s).unwrap();
        println!(
            "conv image by image: {:.2} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}
