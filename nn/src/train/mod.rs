//! Training on one machine: [`LocalOptimizer`] (BigDL's model replica per
//! core), triggers, validation, checkpoints and summaries.

pub mod checkpoint;
mod distri;
mod summary;

pub use checkpoint::Position;
pub use distri::DistriOptimizer;
pub use summary::Summary;

use std::path::PathBuf;
use std::time::Instant;

use bigdl_tensor::Tensor;
use bigdl_tensor::kernels::pool;
use rayon::prelude::*;

use crate::activity::Activity;
use crate::criterion::Criterion;
use crate::data::{DataLoader, MiniBatch};
use crate::error::{Result, invalid};
use crate::module::{FlatParameters, Module, compact, replicate};
use crate::optim::{OptimMethod, OptimState, Schedule};
use bigdl_comm::shard_range;

/// When something happens (BigDL's `Trigger`).
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// When `n` epochs are complete.
    MaxEpoch(u64),
    /// When `n` iterations are complete.
    MaxIteration(u64),
    /// At the end of every epoch.
    EveryEpoch,
    /// Every `n` iterations.
    SeveralIteration(u64),
    /// When the training loss falls below the value.
    MinLoss(f32),
    /// Never.
    Never,
}

impl Trigger {
    /// Whether the trigger fires at `s`.
    pub fn fires(&self, s: &TrainState) -> bool {
        match *self {
            Trigger::MaxEpoch(n) => s.epoch >= n,
            Trigger::MaxIteration(n) => s.iteration >= n,
            Trigger::EveryEpoch => s.epoch_done,
            Trigger::SeveralIteration(n) => n > 0 && s.iteration.is_multiple_of(n),
            Trigger::MinLoss(l) => s.loss < l,
            Trigger::Never => false,
        }
    }
}

/// Where training stands, as triggers see it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: u64,
    /// Iterations completed.
    pub iteration: u64,
    /// The last iteration's loss.
    pub loss: f32,
    /// Whether the last iteration completed an epoch.
    pub epoch_done: bool,
}

/// A validation score (BigDL's `ValidationMethod`s).
#[derive(Debug)]
pub enum ValidationMethod {
    /// Fraction of samples whose top class is the label.
    Top1,
    /// Fraction whose label is among the 5 top classes.
    Top5,
    /// The mean of a criterion's loss over the batches.
    Loss(Box<dyn Criterion>),
    /// Mean absolute error between output and target.
    Mae,
}

impl ValidationMethod {
    /// The method's name in reports and summaries.
    pub fn name(&self) -> &'static str {
        match self {
            ValidationMethod::Top1 => "Top1Accuracy",
            ValidationMethod::Top5 => "Top5Accuracy",
            ValidationMethod::Loss(_) => "Loss",
            ValidationMethod::Mae => "MAE",
        }
    }

    /// `(sum, count)` of the method over one batch of outputs `[B, C]`.
    fn score(&mut self, output: &Tensor<f32>, target: &Tensor<f32>) -> Result<(f64, usize)> {
        let t = target.to_vec();
        let b = t.len();
        match self {
            ValidationMethod::Top1 | ValidationMethod::Top5 => {
                let k = if matches!(self, ValidationMethod::Top1) {
                    1
                } else {
                    5
                };
                let out = output.contiguous();
                let o = out.as_slice()?;
                let c = o.len() / b.max(1);
                let mut hits = 0;
                for (row, &label) in o.chunks(c.max(1)).zip(&t) {
                    let l = label as usize;
                    let v = row.get(l).copied().unwrap_or(f32::NEG_INFINITY);
                    // Rank of the label: classes scoring higher (ties before it).
                    let above = row
                        .iter()
                        .enumerate()
                        .filter(|&(j, &x)| x > v || (x == v && j < l))
                        .count();
                    hits += usize::from(above < k && l < c);
                }
                Ok((hits as f64, b))
            }
            ValidationMethod::Loss(c) => {
                let l = c.forward(&output.clone().into(), &target.clone().into())?;
                Ok((l as f64 * b as f64, b))
            }
            ValidationMethod::Mae => {
                let (o, t) = (output.to_vec(), target.to_vec());
                let s: f64 = o.iter().zip(&t).map(|(a, b)| (a - b).abs() as f64).sum();
                Ok((s, o.len()))
            }
        }
    }
}

