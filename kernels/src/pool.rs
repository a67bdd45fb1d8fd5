//! The engine's one thread pool.
//!
//! Every parallel kernel runs its named parallel loop on this pool; kernels never
//! spawn threads of their own and never let a BLAS library start threads inside it.
//!
//! Configuration, read once when the pool is first used:
//! - `BIGDL_NUM_THREADS=N`: number of worker threads. Default: the number of CPUs
//!   this process may run on (`std::thread::available_parallelism`, which honours
//!   the affinity mask and cgroup CPU quotas).
//! - `BIGDL_PIN_THREADS=1`: pin worker `i` to the `i`-th CPU of the process's
//!   affinity mask. **Off by default**: a process does not know who else runs on
//!   its machine. Several MPI ranks or Spark executors per node that each pin
//!   "their" workers to CPUs 0..N stack on the same cores and run N times slower,
//!   while unpinned threads are spread by the OS scheduler. Turn it on when the
//!   process owns its CPUs (one rank per socket via `mpirun --bind-to socket`,
//!   `taskset`, a dedicated box): pinning then keeps each worker's packed GEMM
//!   panels in its own L1/L2.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};

/// The pool's settings, as read from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Number of worker threads (at least 1).
    pub threads: usize,
    /// Whether workers are pinned to CPUs.
    pub pin: bool,
}

impl PoolConfig {
    /// Reads `BIGDL_NUM_THREADS` and `BIGDL_PIN_THREADS`. Invalid values are
    /// reported on stderr and replaced by the defaults.
    pub fn from_env() -> PoolConfig {
        let default_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = match std::env::var("BIGDL_NUM_THREADS") {
            Ok(v) if !v.trim().is_empty() => match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    eprintln!(
                        "bigdl: ignoring BIGDL_NUM_THREADS={v:?} (expected a positive integer); \
                         using {default_threads}"
                    );
                    default_threads
                }
            },
            _ => default_threads,
        };
        let pin = match std::env::var("BIGDL_PIN_THREADS") {
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "" | "0" | "false" | "no" | "off" => false,
                _ => {
                    eprintln!("bigdl: ignoring BIGDL_PIN_THREADS={v:?} (expected 0 or 1)");
                    false
                }
            },
            Err(_) => false,
        };
        PoolConfig { threads, pin }
    }
}

struct Pool {
    pool: ThreadPool,
    config: PoolConfig,
}

static POOL: OnceLock<Pool> = OnceLock::new();

fn build(config: PoolConfig) -> Pool {
    let cores = if config.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let pool = ThreadPoolBuilder::new()
        .num_threads(config.threads.max(1))
        .thread_name(|i| format!("bigdl-worker-{i}"))
        .start_handler(move |i| {
            if let Some(core) = cores.get(i % cores.len().max(1)) {
                // Pinning is an optimisation: a refusal (e.g. a restricted
                // container) leaves the thread where the OS put it.
                let _ = core_affinity::set_for_current(*core);
            }
        })
        .build()
        .expect("bigdl: cannot start the worker thread pool");
    Pool { pool, config }
}

fn global() -> &'static Pool {
    POOL.get_or_init(|| build(PoolConfig::from_env()))
}

/// Starts the pool with `config` instead of the environment's settings (a
/// command-line `--threads`). Only before the pool's first use: afterwards it
/// returns the settings the pool already runs with as the error.
pub fn init(config: PoolConfig) -> Result<(), PoolConfig> {
    let mut fresh = false;
    POOL.get_or_init(|| {
        fresh = true;
        build(config)
    });
    if fresh { Ok(()) } else { Err(global().config) }
}

/// The process-wide pool, started on first use.
///
/// # Panics
/// If the operating system refuses to start the worker threads.
pub fn pool() -> &'static ThreadPool {
    &global().pool
}

/// The settings the pool was started with.
pub fn config() -> PoolConfig {
    global().config
}

/// Number of worker threads in the pool.
pub fn num_threads() -> usize {
    global().config.threads
}

/// Whether the calling thread is one of the pool's workers. Kernels called from
/// inside a worker (e.g. one model replica per core) run single-threaded.
pub fn in_worker() -> bool {
    pool().current_thread_index().is_some()
}

