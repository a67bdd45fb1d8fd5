//! `bigdl train` and `bigdl eval`: the model zoo on MNIST and CIFAR-10.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bigdl_comm::{Communicator, Wire, local};
use bigdl_kernels::pool;
use bigdl_nn::data::{DataLoader, ImageSet, Split, Transform, read_cifar10, read_mnist};
use bigdl_nn::train::{
    DistriOptimizer, LocalOptimizer, Parallelism, Progress, Report, Trigger, ValidationMethod,
};
use bigdl_nn::{
    Adadelta, Adagrad, Adam, Adamax, ClassNLLCriterion, Criterion, Module, OptimMethod, RmsProp,
    Schedule, Sgd, manual_seed, models,
};
use clap::{Args, ValueEnum};

use crate::data::{DataSet, default_dir};

/// A model of the zoo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelName {
    /// LeNet-5 (BigDL's definition) for MNIST.
    Lenet5,
    /// ResNet-20 for CIFAR-10.
    Resnet20,
    /// ResNet-32 for CIFAR-10.
    Resnet32,
    /// ResNet-56 for CIFAR-10.
    Resnet56,
    /// VGG-16 for CIFAR-10.
    Vgg16,
}

/// An optimization method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimName {
    /// SGD (with --momentum, --weight-decay).
    Sgd,
    /// Adam.
    Adam,
    /// Adamax.
    Adamax,
    /// Adagrad.
    Adagrad,
    /// Adadelta.
    Adadelta,
    /// RMSprop.
    Rmsprop,
}

/// How numbers travel between ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WireName {
    /// Exact f32.
    F32,
    /// bfloat16 (half the bytes) for gradients and weights.
    Bf16,
}

/// Options of `bigdl train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The model.
    #[arg(long, value_enum, default_value = "lenet5")]
    model: ModelName,
    /// The data set (default: the model's).
    #[arg(long, value_enum)]
    dataset: Option<DataSet>,
    /// Where the data set is (default: data/mnist or data/cifar10).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Epochs to train.
    #[arg(long, default_value_t = 10)]
    epochs: u64,
    /// Stop after this many iterations (benchmarks), even mid-epoch.
    #[arg(long)]
    max_iterations: Option<u64>,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    /// Optimization method.
    #[arg(long, value_enum, default_value = "sgd")]
    optim: OptimName,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.0)]
    momentum: f32,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Learning-rate schedule over epochs: `constant`, `step:EPOCHS:GAMMA`
    /// (times GAMMA every EPOCHS epochs), `multistep:E1,E2,...:GAMMA`,
    /// `poly:POWER` (to 0 at the last epoch) or `warmup:EPOCHS` (linear from
    /// a tenth).
    #[arg(long, default_value = "constant")]
    schedule: String,
    /// Write a checkpoint into this directory after every epoch.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Continue from the newest valid checkpoint in --checkpoint.
    #[arg(long, requires = "checkpoint")]
    resume: bool,
    /// Write training summaries (CSV, TensorBoard events) into this directory.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Threads (default: BIGDL_NUM_THREADS or all CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Run one model on all threads (intra-op) instead of one replica per thread.
    #[arg(long)]
    intra_op: bool,
    /// Save the trained model (native format) to this file.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Augment MNIST with random crops of the image padded by 2 pixels
    /// (CIFAR-10 always trains with crops of the image padded by 4 and flips).
    #[arg(long)]
    augment: bool,
    /// Seed of the initial weights and of the data order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Train with several ranks: `none`; `mpi` (one rank per process of
    /// `mpirun -n N bigdl train ...`); or `local:N` (N ranks as threads of
    /// this process). --batch-size is the global batch, split by rank.
    #[arg(long, default_value = "none")]
    comm: String,
    /// How gradients and weights travel between ranks.
    #[arg(long, value_enum, default_value = "f32")]
    wire: WireName,
}

/// Where `--comm` trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comm {
    None,
    Mpi,
    Local(usize),
}

