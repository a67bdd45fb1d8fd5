//! Criterion: SGEMM of every peer on every workload shape, 1 thread and all pool
//! threads. Ids: `PEER/sgemm/MxNxK/tT`; throughput in FLOP (criterion's
//! "elements/s" reads as FLOP/s).
#![allow(missing_docs)]

use std::hint::black_box;

use bigdl_benches::{Peer, inputs};
use bigdl_kernels::gemm::WORKLOADS;
use bigdl_kernels::pool;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn peers(c: &mut Criterion) {
    let mut threads = vec![1];
    if pool::num_threads() > 1 {
        threads.push(pool::num_threads());
    }
    for &(_, m, n, k) in WORKLOADS {
        let (a, b, mut out) = inputs(m, n, k);
        let mut group = c.benchmark_group(format!("sgemm/{m}x{n}x{k}"));
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        group.sample_size(20);
        for &t in &threads {
            for peer in Peer::available() {
                // matrixmultiply's threads come from MATMUL_NUM_THREADS only.
                if peer == Peer::MatrixMultiply && t > 1 {
                    continue;
                }
                group.bench_function(format!("{}/t{t}", peer.name()), |bench| {
                    bench.iter(|| peer.sgemm((m, n, k), t, black_box(&a), &b, &mut out))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, peers);
criterion_main!(benches);