/// Runs `task(0..tasks)` on the pool and waits for all of them (the caller
/// blocks; with one task, or from inside a worker, all run inline). The
/// caller used to run task 0 itself, which left one worker per parallel
/// region spinning for work beside two busy threads on two cores: ResNet-50
/// at batch 1 made 22 000 context switches a second with 1.66 CPUs busy;
/// with every task on the pool, 2 300 and 1.79, and 2-3% lower latency
/// (training throughput unchanged).
pub fn run_tasks<F>(tasks: usize, task: F)
where
    F: Fn(usize) + Sync,
{
    if tasks <= 1 || in_worker() {
        (0..tasks).for_each(task);
        return;
    }
    let task = &task;
    pool().install(|| (0..tasks).into_par_iter().with_max_len(1).for_each(task));
}

/// Keeps the pool's workers awake while it lives: each runs a job that
/// spins, taking any other job that arrives ([`rayon::yield_now`]), until
/// the guard drops (which waits for them). For calls made of many short
/// parallel sections (inference at batch 1: a few hundred per call), each
/// of which would otherwise wake sleeping workers; ResNet-50 at batch 1 on
/// 2 threads (Zen 5): 1.5-2% faster. Costs the workers' cores meanwhile.
/// `None` inside a worker or on a pool of one thread.
pub fn keep_warm() -> Option<Warm> {
    if in_worker() || num_threads() < 2 {
        return None;
    }
    let state = Arc::new((AtomicBool::new(false), AtomicUsize::new(num_threads())));
    for _ in 0..num_threads() {
        let state = state.clone();
        pool().spawn(move || {
            while !state.0.load(Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::hint::spin_loop();
                }
            }
            state.1.fetch_sub(1, Ordering::AcqRel);
        });
    }
    Some(Warm(state))
}

/// The guard of [`keep_warm`]: a stop flag and the spinners still running.
pub struct Warm(Arc<(AtomicBool, AtomicUsize)>);

impl Drop for Warm {
    fn drop(&mut self) {
        self.0.0.store(true, Ordering::Release);
        // No spinner outlives the guard.
        while self.0.1.load(Ordering::Acquire) > 0 {
            std::thread::yield_now();
        }
    }
}

/// Runs `f` on each of `parts` on the pool, or in turn when there is one
/// part or the caller is a worker already.
pub(crate) fn for_each_part<T: Send>(parts: Vec<T>, f: impl Fn(T) + Sync + Send) {
    if parts.len() <= 1 || in_worker() {
        parts.into_iter().for_each(f);
    } else {
        pool().install(|| parts.into_par_iter().for_each(f));
    }
}

/// A raw pointer shared by tasks that write disjoint parts of its buffer.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub(crate) *mut f32);
// SAFETY: used only where the tasks' writes are disjoint (stated at each use).
unsafe impl Send for SyncPtr {}
// SAFETY: as above.
unsafe impl Sync for SyncPtr {}
impl SyncPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Parallel sections run while the workers spin (on every thread, and
    /// nested), none inside a worker, and the guard's drop ends the
    /// spinners: afterwards the pool still runs work.
    #[test]
    fn warm_workers_take_jobs_and_stop() {
        for _ in 0..3 {
            let warm = keep_warm();
            assert_eq!(warm.is_some(), num_threads() > 1);
            let hits: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
            run_tasks(8, |t| {
                assert!(keep_warm().is_none());
                pool().install(|| {
                    (0..8).into_par_iter().for_each(|j| {
                        hits[t * 8 + j].fetch_add(1, Ordering::Relaxed);
                    })
                });
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            drop(warm);
        }
        let sum: usize = pool().install(|| (0..100usize).into_par_iter().sum());
        assert_eq!(sum, 4950);
        // Two callers at once (their spinners may nest in each other's).
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let _warm = keep_warm();
                        let n = AtomicUsize::new(0);
                        run_tasks(4, |_| {
                            n.fetch_add(1, Ordering::Relaxed);
                        });
                        assert_eq!(n.load(Ordering::Relaxed), 4);
                    }
                });
            }
        });
    }

    #[test]
    fn runs_every_task_once() {
        let hits: Vec<AtomicUsize> = (0..7).map(|_| AtomicUsize::new(0)).collect();
        run_tasks(7, |t| {
            hits[t].fetch_add(1, Ordering::Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        run_tasks(0, |_| panic!("no task expected"));
    }

    #[test]
    fn nested_calls_run_inline() {
        let total = AtomicUsize::new(0);
        run_tasks(2, |_| {
            // Task 0 runs on the caller, the others on the pool.
            run_tasks(3, |_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(total.load(Ordering::Relaxed), 6);
        assert!(num_threads() >= 1);
    }
}
