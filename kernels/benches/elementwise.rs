//! Criterion: element-wise kernels on 4 KiB .. 64 MiB inputs at every ISA level
//! (unary) and at the dispatch level (the rest). Ids: `ew/ISA/OP/N`; throughput in
//! bytes read + written.
#![allow(missing_docs)]

use std::hint::black_box;

use bigdl_kernels::cpu::Isa;
use bigdl_kernels::elementwise::{self as ew, Binary, Unary};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 5] = [1 << 10, 1 << 14, 1 << 18, 1 << 22, 1 << 24];

fn elementwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("ew");
    group.sample_size(10);
    for &n in &SIZES {
        let x: Vec<f32> = (0..n).map(|i| (i % 2000) as f32 * 0.005 - 5.0).collect();
        let z = vec![0.5f32; n];
        let mut y = vec![0.0f32; n];
        let bytes = 4 * n as u64;
        for isa in Isa::supported() {
            for op in [Unary::Exp, Unary::Tanh, Unary::Sigmoid, Unary::Relu] {
                group.throughput(Throughput::Bytes(2 * bytes));
                group.bench_function(format!("{isa}/{}/{n}", op.name()), |b| {
                    b.iter(|| ew::unary_isa(isa, op, black_box(&x), &mut y).unwrap())
                });
            }
        }
        let isa = bigdl_kernels::cpu::isa();
        group.throughput(Throughput::Bytes(3 * bytes));
        group.bench_function(format!("{isa}/add/{n}"), |b| {
            b.iter(|| ew::binary(Binary::Add, black_box(&x), &z, &mut y).unwrap())
        });
        group.bench_function(format!("{isa}/axpy/{n}"), |b| {
            b.iter(|| ew::axpy(0.5, black_box(&x), &mut y).unwrap())
        });
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(format!("{isa}/sum/{n}"), |b| {
            b.iter(|| ew::sum(black_box(&x)))
        });
        group.bench_function(format!("{isa}/max/{n}"), |b| {
            b.iter(|| ew::max(black_box(&x)))
        });
        group.throughput(Throughput::Bytes(2 * bytes));
        group.bench_function(format!("{isa}/softmax1024/{n}"), |b| {
            b.iter(|| ew::softmax(black_box(&x), &mut y, 1024.min(n)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, elementwise);
criterion_main!(benches);
