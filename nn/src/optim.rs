//! Optimizers over a flat weight slice (a whole compacted model, or one shard
//! of it), learning-rate schedules and gradient clipping.
//!
//! Every optimizer takes `step(weights, grads)` on slices of equal length and
//! keeps its state ([`OptimState`]: a step count and per-weight buffers) so
//! that a checkpoint can save it and [`OptimMethod::set_state`] restore it
//! exactly. Update rules follow PyTorch's `torch.optim` (which for SGD,
//! Adagrad and RMSprop are Torch7's and BigDL's too); weight decay is L2,
//! added to the gradient.

use std::fmt;

use crate::error::{Result, invalid};

/// What an optimizer carries between steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimState {
    /// Steps taken.
    pub steps: u64,
    /// Per-weight buffers (momentum, moments, accumulators), in the method's
    /// order; empty until the first step.
    pub buffers: Vec<Vec<f32>>,
}

/// An optimization method: updates weights from gradients.
pub trait OptimMethod: Send + Sync + fmt::Debug {
    /// The method's name.
    fn name(&self) -> &str;
    /// One step: updates `weights` from `grads` (same length; not modified).
    fn step(&mut self, weights: &mut [f32], grads: &[f32]) -> Result<()>;
    /// The base learning rate.
    fn learning_rate(&self) -> f32;
    /// Sets the base learning rate (schedules call this every step).
    fn set_learning_rate(&mut self, lr: f32);
    /// The state to save.
    fn state(&self) -> &OptimState;
    /// Restores a saved state (checked against the weights at the next step).
    fn set_state(&mut self, state: OptimState);
}

/// Checks lengths and sizes the state's buffers (`n` of them) on first use.
fn prepare(
    name: &str,
    state: &mut OptimState,
    n: usize,
    weights: &[f32],
    grads: &[f32],
) -> Result<()> {
    if weights.len() != grads.len() {
        return Err(invalid(
            name,
            format!("{} weights and {} gradients", weights.len(), grads.len()),
        ));
    }
    if state.buffers.is_empty() {
        state.buffers = vec![vec![0.0; weights.len()]; n];
    }
    if state.buffers.len() != n || state.buffers.iter().any(|b| b.len() != weights.len()) {
        return Err(invalid(
            name,
            format!(
                "state of {} buffers of {:?} elements for {} weights",
                state.buffers.len(),
                state.buffers.first().map(Vec::len),
                weights.len()
            ),
        ));
    }
    Ok(())
}

macro_rules! optim_common {
    () => {
        fn learning_rate(&self) -> f32 {
            self.lr
        }
        fn set_learning_rate(&mut self, lr: f32) {
            self.lr = lr;
        }
        fn state(&self) -> &OptimState {
            &self.state
        }
        fn set_state(&mut self, state: OptimState) {
            self.state = state;
        }
    };
}

/// Stochastic gradient descent (Torch7's `optim.sgd`, BigDL's `SGD`):
/// learning rate `lr / (1 + t lr_decay)` at step `t`, weight decay, momentum
/// with dampening (the first step's buffer is the gradient itself) and
/// optional Nesterov momentum.
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Learning-rate decay per step.
    pub lr_decay: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
    /// Momentum (0 = none).
    pub momentum: f32,
    /// Dampening of the momentum's gradient term.
    pub dampening: f32,
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    pub nesterov: bool,
    state: OptimState,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f32) -> Sgd {
        Sgd {
            lr,
            lr_decay: 0.0,
            weight_decay: 0.0,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            state: OptimState::default(),
        }
    }

    /// Sets the momentum.
    pub fn with_momentum(mut self, momentum: f32) -> Sgd {
        self.momentum = momentum;
        self
    }

    /// Sets the dampening.
    pub fn with_dampening(mut self, dampening: f32) -> Sgd {
        self.dampening = dampening;
        self
    }

    /// Turns Nesterov momentum on or off.
    pub fn with_nesterov(mut self, nesterov: bool) -> Sgd {
        self.nesterov = nesterov;
        self
    }

    /// Sets the L2 weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Sgd {
        self.weight_decay = weight_decay;
        self
    }

    /// Sets the learning-rate decay.
    pub fn with_lr_decay(mut self, lr_decay: f32) -> Sgd {
        self.lr_decay = lr_decay;
        self
    }

    /// The learning rate the next step uses.
    pub fn current_lr(&self) -> f32 {
        self.lr / (1.0 + self.state.steps as f32 * self.lr_decay)
    }
}

impl OptimMethod for Sgd {
    fn name(&self) -> &str {
        "Sgd"
    }