/// Scores `model` (in evaluation mode; restored to training mode after) on
/// every batch of `data` with `methods`: the mean of each over the data set.
pub fn evaluate(
    model: &mut dyn Module,
    data: &DataLoader,
    methods: &mut [ValidationMethod],
) -> Result<Vec<(String, f64)>> {
    let mut sums = vec![(0.0f64, 0usize); methods.len()];
    model.evaluate();
    let result = (|| -> Result<()> {
        for batch in data.epoch(0, 0) {
            let batch = batch?;
            let out = model
                .predict(&batch.input.clone().into())?
                .into_tensor("evaluate")?;
            for (m, s) in methods.iter_mut().zip(sums.iter_mut()) {
                let (v, n) = m.score(&out, &batch.target)?;
                s.0 += v;
                s.1 += n;
            }
        }
        Ok(())
    })();
    model.training();
    result?;
    Ok(methods
        .iter()
        .zip(sums)
        .map(|(m, (v, n))| (m.name().to_string(), v / n.max(1) as f64))
        .collect())
}

/// How the cores share the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallelism {
    /// One model replica per thread, each on a slice of the batch, gradients
    /// summed (BigDL's design; best for small layers such as LeNet's).
    DataParallel(usize),
    /// One model; the kernels split each layer over the threads (best for
    /// large layers and small batches).
    IntraOp,
}

/// Progress after each iteration, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Where training stands.
    pub state: TrainState,
    /// Batches of the current epoch done, and in all.
    pub batch: (usize, usize),
    /// Images per second over the last iteration.
    pub images_per_second: f64,
    /// The learning rate used.
    pub learning_rate: f32,
}

/// What [`LocalOptimizer::optimize`] reports.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Where training ended.
    pub state: TrainState,
    /// The last validation scores, by method name.
    pub validation: Vec<(String, f64)>,
    /// Mean training throughput (images per second).
    pub images_per_second: f64,
    /// The checkpoint training resumed from, if any.
    pub resumed_from: Option<PathBuf>,
}

struct Replica {
    model: Box<dyn Module>,
    grad: Tensor<f32>,
    criterion: Box<dyn Criterion>,
}

/// Trains a model on one machine: BigDL's `LocalOptimizer`.
///
/// The model's parameters are compacted into one buffer; with
/// [`Parallelism::DataParallel`] each thread runs a replica (shared
/// weights, own gradients) on a slice of every batch, and the gradients are
/// summed, weighted by slice size, before one optimizer step on the flat
/// weights. Results depend only on the seeds and the number of replicas.
pub struct LocalOptimizer {
    model: Box<dyn Module>,
    flat: FlatParameters,
    replicas: Vec<Replica>,
    optim: Box<dyn OptimMethod>,
    schedule: Schedule,
    base_lr: f32,
    train: DataLoader,
    end: Trigger,
    validation: Option<(DataLoader, Vec<ValidationMethod>, Trigger)>,
    checkpoint: Option<(PathBuf, Trigger)>,
    resume: bool,
    summary: Option<Summary>,
    parallelism: Parallelism,
    clip: Option<Clip>,
}

/// Gradient clipping applied to the summed gradient before every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clip {
    /// Every gradient clamped to `[min, max]`.
    Value(f32, f32),
    /// The gradient scaled down to an L2 norm of at most this.
    L2Norm(f32),
}

/// How one process's gradient becomes the step: alone ([`Alone`]) or with
/// peers ([`DistriOptimizer`]).
trait Reducer {
    /// Turns this process's share of the batch-mean gradient (in
    /// `flat.grad`) and loss into the step: clipping, the optimizer, the new
    /// weights in `flat.weight`. Returns the batch's loss.
    fn update(
        &mut self,
        flat: &FlatParameters,
        optim: &mut dyn OptimMethod,
        clip: Option<Clip>,
        loss: f32,
    ) -> Result<f32>;
    /// Sums `v` over the processes.
    fn sum(&mut self, v: &mut [f64]) -> Result<()>;
    /// Whether this process writes checkpoints and summaries.
    fn leader(&self) -> bool;
    /// The exact full weights and optimizer state for a checkpoint (every
    /// process calls it); `None` when the local ones are complete.
    fn gather(
        &mut self,
        flat: &FlatParameters,
        optim: &dyn OptimMethod,
    ) -> Result<Option<(Tensor<f32>, OptimState)>>;
    /// Takes the full weights and optimizer state (fresh, or loaded from the
    /// checkpoint of `resumed` iterations) as this process's start.
    fn adopt(
        &mut self,
        flat: &FlatParameters,
        optim: &mut dyn OptimMethod,
        resumed: Option<u64>,
    ) -> Result<()>;
}