fn parse_comm(s: &str) -> anyhow::Result<Comm> {
    match s {
        "none" => Ok(Comm::None),
        "mpi" => Ok(Comm::Mpi),
        _ => match s.strip_prefix("local:").map(str::parse::<usize>) {
            Some(Ok(n)) if n >= 1 => Ok(Comm::Local(n)),
            _ => bail!("--comm must be none, mpi or local:N with N >= 1, not {s:?}"),
        },
    }
}

/// Processes of this MPI job on this node (OpenMPI and MPICH set it).
fn local_ranks() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(1usize)
        .max(1)
}

fn start_pool(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(t) = threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        let pin = pool::PoolConfig::from_env().pin;
        if let Err(c) = pool::init(pool::PoolConfig { threads: t, pin }) {
            bail!("the thread pool already runs with {} threads", c.threads);
        }
    }
    Ok(())
}

/// Parses `--schedule` with `per_epoch` iterations per epoch.
fn parse_schedule(s: &str, per_epoch: u64, epochs: u64) -> anyhow::Result<Schedule> {
    let bad = || {
        anyhow::anyhow!(
            "--schedule {s:?}: expected constant, step:EPOCHS:GAMMA, multistep:E1,E2:GAMMA, poly:POWER or warmup:EPOCHS"
        )
    };
    let parts: Vec<&str> = s.split(':').collect();
    let num = |x: &str| {
        x.parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(bad)
    };
    let int = |x: &str| x.parse::<u64>().map_err(|_| bad());
    Ok(match parts[..] {
        ["constant"] => Schedule::Constant,
        ["step", e, g] => Schedule::Step {
            step_size: int(e)?.max(1) * per_epoch,
            gamma: num(g)?,
        },
        ["multistep", es, g] => Schedule::MultiStep {
            milestones: es
                .split(',')
                .map(|e| int(e).map(|e| e * per_epoch))
                .collect::<anyhow::Result<_>>()?,
            gamma: num(g)?,
        },
        ["poly", p] => Schedule::Poly {
            power: num(p)?,
            max_iteration: epochs * per_epoch,
        },
        ["warmup", e] => Schedule::Warmup {
            steps: int(e)? * per_epoch,
            start_factor: 0.1,
            after: Box::new(Schedule::Constant),
        },
        _ => return Err(bad()),
    })
}

fn model_data(model: ModelName) -> DataSet {
    match model {
        ModelName::Lenet5 => DataSet::Mnist,
        _ => DataSet::Cifar10,
    }
}

/// The data set, its normalisation and (for CIFAR-10) augmentation.
fn load(
    set: DataSet,
    dir: Option<PathBuf>,
    split: Split,
    augment: bool,
) -> anyhow::Result<(Arc<ImageSet>, Transform)> {
    let dir = dir.unwrap_or_else(|| default_dir(set));
    Ok(match set {
        DataSet::Mnist => {
            // BigDL's LeNet example: the training set's mean and std.
            let t = Transform::normalize(&[0.130_660_48], &[0.308_107_8]);
            let t = if augment && split == Split::Train {
                t.random_crop(2)
            } else {
                t
            };
            (Arc::new(read_mnist(&dir, split)?), t)
        }
        DataSet::Cifar10 => {
            let t = Transform::normalize(&[0.4914, 0.4822, 0.4465], &[0.2470, 0.2435, 0.2616]);
            let t = if split == Split::Train {
                t.random_crop(4).random_hflip()
            } else {
                t
            };
            (Arc::new(read_cifar10(&dir, split)?), t)
        }
    })
}

fn build_model(m: ModelName) -> anyhow::Result<Box<dyn Module>> {
    Ok(match m {
        ModelName::Lenet5 => Box::new(models::lenet5(10)?),
        ModelName::Resnet20 => Box::new(models::resnet_cifar(20, 10)?),
        ModelName::Resnet32 => Box::new(models::resnet_cifar(32, 10)?),
        ModelName::Resnet56 => Box::new(models::resnet_cifar(56, 10)?),
        ModelName::Vgg16 => Box::new(models::vgg16_cifar(10)?),
    })
}