    fn step(&mut self, weights: &mut [f32], grads: &[f32]) -> Result<()> {
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(invalid(
                "Sgd",
                "Nesterov momentum needs momentum > 0 and dampening 0",
            ));
        }
        let lr = self.current_lr();
        let (wd, mom, damp) = (self.weight_decay, self.momentum, self.dampening);
        let first = self.state.buffers.is_empty();
        prepare(
            "Sgd",
            &mut self.state,
            usize::from(mom != 0.0),
            weights,
            grads,
        )?;
        if mom != 0.0 {
            let v = &mut self.state.buffers[0];
            for ((w, &g), v) in weights.iter_mut().zip(grads).zip(v.iter_mut()) {
                let d = g + wd * *w;
                *v = if first {
                    d
                } else {
                    mom * *v + (1.0 - damp) * d
                };
                *w -= lr * if self.nesterov { d + mom * *v } else { *v };
            }
        } else {
            for (w, &g) in weights.iter_mut().zip(grads) {
                *w -= lr * (g + wd * *w);
            }
        }
        self.state.steps += 1;
        Ok(())
    }

    optim_common!();
}

/// Adam (PyTorch's rule): `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `w -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    /// Learning rate (default 1e-3).
    pub lr: f32,
    /// First-moment decay (0.9).
    pub beta1: f32,
    /// Second-moment decay (0.999).
    pub beta2: f32,
    /// Added to the denominator (1e-8).
    pub eps: f32,
    /// L2 weight decay (0).
    pub weight_decay: f32,
    state: OptimState,
}

impl Adam {
    /// With learning rate `lr` and the usual defaults.
    pub fn new(lr: f32) -> Adam {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            state: OptimState::default(),
        }
    }
}

impl OptimMethod for Adam {
    fn name(&self) -> &str {
        "Adam"
    }

    fn step(&mut self, weights: &mut [f32], grads: &[f32]) -> Result<()> {
        prepare("Adam", &mut self.state, 2, weights, grads)?;
        let t = (self.state.steps + 1) as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - (b1 as f64).powi(t);
        let bc2 = (1.0 - (b2 as f64).powi(t)).sqrt();
        let step = (self.lr as f64 / bc1) as f32;
        let [m, v] = &mut self.state.buffers[..] else {
            unreachable!("prepared two buffers")
        };
        for (((w, &g), m), v) in weights.iter_mut().zip(grads).zip(m).zip(v) {
            let g = g + self.weight_decay * *w;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *w -= step * *m / ((v.sqrt() as f64 / bc2) as f32 + self.eps);
        }
        self.state.steps += 1;
        Ok(())
    }

    optim_common!();
}

/// Adamax (PyTorch's rule): `m = b1 m + (1 - b1) g`,
/// `u = max(b2 u, |g| + eps)`, `w -= lr / (1 - b1^t) * m / u`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adamax {
    /// Learning rate (default 2e-3).
    pub lr: f32,
    /// First-moment decay (0.9).
    pub beta1: f32,
    /// Infinity-norm decay (0.999).
    pub beta2: f32,
    /// Added to `|g|` (1e-8).
    pub eps: f32,
    state: OptimState,
}

impl Adamax {
    /// With learning rate `lr` and the usual defaults.
    pub fn new(lr: f32) -> Adamax {
        Adamax {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            state: OptimState::default(),
        }
    }
}

impl OptimMethod for Adamax {
    fn name(&self) -> &str {
        "Adamax"
    }

    fn step(&mut self, weights: &mut [f32], grads: &[f32]) -> Result<()> {
        prepare("Adamax", &mut self.state, 2, weights, grads)?;
        let t = (self.state.steps + 1) as i32;
        let step = (self.lr as f64 / (1.0 - (self.beta1 as f64).powi(t))) as f32;
        let [m, u] = &mut self.state.buffers[..] else {
            unreachable!("prepared two buffers")
        };
        for (((w, &g), m), u) in weights.iter_mut().zip(grads).zip(m).zip(u) {
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *u = (self.beta2 * *u).max(g.abs() + self.eps);
            *w -= step * *m / *u;
        }
        self.state.steps += 1;
        Ok(())
    }

    optim_common!();
}

/// Adagrad (PyTorch's rule): `lr_t = lr / (1 + (t - 1) lr_decay)`,
/// `s += g^2`, `w -= lr_t g / (sqrt(s) + eps)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adagrad {
    /// Learning rate (default 1e-2).
    pub lr: f32,
    /// Learning-rate decay per step (0).
    pub lr_decay: f32,
    /// L2 weight decay (0).
    pub weight_decay: f32,
    /// Added to the denominator (1e-10).
    pub eps: f32,
    state: OptimState,
}

