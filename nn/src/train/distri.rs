//! Synchronous data-parallel training across processes: BigDL's
//! `DistriOptimizer` over any [`Communicator`].

use std::ops::Range;
use std::path::{Path, PathBuf};

use bigdl_comm::{Communicator, shard_range};
use bigdl_tensor::Tensor;

use super::{
    Clip, LocalOptimizer, Parallelism, Progress, Reducer, Report, Trigger, ValidationMethod,
    clip_local,
};
use crate::criterion::Criterion;
use crate::data::DataLoader;
use crate::error::{Result, invalid};
use crate::module::{FlatParameters, Module, init_generator};
use crate::optim::{OptimMethod, OptimState, Schedule};

/// Trains one model with several processes (ranks), BigDL's way.
///
/// Every global batch is split by rank ([`DataLoader::part`]); each rank
/// computes the gradient of its part with its own replicas, scaled by its
/// share of the global batch. A reduce-scatter gives rank `r` the sum of
/// shard `r` (added in rank order); rank `r` runs the optimizer on its shard
/// of the weights only, so the optimizer state is sharded too; an all-gather
/// returns the full weights to every rank. Validation runs on each rank's
/// part of the validation set and reports the global score. Rank 0 writes
/// checkpoints (with the optimizer state gathered) and summaries; resuming
/// needs the checkpoint directory to be shared by the ranks.
///
/// With one replica per rank and exact (`f32`) wire format, `N` ranks
/// compute bitwise the same weights as a [`LocalOptimizer`] with
/// [`Parallelism::DataParallel`]`(N)` on the same global batches (with
/// [`Clip::L2Norm`] the global norm is summed shard by shard, so it may
/// differ in its last bits).
///
/// On resume every rank loads the checkpoint's non-parameter state (batch
/// norm statistics, dropout streams), which is rank 0's.
pub struct DistriOptimizer<C: Communicator> {
    inner: LocalOptimizer,
    comm: C,
}

impl<C: Communicator> DistriOptimizer<C> {
    /// Trains `model` on this rank's part of `train` (the whole data set:
    /// every rank passes the same), with `replicas` model replicas on this
    /// rank's threads. Every rank must build the same model (same seed);
    /// rank 0's initial weights are broadcast at the start anyway.
    pub fn new(
        model: Box<dyn Module>,
        make_criterion: &dyn Fn() -> Box<dyn Criterion>,
        optim: Box<dyn OptimMethod>,
        train: DataLoader,
        comm: C,
        replicas: usize,
    ) -> Result<DistriOptimizer<C>> {
        let (rank, size) = (comm.rank(), comm.size());
        let mut inner = LocalOptimizer::new(model, make_criterion, optim, train.part(rank, size))?;
        // Replica seeds as one process with `size * replicas` replicas
        // would draw them.
        for _ in 0..rank * replicas.max(1) {
            init_generator();
        }
        inner.set_parallelism(Parallelism::DataParallel(replicas.max(1)), make_criterion)?;
        Ok(DistriOptimizer { inner, comm })
    }

    /// Stops when `t` fires.
    pub fn end_when(mut self, t: Trigger) -> Self {
        self.inner = self.inner.end_when(t);
        self
    }

    /// Clips the summed gradient before every step (the L2 norm is the
    /// global one).
    pub fn clip(mut self, c: Clip) -> Self {
        self.inner = self.inner.clip(c);
        self
    }

    /// Sets a learning-rate schedule over the optimizer's base rate.
    pub fn schedule(mut self, s: Schedule) -> Self {
        self.inner = self.inner.schedule(s);
        self
    }

    /// Validates on `data` (the whole set; each rank scores its part) with
    /// `methods` whenever `when` fires, and at the end.
    pub fn validate(
        mut self,
        data: DataLoader,
        methods: Vec<ValidationMethod>,
        when: Trigger,
    ) -> Self {
        let data = data.part(self.comm.rank(), self.comm.size());
        self.inner = self.inner.validate(data, methods, when);
        self
    }

    /// Checkpoints into `dir` (written by rank 0) whenever `when` fires and
    /// at the end; with `resume`, every rank first continues from the newest
    /// valid checkpoint there.
    pub fn checkpoint(mut self, dir: PathBuf, when: Trigger, resume: bool) -> Self {
        self.inner = self.inner.checkpoint(dir, when, resume);
        self
    }

    /// Writes summaries into `dir` (on rank 0; other ranks ignore it).
    pub fn summary(mut self, dir: &Path) -> Result<Self> {
        if self.comm.rank() == 0 {
            self.inner = self.inner.summary(dir)?;
        }
        Ok(self)
    }

    /// The communicator.
    pub fn comm(&self) -> &C {
        &self.comm
    }

    /// The model (after [`DistriOptimizer::optimize`]: the trained weights,
    /// the same on every rank).
    pub fn model(&mut self) -> &mut dyn Module {
        self.inner.model()
    }

    /// The flat weights and gradients.
    pub fn parameters(&self) -> &FlatParameters {
        &self.inner.flat
    }

    /// The global validation scores (every rank must call it).
    pub fn evaluate(&mut self) -> Result<Vec<(String, f64)>> {
        let mut red = Sharded::new(&self.comm, self.inner.flat.weight.numel());
        self.inner.evaluate_with(&mut red)
    }

