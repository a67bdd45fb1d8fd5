//! Prints the SGEMM peer table of `BENCHMARKS.md`: GFLOP/s of every peer on every
//! workload shape, and bigdl-native's ratio to the fastest other peer.
//!
//! `gemm_table THREADS [MIN_MS]`. Runs each peer on the same inputs, interleaved
//! shape by shape so machine noise hits all peers alike. `MATMUL_NUM_THREADS`
//! must equal THREADS (matrixmultiply reads it once); `benches/gemm_peers.sh`
//! sets it. Each measurement starts after a 200 ms pause, so that the previous
//! peer's spinning worker threads do not steal this one's cores.

use std::time::Duration;

use bigdl_benches::{Peer, inputs, median_secs};
use bigdl_kernels::gemm::{Backend, WORKLOADS};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let min = Duration::from_millis(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000));
    let mm = std::env::var("MATMUL_NUM_THREADS").unwrap_or_default();
    if mm != threads.to_string() {
        eprintln!("gemm_table: set MATMUL_NUM_THREADS={threads} (matrixmultiply reads it once)");
        std::process::exit(2);
    }
    let peers = Peer::available();
    let names: Vec<String> = peers.iter().map(|p| p.name()).collect();
    println!(
        "| shape (MxNxK) | workload | {} | native / best other |",
        names.join(" | ")
    );
    println!("|---|---|{}---|", "---:|".repeat(peers.len()));
    for &(name, m, n, k) in WORKLOADS {
        let (a, b, mut c) = inputs(m, n, k);
        let flops = 2.0 * (m * n * k) as f64;
        let gflops: Vec<f64> = peers
            .iter()
            .map(|&p| {
                // Let the previous peer's worker threads (rayon, thread-tree) go
                // idle first: their spinning otherwise steals the next peer's CPU.
                std::thread::sleep(Duration::from_millis(200));
                flops / median_secs(min, || p.sgemm((m, n, k), threads, &a, &b, &mut c)) / 1e9
            })
            .collect();
        let native = gflops[0];
        let best_other = peers
            .iter()
            .zip(&gflops)
            .filter(|(p, _)| **p != Peer::Bigdl(Backend::Native))
            .map(|(_, &g)| g)
            .fold(0.0, f64::max);
        let cells: Vec<String> = gflops.iter().map(|g| format!("{g:.1}")).collect();
        println!(
            "| {m}x{n}x{k} | {name} | {} | {:.2} |",
            cells.join(" | "),
            native / best_other
        );
    }
}