impl Adagrad {
    /// With learning rate `lr` and the usual defaults.
    pub fn new(lr: f32) -> Adagrad {
        Adagrad {
            lr,
            lr_decay: 0.0,
            weight_decay: 0.0,
            eps: 1e-10,
            state: OptimState::default(),
        }
    }
}

impl OptimMethod for Adagrad {
    fn name(&self) -> &str {
        "Adagrad"
    }

    fn step(&mut self, weights: &mut [f32], grads: &[f32]) -> Result<()> {
        prepare("Adagrad", &mut self.state, 1, weights, grads)?;
        let lr = self.lr / (1.0 + self.state.steps as f32 * self.lr_decay);
        for ((w, &g), s) in weights
            .iter_mut()
            .zip(grads)
            .zip(self.state.buffers[0].iter_mut())
        {
            let g = g + self.weight_decay * *w;
            *s += g * g;
            *w -= lr * g / (s.sqrt() + self.eps);
        }
        self.state.steps += 1;
        Ok(())
    }

    optim_common!();
}

/// Adadelta (PyTorch's rule): `v = rho v + (1 - rho) g^2`,
/// `d = sqrt(u + eps) / sqrt(v + eps) g`, `u = rho u + (1 - rho) d^2`,
/// `w -= lr d`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adadelta {
    /// Learning rate (default 1).
    pub lr: f32,
    /// Decay (0.9).
    pub rho: f32,
    /// Added inside the square roots (1e-6).
    pub eps: f32,
    state: OptimState,
}

impl Adadelta {
    /// With learning rate `lr` and the usual defaults.
    pub fn new(lr: f32) -> Adadelta {
        Adadelta {
            lr,
            rho: 0.9,
            eps: 1e-6,
            state: OptimState::default(),
        }
    }
}

impl OptimMethod for Adadelta {
    fn name(&self) -> &str {
        "Adadelta"
    }

    fn step(&mut self, weights: &mut [f32], grads: &[f32]) -> Result<()> {
        prepare("Adadelta", &mut self.state, 2, weights, grads)?;
        let rho = self.rho;
        let [v, u] = &mut self.state.buffers[..] else {
            unreachable!("prepared two buffers")
        };
        for (((w, &g), v), u) in weights.iter_mut().zip(grads).zip(v).zip(u) {
            *v = rho * *v + (1.0 - rho) * g * g;
            let d = (*u + self.eps).sqrt() / (*v + self.eps).sqrt() * g;
            *u = rho * *u + (1.0 - rho) * d * d;
            *w -= self.lr * d;
        }
        self.state.steps += 1;
        Ok(())
    }

    optim_common!();
}

/// RMSprop (PyTorch's and Torch7's rule): `v = alpha v + (1 - alpha) g^2`,
/// `w -= lr g / (sqrt(v) + eps)`.
#[derive(Clone, Debug, PartialEq)]
pub struct RmsProp {
    /// Learning rate (default 1e-2).
    pub lr: f32,
    /// Decay (0.99).
    pub alpha: f32,
    /// Added to the denominator (1e-8).
    pub eps: f32,
    /// L2 weight decay (0).
    pub weight_decay: f32,
    state: OptimState,
}

impl RmsProp {
    /// With learning rate `lr` and the usual defaults.
    pub fn new(lr: f32) -> RmsProp {
        RmsProp {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            state: OptimState::default(),
        }
    }
}

impl OptimMethod for RmsProp {
    fn name(&self) -> &str {
        "RmsProp"
    }

    fn step(&mut self, weights: &mut [f32], grads: &[f32]) -> Result<()> {
        prepare("RmsProp", &mut self.state, 1, weights, grads)?;
        let a = self.alpha;
        for ((w, &g), v) in weights
            .iter_mut()
            .zip(grads)
            .zip(self.state.buffers[0].iter_mut())
        {
            let g = g + self.weight_decay * *w;
            *v = a * *v + (1.0 - a) * g * g;
            *w -= self.lr * g / (v.sqrt() + self.eps);
        }
        self.state.steps += 1;
        Ok(())
    }

    optim_common!();
}

/// Clamps every gradient to `[min, max]` (BigDL's constant clipping).
pub fn clip_by_value(grads: &mut [f32], min: f32, max: f32) {
    grads.iter_mut().for_each(|g| *g = g.clamp(min, max));
}

