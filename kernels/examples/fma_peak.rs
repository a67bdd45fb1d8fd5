//! Measures this core's single-precision FMA peak: independent 512-bit (or 256-bit)
//! FMA chains with no memory traffic. `cargo run --release -p bigdl-kernels
//! --example fma_peak`. The GEMM efficiency in BENCHMARKS.md is relative to this.

#[cfg(target_arch = "x86_64")]
fn main() {
    use std::arch::x86_64::*;
    use std::time::Instant;

    #[target_feature(enable = "avx512f")]
    fn chains512(iters: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(1.0); 12];
        let x = _mm512_set1_ps(0.999_999);
        let y = _mm512_set1_ps(1e-7);
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
    }

    if !is_x86_feature_detected!("avx512f") {
        eprintln!("fma_peak: needs AVX-512F");
        return;
    }
    let iters = 20_000_000;
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        // SAFETY: AVX-512F was detected above.
        let s = unsafe { chains512(iters) };
        let secs = t.elapsed().as_secs_f64();
        let gflops = (iters * 12 * 16 * 2) as f64 / secs / 1e9;
        best = best.max(gflops);
        std::hint::black_box(s);
    }
    println!("single-core AVX-512 FMA peak: {best:.1} GFLOP/s");
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("fma_peak: x86-64 only");
}
