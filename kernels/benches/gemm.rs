//! Criterion: the native SGEMM at every ISA level this CPU supports, and every
//! compiled-in backend, on the workload shapes, one thread. Ids:
//! `BACKEND/ISA/sgemm/MxNxK`; throughput in FLOP.
#![allow(missing_docs)]

use std::hint::black_box;

use bigdl_kernels::cpu::{self, Isa};
use bigdl_kernels::gemm::{Backend, Gemm, Parallelism, WORKLOADS};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn gemm(c: &mut Criterion) {
    for &(_, m, n, k) in WORKLOADS {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut out = vec![0.0f32; m * n];
        let g = Gemm::new(m, n, k).parallelism(Parallelism::Threads(1));
        let mut group = c.benchmark_group("sgemm");
        group.throughput(Throughput::Elements(g.flops() as u64));
        group.sample_size(20);
        for isa in Isa::supported() {
            group.bench_function(format!("native/{isa}/{m}x{n}x{k}"), |bench| {
                bench.iter(|| g.run_native_isa(isa, black_box(&a), &b, &mut out).unwrap())
            });
        }
        for backend in Backend::available()
            .into_iter()
            .filter(|&b| b != Backend::Native)
        {
            group.bench_function(format!("{backend}/{}/{m}x{n}x{k}", cpu::isa()), |bench| {
                bench.iter(|| g.run_on(backend, black_box(&a), &b, &mut out).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group!(benches, gemm);
criterion_main!(benches);
