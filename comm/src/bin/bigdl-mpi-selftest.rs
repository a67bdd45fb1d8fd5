//! Checks the MPI backend under `mpirun` (run by `tests/mpi.rs`).
//!
//! `bigdl-mpi-selftest check`: every collective against closed forms on
//! integer data, exact and with the bf16 wire, on every rank.
//! `bigdl-mpi-selftest stall RANK SECONDS`: rank RANK sleeps before the
//! all-reduce; the others must fail within their 2 s timeout, naming it,
//! and end the job with `MPI_Abort`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bigdl_comm::{Communicator, Wire, mpi, shard_range};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let comm = match mpi::world() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bigdl-mpi-selftest: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (r, n) = (comm.rank(), comm.size());
    match args.first().map(String::as_str) {
        Some("check") => {
            for len in [0usize, 1, 3, 1000, 100_003] {
                let data: Vec<f32> = (0..len).map(|i| ((r + 1) * (i % 97) + r) as f32).collect();
                let want: Vec<f32> = (0..len)
                    .map(|i| ((i % 97) * n * (n + 1) / 2 + n * (n - 1) / 2) as f32)
                    .collect();
                let mine = shard_range(len, n, r);
                let mut shard = vec![f32::NAN; mine.len()];
                comm.reduce_scatter(&data, &mut shard).unwrap();
                assert_eq!(shard, want[mine.clone()], "reduce_scatter len {len}");
                let own: Vec<f32> = mine.map(|i| (1000 * r + i) as f32).collect();
                let mut all = vec![f32::NAN; len];
                comm.all_gather(&own, &mut all).unwrap();
                for q in 0..n {
                    for i in shard_range(len, n, q) {
                        assert_eq!(all[i], (1000 * q + i) as f32, "all_gather len {len}");
                    }
                }
                let mut v = data.clone();
                comm.all_reduce(&mut v).unwrap();
                assert_eq!(v, want, "all_reduce len {len}");
                let mut b = if r == n - 1 {
                    want.clone()
                } else {
                    vec![0.0; len]
                };
                comm.broadcast(&mut b, n - 1).unwrap();
                assert_eq!(b, want, "broadcast len {len}");
            }
            // Small integers are exact in bf16 too.
            let comm = comm.with_wire(Wire::Bf16);
            let mut v: Vec<f32> = (0..5001).map(|i| (i % 7 + r) as f32).collect();
            comm.all_reduce(&mut v).unwrap();
            let want: Vec<f32> = (0..5001)
                .map(|i| (n * (i % 7) + n * (n - 1) / 2) as f32)
                .collect();
            assert_eq!(v, want, "bf16 all_reduce");
            comm.barrier().unwrap();
            println!(
                "rank {r} of {n}: collectives ok ({})",
                mpi::MpiTransport::library_version()
                    .lines()
                    .next()
                    .unwrap_or("")
            );
            ExitCode::SUCCESS
        }
        Some("stall") => {
            let who: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
            let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30);
            let comm = comm.with_timeout(Duration::from_secs(2));
            if r == who {
                std::thread::sleep(Duration::from_secs(secs));
            }
            let mut v = vec![1.0f32; 1000];
            match comm.all_reduce(&mut v) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // One write: the ranks share mpirun's stderr, and a
                    // line written piece by piece interleaves with others.
                    let line = format!("bigdl-mpi-selftest: {e}\n");
                    let _ = std::io::stderr().write_all(line.as_bytes());
                    comm.transport().abort(3)
                }
            }
        }
        _ => {
            eprintln!("usage: bigdl-mpi-selftest check | stall RANK SECONDS");
            ExitCode::from(2)
        }
    }
}