/// Applies `clip` to a whole gradient.
fn clip_local(clip: Option<Clip>, g: &mut [f32]) {
    match clip {
        Some(Clip::Value(lo, hi)) => crate::optim::clip_by_value(g, lo, hi),
        Some(Clip::L2Norm(n)) => {
            crate::optim::clip_by_l2_norm(g, n);
        }
        None => {}
    }
}

/// One process, the whole gradient.
struct Alone;

impl Reducer for Alone {
    fn update(
        &mut self,
        flat: &FlatParameters,
        optim: &mut dyn OptimMethod,
        clip: Option<Clip>,
        loss: f32,
    ) -> Result<f32> {
        clip_local(clip, &mut flat.grad.as_slice_mut()?);
        optim.step(&mut flat.weight.as_slice_mut()?, &flat.grad.as_slice()?)?;
        Ok(loss)
    }

    fn sum(&mut self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn leader(&self) -> bool {
        true
    }

    fn gather(
        &mut self,
        _: &FlatParameters,
        _: &dyn OptimMethod,
    ) -> Result<Option<(Tensor<f32>, OptimState)>> {
        Ok(None)
    }

    fn adopt(&mut self, _: &FlatParameters, _: &mut dyn OptimMethod, _: Option<u64>) -> Result<()> {
        Ok(())
    }
}

impl LocalOptimizer {
    /// Trains `model` with `criterion` and `optim` on `train` until `end`
    /// (default: one epoch), data-parallel over the pool's threads. The
    /// criterion is cloned per replica by `make_criterion`.
    pub fn new(
        mut model: Box<dyn Module>,
        make_criterion: &dyn Fn() -> Box<dyn Criterion>,
        optim: Box<dyn OptimMethod>,
        train: DataLoader,
    ) -> Result<LocalOptimizer> {
        let flat = compact(model.as_mut())?;
        let base_lr = optim.learning_rate();
        let threads = pool::num_threads().max(1);
        let mut me = LocalOptimizer {
            model,
            flat,
            replicas: Vec::new(),
            optim,
            schedule: Schedule::Constant,
            base_lr,
            train,
            end: Trigger::MaxEpoch(1),
            validation: None,
            checkpoint: None,
            resume: false,
            summary: None,
            parallelism: Parallelism::DataParallel(threads),
            clip: None,
        };
        me.set_parallelism(Parallelism::DataParallel(threads), make_criterion)?;
        Ok(me)
    }

    /// Chooses how the cores share the work (rebuilds the replicas).
    pub fn set_parallelism(
        &mut self,
        p: Parallelism,
        make_criterion: &dyn Fn() -> Box<dyn Criterion>,
    ) -> Result<()> {
        let n = match p {
            Parallelism::DataParallel(n) => n.max(1),
            Parallelism::IntraOp => 1,
        };
        self.replicas.clear();
        for _ in 0..n {
            let (model, grad) = replicate(self.model.as_ref())?;
            self.replicas.push(Replica {
                model,
                grad,
                criterion: make_criterion(),
            });
        }
        self.parallelism = p;
        Ok(())
    }

    /// Stops when `t` fires.
    pub fn end_when(mut self, t: Trigger) -> Self {
        self.end = t;
        self
    }

    /// Clips the gradient before every step.
    pub fn clip(mut self, c: Clip) -> Self {
        self.clip = Some(c);
        self
    }

    /// Sets a learning-rate schedule over the optimizer's base rate.
    pub fn schedule(mut self, s: Schedule) -> Self {
        self.schedule = s;
        self
    }

    /// Validates on `data` with `methods` whenever `when` fires (and at the
    /// end).
    pub fn validate(
        mut self,
        data: DataLoader,
        methods: Vec<ValidationMethod>,
        when: Trigger,
    ) -> Self {
        self.validation = Some((data, methods, when));
        self
    }