fn build_optim(a: &TrainArgs) -> Box<dyn OptimMethod> {
    match a.optim {
        OptimName::Sgd => Box::new(
            Sgd::new(a.lr)
                .with_momentum(a.momentum)
                .with_weight_decay(a.weight_decay),
        ),
        OptimName::Adam => {
            let mut o = Adam::new(a.lr);
            o.weight_decay = a.weight_decay;
            Box::new(o)
        }
        OptimName::Adamax => Box::new(Adamax::new(a.lr)),
        OptimName::Adagrad => {
            let mut o = Adagrad::new(a.lr);
            o.weight_decay = a.weight_decay;
            Box::new(o)
        }
        OptimName::Adadelta => Box::new(Adadelta::new(a.lr)),
        OptimName::Rmsprop => {
            let mut o = RmsProp::new(a.lr);
            o.weight_decay = a.weight_decay;
            Box::new(o)
        }
    }
}

/// A one-line progress display: redrawn in place on a terminal, a line per
/// tenth of an epoch otherwise.
struct Bar {
    tty: bool,
    last_tenth: usize,
}

impl Bar {
    fn show(&mut self, p: &Progress) {
        let (b, n) = p.batch;
        let line = format!(
            "epoch {} [{b:>4}/{n}] loss {:.4}  {:.0} img/s  lr {:.4}",
            p.state.epoch + u64::from(!p.state.epoch_done),
            p.state.loss,
            p.images_per_second,
            p.learning_rate
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
            if b == n {
                let _ = writeln!(err);
            }
        } else {
            let tenth = b * 10 / n.max(1);
            if tenth != self.last_tenth || b == n {
                self.last_tenth = tenth;
                let _ = writeln!(err, "{line}");
            }
        }
    }
}

/// What every rank trains on.
struct Job {
    set: DataSet,
    train: Arc<ImageSet>,
    test: Arc<ImageSet>,
    t_train: Transform,
    t_test: Transform,
}

impl Job {
    fn loaders(&self, a: &TrainArgs) -> anyhow::Result<(DataLoader, DataLoader, Schedule)> {
        let train = DataLoader::new(self.train.clone(), a.batch_size)
            .shuffle(a.seed)
            .transform(self.t_train.clone());
        let test = DataLoader::new(self.test.clone(), 1000.max(a.batch_size))
            .transform(self.t_test.clone());
        let schedule = parse_schedule(&a.schedule, train.batches_per_epoch() as u64, a.epochs)?;
        Ok((train, test, schedule))
    }
}

fn criterion() -> Box<dyn Criterion> {
    Box::new(ClassNLLCriterion::new())
}

fn methods() -> Vec<ValidationMethod> {
    vec![
        ValidationMethod::Top1,
        ValidationMethod::Loss(Box::new(ClassNLLCriterion::new())),
    ]
}

fn end_trigger(a: &TrainArgs) -> Trigger {
    match a.max_iterations {
        Some(n) => Trigger::MaxIteration(n),
        None => Trigger::MaxEpoch(a.epochs),
    }
}

/// The same settings on either optimizer.
macro_rules! configure {
    ($opt:expr, $a:expr, $test:expr, $schedule:expr) => {{
        let mut opt = $opt.end_when(end_trigger($a)).schedule($schedule).validate(
            $test,
            methods(),
            Trigger::EveryEpoch,
        );
        if let Some(dir) = &$a.checkpoint {
            opt = opt.checkpoint(dir.clone(), Trigger::EveryEpoch, $a.resume);
        }
        if let Some(dir) = &$a.summary {
            opt = opt.summary(dir)?;
        }
        opt
    }};
}

