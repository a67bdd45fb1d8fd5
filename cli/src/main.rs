//! The `bigdl` command.
//!
//! - `bigdl info`: CPU, SIMD level, caches, thread pool, GEMM backends.
//! - `bigdl bench gemm [--m M --n N --k K] [--trans nn|nt|tn|tt] [--threads T]
//!   [--backend native|mkl|openblas|all]`: SGEMM GFLOP/s; without a shape it runs
//!   the standard table (square 128..2048 and deep-learning layer shapes).
#![forbid(unsafe_code)]

mod bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bigdl",
    version,
    about = "bigdl-rs: deep learning where the data lives"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CPU, SIMD level, caches, thread pool and GEMM backends.
    Info,
    /// Measure kernels.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Bench { what } => bench::run(what),
    };
    if let Err(e) = result {
        // A closed pipe (`bigdl info | head`) is the reader's choice, not an error.
        let broken_pipe = e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe);
        if !broken_pipe {
            eprintln!("bigdl: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn info() -> anyhow::Result<()> {
    use bigdl_kernels::{cpu, gemm::Backend, pool};
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let caches = cpu::cache_sizes();
    writeln!(
        out,
        "isa:      {} (detected {})",
        cpu::isa(),
        cpu::detected()
    )?;
    writeln!(
        out,
        "caches:   L1d {} KiB, L2 {} KiB, L3 {} KiB",
        caches.l1d >> 10,
        caches.l2 >> 10,
        caches.l3 >> 10
    )?;
    let pc = pool::config();
    writeln!(out, "pool:     {} threads, pinned: {}", pc.threads, pc.pin)?;
    for b in Backend::ALL {
        match b.describe() {
            Ok(d) => writeln!(out, "gemm:     {b}: {d}")?,
            Err(e) => writeln!(out, "gemm:     {b}: unavailable ({e})")?,
        }
    }
    Ok(())
}