    /// Writes checkpoints into `dir` whenever `when` fires (and at the end);
    /// with `resume`, first continues from the newest valid one there.
    pub fn checkpoint(mut self, dir: PathBuf, when: Trigger, resume: bool) -> Self {
        self.checkpoint = Some((dir, when));
        self.resume = resume;
        self
    }

    /// Writes summaries (CSV and TensorBoard) into `dir`.
    pub fn summary(mut self, dir: &std::path::Path) -> Result<Self> {
        self.summary = Some(Summary::create(dir)?);
        Ok(self)
    }

    /// The model (its weights are the trained ones).
    pub fn model(&mut self) -> &mut dyn Module {
        self.model.as_mut()
    }

    /// The flat weights and gradients.
    pub fn parameters(&self) -> &FlatParameters {
        &self.flat
    }

    /// One iteration on this process's `batch` of a global batch of
    /// `global` samples: forward and backward on every replica's slice,
    /// gradients summed weighted by slice size, then `red` makes the step.
    /// Returns the global batch's mean loss.
    fn step(
        &mut self,
        batch: &MiniBatch,
        global: usize,
        lr: f32,
        red: &mut dyn Reducer,
    ) -> Result<f32> {
        let b = batch.len();
        if global == 0 {
            return Err(invalid("LocalOptimizer", "an empty batch"));
        }
        let parts = self.replicas.len().min(b);
        let slices: Vec<(usize, usize)> = (0..parts)
            .map(|i| shard_range(b, parts, i))
            .map(|r| (r.start, r.len()))
            .collect();
        let run = |(rep, &(start, n)): (&mut Replica, &(usize, usize))| -> Result<f32> {
            let x: Activity = batch.input.narrow(0, start, n)?.into();
            let t: Activity = batch.target.narrow(0, start, n)?.into();
            rep.model.zero_grad_parameters();
            let y = rep.model.forward(&x)?;
            let loss = rep.criterion.forward(&y, &t)?;
            let gy = rep.criterion.backward(&y, &t)?;
            rep.model.backward_parameters(&x, &gy)?;
            Ok(loss)
        };
        let losses: Vec<f32> = if slices.len() > 1 {
            let reps = &mut self.replicas[..slices.len()];
            pool::install(|| {
                reps.par_iter_mut()
                    .zip(slices.par_iter())
                    .map(run)
                    .collect::<Result<Vec<f32>>>()
            })?
        } else if let Some(s) = slices.first() {
            vec![run((&mut self.replicas[0], s))?]
        } else {
            Vec::new()
        };
        // This process's share of the mean gradient: replica means
        // weighted by slice size over the global batch.
        {
            let mut g = self.flat.grad.as_slice_mut()?;
            g.fill(0.0);
            for (rep, &(_, n)) in self.replicas.iter().zip(&slices) {
                let w = n as f32 / global as f32;
                let rg = rep.grad.as_slice()?;
                g.iter_mut().zip(rg.iter()).for_each(|(a, &v)| *a += w * v);
            }
        }
        let loss = losses
            .iter()
            .zip(&slices)
            .map(|(&l, &(_, n))| l * n as f32 / global as f32)
            .sum();
        self.optim.set_learning_rate(lr);
        red.update(&self.flat, self.optim.as_mut(), self.clip, loss)
    }

    /// Scores the validation set with every method (evaluation mode; the
    /// batches split over the replicas as in training).
    pub fn evaluate(&mut self) -> Result<Vec<(String, f64)>> {
        self.evaluate_with(&mut Alone)
    }