fn bar() -> Bar {
    Bar {
        tty: std::io::stderr().is_terminal(),
        last_tenth: usize::MAX,
    }
}

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let comm = parse_comm(&a.comm)?;
    let threads = match (a.threads, comm) {
        (Some(t), _) => Some(t),
        // Ranks on one node share its cores.
        (None, Comm::Mpi) => Some(
            (std::thread::available_parallelism().map_or(1, |n| n.get()) / local_ranks()).max(1),
        ),
        (None, _) => None,
    };
    start_pool(threads)?;
    if a.epochs == 0 || a.batch_size == 0 {
        bail!("--epochs and --batch-size must be at least 1");
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        bail!("--lr must be a positive number");
    }
    if let Some(dir) = &a.checkpoint {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the checkpoint directory {}", dir.display()))?;
        let probe = dir.join(format!(".bigdl-write-test-{}", std::process::id()));
        std::fs::write(&probe, b"").with_context(|| {
            format!("the checkpoint directory {} is not writable", dir.display())
        })?;
        let _ = std::fs::remove_file(probe);
    }
    let set = a.dataset.unwrap_or(model_data(a.model));
    if set != model_data(a.model) {
        bail!("{:?} trains on {:?}", a.model, model_data(a.model));
    }
    let (train, t_train) = load(set, a.data_dir.clone(), Split::Train, a.augment)?;
    let (test, t_test) = load(set, a.data_dir.clone(), Split::Test, false)?;
    let job = Job {
        set,
        train,
        test,
        t_train,
        t_test,
    };
    let wire = match a.wire {
        WireName::F32 => Wire::F32,
        WireName::Bf16 => Wire::Bf16,
    };
    match comm {
        Comm::None => train_local(&a, &job),
        Comm::Local(n) => {
            let per_rank = (pool::num_threads() / n).max(1);
            let results = local::run(n, |c| train_ranked(&a, &job, c.with_wire(wire), per_rank));
            results
                .into_iter()
                .collect::<anyhow::Result<Vec<()>>>()
                .map(|_| ())
        }
        Comm::Mpi => train_mpi(&a, &job, wire),
    }
}

#[cfg(feature = "mpi")]
fn train_mpi(a: &TrainArgs, job: &Job, wire: Wire) -> anyhow::Result<()> {
    let comm = bigdl_comm::mpi::world()?.with_wire(wire);
    let rank = comm.rank();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_ranked(a, job, &comm, pool::num_threads())
    }));
    match result {
        Ok(Ok(())) => Ok(()),
        // Peers may wait on this rank: end the whole job, with the reason.
        Ok(Err(e)) => {
            // One write: the ranks share mpirun's stderr, and a line written
            // piece by piece interleaves with the others' lines.
            let line = format!("bigdl train: rank {rank}: {e:#}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            comm.transport().abort(1)
        }
        Err(_) => {
            eprintln!("bigdl train: rank {rank}: panicked");
            comm.transport().abort(101)
        }
    }
}

#[cfg(not(feature = "mpi"))]
fn train_mpi(_: &TrainArgs, _: &Job, _: Wire) -> anyhow::Result<()> {
    bail!("this bigdl was built without MPI (cargo feature `mpi` of bigdl-cli)")
}

/// One process, no communicator.
fn train_local(a: &TrainArgs, job: &Job) -> anyhow::Result<()> {
    let (train_loader, test_loader, schedule) = job.loaders(a)?;
    manual_seed(a.seed);
    let model = build_model(a.model)?;
    let mut opt = LocalOptimizer::new(model, &criterion, build_optim(a), train_loader)?;
    if a.intra_op {
        opt.set_parallelism(Parallelism::IntraOp, &criterion)?;
    }
    let mut opt = configure!(opt, a, test_loader, schedule);
    eprintln!(
        "training {:?} on {:?}: {} images, {} test images, batch {}, {} threads ({})",
        a.model,
        job.set,
        job.train.len(),
        job.test.len(),
        a.batch_size,
        pool::num_threads(),
        if a.intra_op {
            "intra-op"
        } else {
            "one replica per thread"
        }
    );
    let mut bar = bar();
    let started = Instant::now();
    let report = opt.optimize(&mut |p| bar.show(p), &mut |msg| eprintln!("{msg}"))?;
    if let Some(path) = &a.save {
        bigdl_nn::io::save(opt.model(), path)?;
        eprintln!("saved the model to {}", path.display());
    }
    print_report(job, &report, started);
    Ok(())
}

