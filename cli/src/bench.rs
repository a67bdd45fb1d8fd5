//! `bigdl bench ...`: kernel benchmarks from the command line.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bigdl_kernels::gemm::{Backend, Gemm, Parallelism, Transpose, WORKLOADS};
use bigdl_kernels::{cpu, pool};
use clap::{Args, Subcommand};

/// What to benchmark.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Single-precision GEMM, in GFLOP/s (median of timed repetitions).
    Gemm(GemmArgs),
    /// All-reduce bandwidth under `mpirun -n N`: ours (f32 and bf16 wire)
    /// next to the MPI library's own `MPI_Allreduce`, in the same run.
    Allreduce(AllreduceArgs),
    /// Inference speed of a model file (any format `bigdl predict` reads) on
    /// random input: load time, median batch latency, images/s.
    Model(ModelArgs),
}

/// Options of `bigdl bench model`.
#[derive(Args)]
pub struct ModelArgs {
    /// The model file.
    #[arg(long)]
    model: std::path::PathBuf,
    /// The Caffe weights for a prototxt given as --model.
    #[arg(long)]
    weights: Option<std::path::PathBuf>,
    /// The input shape, batch first (e.g. 32,3,224,224).
    #[arg(long, value_delimiter = ',')]
    shape: Vec<usize>,
    /// Minimum measuring time, in milliseconds (at least 3 batches).
    #[arg(long, default_value_t = 5000)]
    min_ms: u64,
}

/// Options of `bigdl bench allreduce`.
#[derive(Args)]
pub struct AllreduceArgs {
    /// Buffer sizes in bytes (f32 elements x 4), with K/M suffixes.
    #[arg(long, value_delimiter = ',', default_value = "1M,4M,16M,64M,256M")]
    size: Vec<String>,
    /// Minimum measuring time per size and algorithm, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    min_ms: u64,
}

/// Options of `bigdl bench gemm`.
#[derive(Args)]
pub struct GemmArgs {
    /// Rows of op(A) and C. Give --m, --n and --k for one shape; none for the table.
    #[arg(long)]
    m: Option<usize>,
    /// Columns of op(B) and C.
    #[arg(long)]
    n: Option<usize>,
    /// Inner dimension.
    #[arg(long)]
    k: Option<usize>,
    /// Transposes of A and B: nn, nt, tn or tt.
    #[arg(long, default_value = "nn")]
    trans: String,
    /// Threads (default: the pool size, BIGDL_NUM_THREADS or all CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// native, mkl, openblas, or all (every backend in this build).
    #[arg(long, default_value = "native")]
    backend: String,
    /// Minimum measuring time per shape, in milliseconds.
    #[arg(long, default_value_t = 500)]
    min_ms: u64,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Gemm(args) => gemm(&args),
        BenchCommand::Allreduce(args) => allreduce(&args),
        BenchCommand::Model(args) => model(&args),
    }
}

fn gemm(args: &GemmArgs) -> anyhow::Result<()> {
    let (ta, tb) = match args.trans.to_ascii_lowercase().as_str() {
        "nn" => (false, false),
        "nt" => (false, true),
        "tn" => (true, false),
        "tt" => (true, true),
        other => bail!("--trans {other:?}: expected nn, nt, tn or tt"),
    };
    let backends = if args.backend.eq_ignore_ascii_case("all") {
        Backend::available()
    } else {
        let b = Backend::parse(&args.backend)?;
        b.check()?;
        vec![b]
    };
    let shapes = match (args.m, args.n, args.k) {
        (Some(m), Some(n), Some(k)) => vec![(m, n, k)],
        (None, None, None) => WORKLOADS.iter().map(|&(_, m, n, k)| (m, n, k)).collect(),
        _ => bail!("give all of --m, --n and --k, or none of them for the standard table"),
    };
    let mut out = std::io::stdout().lock();
    let threads = args.threads.unwrap_or(pool::num_threads());
    if threads == 0 || threads > pool::num_threads() {
        bail!(
            "--threads {threads}: the pool has {} threads (set BIGDL_NUM_THREADS for more)",
            pool::num_threads()
        );
    }
    writeln!(
        out,
        "# sgemm, trans {}, {threads} thread(s), isa {}, {}",
        args.trans,
        cpu::isa(),
        std::env::consts::ARCH
    )?;
    writeln!(
        out,
        "{:<10} {:>6} {:>6} {:>6} {:>10} {:>10} {:>10}",
        "backend", "m", "n", "k", "GFLOP/s", "best", "ms"
    )?;
    for &(m, n, k) in &shapes {
        for &backend in &backends {
            let g = Gemm::new(m, n, k)
                .trans_a(Transpose::from_bool(ta))
                .trans_b(Transpose::from_bool(tb))
                .parallelism(Parallelism::Threads(threads));
            let (median, best) = time_gemm(&g, backend, Duration::from_millis(args.min_ms))
                .with_context(|| format!("{backend} {m}x{n}x{k}"))?;
            writeln!(
                out,
                "{:<10} {m:>6} {n:>6} {k:>6} {:>10.1} {:>10.1} {:>10.3}",
                backend.name(),
                g.flops() / median / 1e9,
                g.flops() / best / 1e9,
                median * 1e3
            )?;
        }
    }
    Ok(())
}