    /// [`LocalOptimizer::evaluate`] on this process's part of the
    /// validation set, the sums combined by `red`.
    fn evaluate_with(&mut self, red: &mut dyn Reducer) -> Result<Vec<(String, f64)>> {
        let Some((data, methods, _)) = &mut self.validation else {
            return Ok(Vec::new());
        };
        let mut sums = vec![(0.0f64, 0usize); methods.len()];
        for r in &mut self.replicas {
            r.model.evaluate();
        }
        let replicas = &mut self.replicas;
        let result = (|| -> Result<()> {
            for batch in data.epoch(0, 0) {
                let batch = batch?;
                let b = batch.len();
                if b == 0 {
                    continue;
                }
                let parts = replicas.len().min(b);
                let outs: Vec<Tensor<f32>> = pool::install(|| {
                    replicas[..parts]
                        .par_iter_mut()
                        .enumerate()
                        .map(|(i, r)| {
                            let s = shard_range(b, parts, i);
                            let x: Activity = batch.input.narrow(0, s.start, s.len())?.into();
                            r.model.predict(&x)?.into_tensor("LocalOptimizer")
                        })
                        .collect::<Result<Vec<_>>>()
                })?;
                let refs: Vec<&Tensor<f32>> = outs.iter().filter(|t| t.numel() > 0).collect();
                let out = Tensor::cat(&refs, 0)?;
                for (m, s) in methods.iter_mut().zip(sums.iter_mut()) {
                    let (v, n) = m.score(&out, &batch.target)?;
                    s.0 += v;
                    s.1 += n;
                }
            }
            Ok(())
        })();
        for r in &mut self.replicas {
            r.model.training();
        }
        result?;
        let mut flat: Vec<f64> = sums.iter().flat_map(|&(v, n)| [v, n as f64]).collect();
        red.sum(&mut flat)?;
        let sums: Vec<(f64, usize)> = flat.chunks(2).map(|c| (c[0], c[1] as usize)).collect();
        Ok(methods
            .iter()
            .zip(sums)
            .map(|(m, (v, n))| (m.name().to_string(), v / n.max(1) as f64))
            .collect())
    }

    /// Trains until the end trigger fires, calling `progress` after every
    /// iteration and `log` with messages (resume, checkpoints, validation).
    pub fn optimize(
        &mut self,
        progress: &mut dyn FnMut(&Progress),
        log: &mut dyn FnMut(String),
    ) -> Result<Report> {
        self.run(&mut Alone, progress, log)
    }

    /// The training loop, alone or with peers (`red`).
    fn run(
        &mut self,
        red: &mut dyn Reducer,
        progress: &mut dyn FnMut(&Progress),
        log: &mut dyn FnMut(String),
    ) -> Result<Report> {
        let mut report = Report::default();
        let mut state = TrainState::default();
        let mut skip = 0usize;
        if let (true, Some((dir, _))) = (self.resume, &self.checkpoint) {
            let dir = dir.clone();
            let mut models: Vec<&mut dyn Module> = self
                .replicas
                .iter_mut()
                .map(|r| r.model.as_mut() as &mut dyn Module)
                .collect();
            if let Some((path, pos)) = checkpoint::resume(
                &dir,
                &self.flat.weight,
                self.optim.as_mut(),
                &mut models,
                &mut *log,
            )? {
                log(format!(
                    "resumed from {} (epoch {}, iteration {})",
                    path.display(),
                    pos.epoch,
                    pos.iteration
                ));
                state.epoch = pos.epoch;
                state.iteration = pos.iteration;
                skip = pos.batch as usize;
                report.resumed_from = Some(path);
            }
        }
        let resumed = report.resumed_from.as_ref().map(|_| state.iteration);
        red.adopt(&self.flat, self.optim.as_mut(), resumed)?;
        let per_epoch = self.train.batches_per_epoch();
        let (mut images, started) = (0usize, Instant::now());
        'outer: while !self.end.fires(&state) {
            let mut b = skip;
            for batch in self.train.epoch(state.epoch, skip) {
                let batch = batch?;
                let t0 = Instant::now();
                let lr = self.schedule.rate(self.base_lr, state.iteration);
                let global = self.train.global_batch_len(b);
                let loss = self.step(&batch, global, lr, red)?;
                let ips = global as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                images += global;
                b += 1;
                state.iteration += 1;
                state.loss = loss;
                state.epoch_done = b == per_epoch;
                if state.epoch_done {
                    state.epoch += 1;
                }
                if !loss.is_finite() {
                    return Err(invalid(
                        "LocalOptimizer",
                        format!("the loss became {loss} at iteration {}", state.iteration),
                    ));
                }
                progress(&Progress {
                    state,
                    batch: (b, per_epoch),
                    images_per_second: ips,
                    learning_rate: lr,
                });
                if let Some(s) = &mut self.summary {
                    s.train(state.iteration, state.epoch, loss, lr, ips)?;
                }
                let done = self.end.fires(&state);
                self.after_iteration(&state, b, done, &mut report, red, log)?;
                if done {
                    break 'outer;
                }
            }
            skip = 0;
        }
        report.state = state;
        self.sync_model_state();
        report.images_per_second = images as f64 / started.elapsed().as_secs_f64().max(1e-9);
        if let Some(s) = &mut self.summary {
            s.flush()?;
        }
        Ok(report)
    }