    /// Trains until the end trigger fires (every rank calls it). `progress`
    /// and `log` are called on every rank; images per second are global.
    pub fn optimize(
        &mut self,
        progress: &mut dyn FnMut(&Progress),
        log: &mut dyn FnMut(String),
    ) -> Result<Report> {
        let mut red = Sharded::new(&self.comm, self.inner.flat.weight.numel());
        let report = self.inner.run(&mut red, progress, log)?;
        // The exact weights, whatever the wire format.
        let full = red.gather_exact(&red.master.clone())?;
        self.inner
            .flat
            .weight
            .as_slice_mut()?
            .copy_from_slice(&full);
        Ok(report)
    }
}

/// The sharded step of one rank.
struct Sharded<'a, C: Communicator> {
    comm: &'a C,
    len: usize,
    range: Range<usize>,
    /// This rank's shard of the weights, in full precision.
    master: Vec<f32>,
    /// This rank's shard of the summed gradient.
    grad: Vec<f32>,
}

impl<'a, C: Communicator> Sharded<'a, C> {
    fn new(comm: &'a C, len: usize) -> Self {
        let range = shard_range(len, comm.size(), comm.rank());
        Sharded {
            comm,
            len,
            master: Vec::new(),
            grad: vec![0.0; range.len()],
            range,
        }
    }

    /// Every rank's exact `shard` (this rank's) into one buffer, by one
    /// exact broadcast per rank.
    fn gather_exact(&self, shard: &[f32]) -> Result<Vec<f32>> {
        let n = self.comm.size();
        let mut full = vec![0.0; self.len];
        full[self.range.clone()].copy_from_slice(shard);
        for q in 0..n {
            let r = shard_range(self.len, n, q);
            self.comm.broadcast(&mut full[r], q)?;
        }
        Ok(full)
    }
}

impl<C: Communicator> Reducer for Sharded<'_, C> {
    fn update(
        &mut self,
        flat: &FlatParameters,
        optim: &mut dyn OptimMethod,
        clip: Option<Clip>,
        loss: f32,
    ) -> Result<f32> {
        self.comm
            .reduce_scatter(&flat.grad.as_slice()?, &mut self.grad)?;
        let mut l = [loss];
        self.comm.all_reduce(&mut l)?;
        match clip {
            Some(Clip::L2Norm(max)) => {
                let mut ss = [self.grad.iter().map(|&g| g as f64 * g as f64).sum()];
                self.sum(&mut ss)?;
                let norm = ss[0].sqrt() as f32;
                if norm > max && norm > 0.0 {
                    let s = max / norm;
                    self.grad.iter_mut().for_each(|g| *g *= s);
                }
            }
            c => clip_local(c, &mut self.grad),
        }
        optim.step(&mut self.master, &self.grad)?;
        self.comm
            .all_gather(&self.master, &mut flat.weight.as_slice_mut()?)?;
        Ok(l[0])
    }

    fn sum(&mut self, v: &mut [f64]) -> Result<()> {
        // Each number as an exact pair of f32 (high and low parts): about
        // 48 significant bits survive the f32 collective.
        let mut pairs: Vec<f32> = v
            .iter()
            .flat_map(|&x| {
                let hi = x as f32;
                [hi, (x - hi as f64) as f32]
            })
            .collect();
        self.comm.all_reduce(&mut pairs)?;
        for (x, p) in v.iter_mut().zip(pairs.chunks(2)) {
            *x = p[0] as f64 + p[1] as f64;
        }
        Ok(())
    }

    fn leader(&self) -> bool {
        self.comm.rank() == 0
    }

    fn gather(
        &mut self,
        _: &FlatParameters,
        optim: &dyn OptimMethod,
    ) -> Result<Option<(Tensor<f32>, OptimState)>> {
        let weights = self.gather_exact(&self.master)?;
        let st = optim.state();
        let buffers = st
            .buffers
            .iter()
            .map(|b| self.gather_exact(b))
            .collect::<Result<Vec<_>>>()?;
        let state = OptimState {
            steps: st.steps,
            buffers,
        };
        Ok(Some((Tensor::from_vec(weights, &[self.len])?, state)))
    }

    fn adopt(
        &mut self,
        flat: &FlatParameters,
        optim: &mut dyn OptimMethod,
        resumed: Option<u64>,
    ) -> Result<()> {
        // All ranks must resume from the same point (a shared directory).
        let x = resumed.map_or(-1.0, |i| i as f64);
        let mut v = [x, x * x];
        self.sum(&mut v)?;
        let n = self.comm.size() as f64;
        if (v[0] * v[0] - n * v[1]).abs() > 0.5 {
            return Err(invalid(
                "DistriOptimizer",
                format!(
                    "rank {} resumed from {}, other ranks from elsewhere: \
                     the checkpoint directory must be shared by all ranks",
                    self.comm.rank(),
                    resumed.map_or("no checkpoint".into(), |i| format!("iteration {i}"))
                ),
            ));
        }
        self.comm.broadcast(&mut flat.weight.as_slice_mut()?, 0)?;
        self.master = flat.weight.as_slice()?[self.range.clone()].to_vec();
        let st = optim.state();
        if st.buffers.iter().any(|b| b.len() == self.len) {
            let sliced = OptimState {
                steps: st.steps,
                buffers: st
                    .buffers
                    .iter()
                    .map(|b| b[self.range.clone()].to_vec())
                    .collect(),
            };
            optim.set_state(sliced);
        }
        Ok(())
    }
}
