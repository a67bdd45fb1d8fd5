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

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Whether the calling thread is one of the pool's workers (but the one
/// running a [`drive`] call). Kernels called from inside a worker (e.g. one
/// model replica per core) run single-threaded.
pub fn in_worker() -> bool {
    !DRIVING.get() && pool().current_thread_index().is_some()
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
    install(|| (0..tasks).into_par_iter().with_max_len(1).for_each(task));
}

/// [`ThreadPool::install`] on the pool: `f` runs on a worker (this thread
/// if it is one), and its parallel iterators split over the pool. The
/// tasks of a [`drive`] call's parallel sections run as workers' tasks,
/// also on the driver ([`in_worker`]: nested calls run inline).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    /// Restores the driving state, also on a panic.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            DRIVING.set(self.0);
        }
    }
    pool().install(|| {
        let _restore = Restore(DRIVING.replace(false));
        f()
    })
}

thread_local! {
    /// Whether this thread runs a [`drive`] call's closure.
    static DRIVING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on one of the pool's workers, which counts as a caller outside
/// the pool for the parallel sections of `f` (they split over the pool),
/// while every other worker spins, taking the sections' tasks as they come
/// ([`rayon::yield_now`]), until `f` returns. For calls made of many short
/// parallel sections (inference at batch 1: a few hundred per call): a
/// caller outside the pool sleeps through each section and is woken after
/// it, here the section's caller is one of the threads that run it, and
/// none sleeps. ResNet-50 at batch 1 on 2 threads (Zen 5): see
/// BENCHMARKS.md. Costs the workers' cores for the call. Inside a worker
/// (or a call of `f`), or on a pool of one thread, `f` runs on the
/// calling thread.
pub fn drive<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if in_worker() || DRIVING.get() || num_threads() < 2 {
        return f();
    }
    pool().install(|| {
        /// Ends the spinners and the driving state, also on a panic.
        struct Driving(Arc<AtomicBool>);
        impl Drop for Driving {
            fn drop(&mut self) {
                DRIVING.set(false);
                self.0.store(true, Ordering::Release);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let driver = pool().current_thread_index();
        let spinning = stop.clone();
        // A job on every worker, which no other worker can take: the
        // driver's returns at once, the others spin. Nothing waits for
        // them to end, so a spinner that took a job of another caller
        // (which may spin in turn) holds no one up.
        pool().spawn_broadcast(move |ctx| {
            if Some(ctx.index()) == driver {
                return;
            }
            while !spinning.load(Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::hint::spin_loop();
                }
            }
        });
        DRIVING.set(true);
        let _driving = Driving(stop);
        f()
    })
}

/// Runs `f` on each of `parts` on the pool, or in turn when there is one
/// part or the caller is a worker already.
pub(crate) fn for_each_part<T: Send>(parts: Vec<T>, f: impl Fn(T) + Sync + Send) {
    if parts.len() <= 1 || in_worker() {
        parts.into_iter().for_each(f);
    } else {
        install(|| parts.into_par_iter().for_each(f));
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

    /// A driven call runs on a worker that counts as a caller: its
    /// parallel sections use the pool (their tasks, on any thread, count
    /// as workers': nested calls run inline), a nested drive runs inline,
    /// a panic ends the call (the pool still runs work), and callers on
    /// two threads at once drive in turn or nested in each other's
    /// spinners.
    #[test]
    fn driven_calls_use_the_pool() {
        for _ in 0..3 {
            let hits: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
            let on = drive(|| {
                assert!(!in_worker());
                drive(|| assert!(!in_worker()));
                run_tasks(8, |t| {
                    assert!(in_worker() || num_threads() == 1);
                    install(|| {
                        (0..8).into_par_iter().for_each(|j| {
                            hits[t * 8 + j].fetch_add(1, Ordering::Relaxed);
                        })
                    });
                });
                assert!(!in_worker());
                pool().current_thread_index()
            });
            assert_eq!(on.is_some(), num_threads() > 1);
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
        let caught = std::panic::catch_unwind(|| drive(|| panic!("inside")));
        assert!(caught.is_err());
        assert!(!in_worker());
        let sum: usize = install(|| (0..100usize).into_par_iter().sum());
        assert_eq!(sum, 4950);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let n = AtomicUsize::new(0);
                        drive(|| {
                            run_tasks(4, |_| {
                                n.fetch_add(1, Ordering::Relaxed);
                            })
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