    /// Validation and checkpoints after an iteration (`done`: the last).
    fn after_iteration(
        &mut self,
        state: &TrainState,
        batch: usize,
        done: bool,
        report: &mut Report,
        red: &mut dyn Reducer,
        log: &mut dyn FnMut(String),
    ) -> Result<()> {
        let validate = match &self.validation {
            Some((_, _, when)) => done || when.fires(state),
            None => false,
        };
        if validate {
            let scores = self.evaluate_with(red)?;
            for (name, v) in &scores {
                log(format!(
                    "epoch {} iteration {}: {name} {v:.4}",
                    state.epoch, state.iteration
                ));
                if let Some(s) = &mut self.summary {
                    s.validation(state.iteration, state.epoch, name, *v as f32)?;
                }
            }
            // A plateau schedule follows the first method's score.
            if let Some((_, v)) = scores.first() {
                self.schedule.observe(*v as f32);
            }
            report.validation = scores;
        }
        if let Some((dir, when)) = &self.checkpoint
            && (done || when.fires(state))
        {
            let dir = dir.clone();
            let full = red.gather(&self.flat, self.optim.as_ref())?;
            if !red.leader() {
                return Ok(());
            }
            let (weights, optim) = match &full {
                Some((w, st)) => (w, st),
                None => (&self.flat.weight, self.optim.state()),
            };
            let per_epoch = self.train.batches_per_epoch();
            let pos = Position {
                epoch: state.epoch,
                iteration: state.iteration,
                batch: if batch == per_epoch { 0 } else { batch as u64 },
            };
            let mut models: Vec<&mut dyn Module> = self
                .replicas
                .iter_mut()
                .map(|r| r.model.as_mut() as &mut dyn Module)
                .collect();
            let path = checkpoint::save(&dir, pos, weights, optim, &mut models)?;
            log(format!("checkpoint {}", path.display()));
        }
        Ok(())
    }

    /// Copies replica 0's non-parameter state (running statistics, random
    /// stream positions) into the model, so that the trained model evaluates
    /// as the replicas did.
    fn sync_model_state(&mut self) {
        let mut from = Vec::new();
        self.replicas[0].model.visit_state(&mut |s| {
            from.push(match s {
                crate::StateMut::F32(v) => Err(v.clone()),
                crate::StateMut::U64(v) => Ok(*v),
            })
        });
        let mut it = from.into_iter();
        self.model.visit_state(&mut |s| match (s, it.next()) {
            (crate::StateMut::F32(v), Some(Err(x))) => *v = x,
            (crate::StateMut::U64(v), Some(Ok(x))) => *v = x,
            _ => {}
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_and_mae() {
        let out = Tensor::from_vec(
            vec![
                0.1, 0.7, 0.2, 0.0, 0.0, 0.0, // label 1: top-1
                0.5, 0.1, 0.4, 0.3, 0.2, 0.6, // label 2: rank 3
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, // label 5: ties rank after 0..4
            ],
            &[3, 6],
        )
        .unwrap();
        let t = Tensor::from_vec(vec![1.0, 2.0, 5.0], &[3]).unwrap();
        assert_eq!(ValidationMethod::Top1.score(&out, &t).unwrap(), (1.0, 3));
        assert_eq!(ValidationMethod::Top5.score(&out, &t).unwrap(), (2.0, 3));
        let y = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap();
        let z = Tensor::from_vec(vec![1.5, 0.0], &[2]).unwrap();
        assert_eq!(ValidationMethod::Mae.score(&y, &z).unwrap(), (2.5, 2));
    }

    #[test]
    fn triggers() {
        let s = TrainState {
            epoch: 3,
            iteration: 12,
            loss: 0.5,
            epoch_done: true,
        };
        assert!(Trigger::MaxEpoch(3).fires(&s) && !Trigger::MaxEpoch(4).fires(&s));
        assert!(Trigger::MaxIteration(12).fires(&s));
        assert!(Trigger::EveryEpoch.fires(&s));
        assert!(Trigger::SeveralIteration(4).fires(&s) && !Trigger::SeveralIteration(5).fires(&s));
        assert!(Trigger::MinLoss(0.6).fires(&s) && !Trigger::MinLoss(0.5).fires(&s));
        assert!(!Trigger::Never.fires(&s));
    }
}