/// Median and best seconds per call, after one warm-up call.
fn time_gemm(g: &Gemm, backend: Backend, min: Duration) -> anyhow::Result<(f64, f64)> {
    let a: Vec<f32> = (0..g.m * g.k)
        .map(|i| ((i * 7 + 3) % 17) as f32 * 0.1 - 0.8)
        .collect();
    let b: Vec<f32> = (0..g.k * g.n)
        .map(|i| ((i * 5 + 1) % 13) as f32 * 0.1 - 0.6)
        .collect();
    let mut c = vec![0.0f32; g.m * g.n];
    g.run_on(backend, &a, &b, &mut c)?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (start.elapsed() < min && times.len() < 10_000) {
        let t = Instant::now();
        g.run_on(backend, &a, &b, &mut c)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}

fn parse_bytes(s: &str) -> anyhow::Result<usize> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mul) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        _ => (&t[..], 1),
    };
    let n: usize = num
        .parse()
        .with_context(|| format!("--size {s:?}: expected bytes such as 4M"))?;
    match n.checked_mul(mul) {
        Some(b) if (4..=(1 << 31)).contains(&b) => Ok(b),
        _ => bail!("--size {s:?}: between 4 bytes and 2G"),
    }
}

#[cfg(not(feature = "mpi"))]
fn allreduce(_: &AllreduceArgs) -> anyhow::Result<()> {
    bail!("this bigdl was built without MPI (cargo feature `mpi` of bigdl-cli)")
}

/// Median seconds per call of `f`, repeated for at least `min`; every rank
/// runs the same number of calls (rank 0 decides, by broadcast).
#[cfg(feature = "mpi")]
fn time_collective(
    comm: &bigdl_comm::Collectives<bigdl_comm::mpi::MpiTransport>,
    min: Duration,
    f: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    use bigdl_comm::Communicator;
    f()?; // warm-up
    let mut times = Vec::new();
    let started = Instant::now();
    loop {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
        let mut go = [f32::from(u8::from(
            started.elapsed() < min && times.len() < 1000,
        ))];
        comm.broadcast(&mut go, 0)?;
        if go[0] == 0.0 {
            break;
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

#[cfg(feature = "mpi")]
fn allreduce(args: &AllreduceArgs) -> anyhow::Result<()> {
    use bigdl_comm::{Communicator, Wire, mpi};
    let sizes = args
        .size
        .iter()
        .map(|s| parse_bytes(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut comm = mpi::world()?;
    let (rank, n) = (comm.rank(), comm.size());
    let min = Duration::from_millis(args.min_ms);
    if rank == 0 {
        println!(
            "all-reduce, {n} ranks, {} (busbw = algbw x 2(n-1)/n; median per size)",
            mpi::MpiTransport::library_version()
                .lines()
                .next()
                .unwrap_or("")
        );
        println!(
            "{:>10} {:>14} {:>14} {:>14} {:>9} {:>9}",
            "bytes", "MPI GB/s", "bigdl GB/s", "bigdl bf16", "ratio", "bf16 rt"
        );
    }
    let bus = 2.0 * (n as f64 - 1.0) / n as f64;
    for bytes in sizes {
        let mut buf: Vec<f32> = (0..bytes / 4).map(|i| (i % 13) as f32).collect();
        let t_mpi = time_collective(&comm, min, &mut || {
            comm.transport().mpi_all_reduce(&mut buf);
            Ok(())
        })?;
        let t_ours = time_collective(&comm, min, &mut || Ok(comm.all_reduce(&mut buf)?))?;
        comm = comm.with_wire(Wire::Bf16);
        let t_bf16 = time_collective(&comm, min, &mut || Ok(comm.all_reduce(&mut buf)?))?;
        comm = comm.with_wire(Wire::F32);
        let bw = |t: f64| bytes as f64 / t / 1e9 * bus;
        if rank == 0 {
            println!(
                "{bytes:>10} {:>14.3} {:>14.3} {:>14.3} {:>8.2}x {:>8.2}x",
                bw(t_mpi),
                bw(t_ours),
                bw(t_bf16),
                t_mpi / t_ours,
                t_mpi / t_bf16
            );
            std::io::stdout().flush()?;
        }
    }
    Ok(())
}

fn model(args: &ModelArgs) -> anyhow::Result<()> {
    use bigdl_nn::Activity;
    use bigdl_tensor::Tensor;
    if args.shape.is_empty() || args.shape.contains(&0) {
        bail!("--shape: the input shape, batch first, e.g. 32,3,224,224");
    }
    let t0 = Instant::now();
    let mut m = crate::predict::load_model(&args.model, args.weights.as_deref())?;
    let load = t0.elapsed();
    m.evaluate();
    let mut g = bigdl_tensor::Generator::new(1);
    let x: Activity = Tensor::<f32>::uniform(&args.shape, -1.0, 1.0, &mut g)?.into();
    m.predict(&x)?; // warm-up: scratch buffers, page faults
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 3 || started.elapsed() < Duration::from_millis(args.min_ms) {
        let t = Instant::now();
        m.predict(&x)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    println!(
        "{}: load {:.1} ms; batch {}: median {:.2} ms over {} runs, {:.1} images/s ({} threads)",
        args.model.display(),
        load.as_secs_f64() * 1e3,
        args.shape[0],
        med * 1e3,
        times.len(),
        args.shape[0] as f64 / med,
        pool::num_threads()
    );
    Ok(())
}