/// Scales the gradients so that their L2 norm is at most `max_norm`; returns
/// the norm before clipping. (In data-parallel training call it on the
/// summed gradient, before the step.)
pub fn clip_by_l2_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    let norm = grads
        .iter()
        .map(|&g| g as f64 * g as f64)
        .sum::<f64>()
        .sqrt() as f32;
    if norm > max_norm && norm > 0.0 {
        let s = max_norm / norm;
        grads.iter_mut().for_each(|g| *g *= s);
    }
    norm
}

/// A learning-rate schedule: the rate at iteration `t` (0-based) from a base
/// rate, as BigDL's `SGD.LearningRateSchedule`s.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// The base rate.
    Constant,
    /// `base * gamma^(t / step_size)`.
    Step {
        /// Iterations per decay.
        step_size: u64,
        /// Factor per decay.
        gamma: f32,
    },
    /// `base * gamma^(number of milestones <= t)`.
    MultiStep {
        /// Iterations at which to decay (ascending).
        milestones: Vec<u64>,
        /// Factor per milestone.
        gamma: f32,
    },
    /// `base * rate^(t / decay_step)` (continuous).
    Exponential {
        /// Iterations per factor `rate`.
        decay_step: u64,
        /// The factor.
        rate: f32,
    },
    /// `base * (1 - t / max_iteration)^power`, 0 from `max_iteration` on.
    Poly {
        /// The exponent.
        power: f32,
        /// Iterations to reach 0.
        max_iteration: u64,
    },
    /// Linear warm-up from `base * start_factor` to `base` over `steps`
    /// iterations, then `after` (its iteration count starting at 0).
    Warmup {
        /// Warm-up iterations.
        steps: u64,
        /// Starting fraction of the base rate.
        start_factor: f32,
        /// The schedule after the warm-up.
        after: Box<Schedule>,
    },
    /// Multiplies the rate by `factor` when the monitored score has not
    /// improved for more than `patience` epochs (report it with
    /// [`Schedule::observe`]), not below `min_lr`. Build with
    /// [`Schedule::plateau`].
    Plateau {
        /// Decay factor.
        factor: f32,
        /// Epochs without improvement tolerated.
        patience: u32,
        /// Lower bound of the rate.
        min_lr: f32,
        /// Whether larger scores are better (accuracy) or smaller (loss).
        maximize: bool,
        /// State: the best score so far.
        best: Option<f32>,
        /// State: epochs since the best score.
        bad_epochs: u32,
        /// State: the accumulated decay.
        scale: f32,
    },
}

impl Schedule {
    /// A plateau schedule with fresh state.
    pub fn plateau(factor: f32, patience: u32, min_lr: f32, maximize: bool) -> Schedule {
        Schedule::Plateau {
            factor,
            patience,
            min_lr,
            maximize,
            best: None,
            bad_epochs: 0,
            scale: 1.0,
        }
    }

    /// The learning rate at iteration `t` for base rate `base`.
    pub fn rate(&self, base: f32, t: u64) -> f32 {
        match self {
            Schedule::Constant => base,
            Schedule::Step { step_size, gamma } => {
                base * gamma.powi((t / (*step_size).max(1)).min(i32::MAX as u64) as i32)
            }
            Schedule::MultiStep { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| m <= t).count() as i32)
            }
            Schedule::Exponential { decay_step, rate } => {
                base * rate.powf(t as f32 / (*decay_step).max(1) as f32)
            }
            Schedule::Poly {
                power,
                max_iteration,
            } => {
                if t >= *max_iteration {
                    0.0
                } else {
                    base * (1.0 - t as f32 / *max_iteration as f32).powf(*power)
                }
            }
            Schedule::Warmup {
                steps,
                start_factor,
                after,
            } => {
                if t < *steps {
                    base * (start_factor + (1.0 - start_factor) * t as f32 / *steps as f32)
                } else {
                    after.rate(base, t - steps)
                }
            }
            Schedule::Plateau { min_lr, scale, .. } => (base * scale).max(*min_lr),
        }
    }

    /// Reports an epoch's validation score to a plateau schedule (the others
    /// ignore it).
    pub fn observe(&mut self, score: f32) {
        if let Schedule::Plateau {
            factor,
            patience,
            maximize,
            best,
            bad_epochs,
            scale,
            ..
        } = self
        {
            let better = match *best {
                None => true,
                Some(b) if *maximize => score > b,
                Some(b) => score < b,
            };
            if better {
                *best = Some(score);
                *bad_epochs = 0;
            } else {
                *bad_epochs += 1;
                if *bad_epochs > *patience {
                    *scale *= *factor;
                    *bad_epochs = 0;
                }
            }
        }
    }
}