/// One rank of a distributed run (rank 0 reports and saves).
fn train_ranked<C: Communicator>(
    a: &TrainArgs,
    job: &Job,
    comm: C,
    replicas: usize,
) -> anyhow::Result<()> {
    if a.intra_op {
        bail!("--intra-op is for one process; ranks run one replica per thread");
    }
    let (rank, size) = (comm.rank(), comm.size());
    let (train_loader, test_loader, schedule) = job.loaders(a)?;
    manual_seed(a.seed);
    let model = build_model(a.model)?;
    let opt = DistriOptimizer::new(
        model,
        &criterion,
        build_optim(a),
        train_loader,
        comm,
        replicas,
    )?;
    let mut opt = configure!(opt, a, test_loader, schedule);
    if rank == 0 {
        eprintln!(
            "training {:?} on {:?}: {} images, {} test images, global batch {}, {size} ranks x {replicas} replicas",
            a.model,
            job.set,
            job.train.len(),
            job.test.len(),
            a.batch_size,
        );
    }
    let mut bar = bar();
    let started = Instant::now();
    let report = opt.optimize(
        &mut |p| {
            if rank == 0 {
                bar.show(p)
            }
        },
        &mut |msg| {
            if rank == 0 {
                eprintln!("{msg}")
            }
        },
    )?;
    if rank == 0 {
        if let Some(path) = &a.save {
            bigdl_nn::io::save(opt.model(), path)?;
            eprintln!("saved the model to {}", path.display());
        }
        print_report(job, &report, started);
    }
    Ok(())
}

fn print_report(job: &Job, report: &Report, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let top1 = report
        .validation
        .iter()
        .find(|(n, _)| n == "Top1Accuracy")
        .map_or(f64::NAN, |(_, v)| *v);
    println!(
        "test accuracy: {:.2}% ({} of {} images), {} epochs, {} iterations in {:.1} s ({:.0} training images/s)",
        top1 * 100.0,
        (top1 * job.test.len() as f64).round(),
        job.test.len(),
        report.state.epoch,
        report.state.iteration,
        secs,
        report.images_per_second
    );
}

/// Options of `bigdl eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The model.
    #[arg(long, value_enum, default_value = "lenet5")]
    model: ModelName,
    /// Where the data set is (default: data/mnist or data/cifar10).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A checkpoint file, or a directory whose newest valid checkpoint is used.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Images per batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Threads (default: BIGDL_NUM_THREADS or all CPUs).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn eval(a: EvalArgs) -> anyhow::Result<()> {
    use bigdl_nn::train::checkpoint;
    start_pool(a.threads)?;
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let set = model_data(a.model);
    let (test, t_test) = load(set, a.data_dir.clone(), Split::Test, false)?;
    let mut model = build_model(a.model)?;
    let flat = bigdl_nn::compact(model.as_mut())?;
    let candidates = if a.checkpoint.is_dir() {
        checkpoint::list(&a.checkpoint)?
    } else {
        vec![a.checkpoint.clone()]
    };
    let mut loaded = None;
    for path in candidates.iter().rev() {
        match checkpoint::load_model(path, &flat.weight, model.as_mut()) {
            Ok(pos) => {
                loaded = Some((path.clone(), pos));
                break;
            }
            Err(e) => eprintln!("skipping checkpoint {}: {e}", path.display()),
        }
    }
    let Some((path, pos)) = loaded else {
        bail!(
            "no valid checkpoint for {:?} in {}",
            a.model,
            a.checkpoint.display()
        );
    };
    let loader = DataLoader::new(test.clone(), a.batch_size).transform(t_test);
    let mut methods = vec![
        ValidationMethod::Top1,
        ValidationMethod::Top5,
        ValidationMethod::Loss(Box::new(ClassNLLCriterion::new())),
    ];
    let scores = bigdl_nn::train::evaluate(model.as_mut(), &loader, &mut methods)?;
    let get = |n: &str| {
        scores
            .iter()
            .find(|(k, _)| k == n)
            .map_or(f64::NAN, |(_, v)| *v)
    };
    println!(
        "{}: epoch {}, iteration {}: top-1 {:.2}%, top-5 {:.2}%, loss {:.4} on {} test images",
        path.display(),
        pos.epoch,
        pos.iteration,
        get("Top1Accuracy") * 100.0,
        get("Top5Accuracy") * 100.0,
        get("Loss"),
        test.len()
    );
    Ok(())
}
