//! Optimizers over a flat weight slice (a whole compacted model, or one shard
//! of it).

use crate::error::{Result, invalid};

/// Stochastic gradient descent as Torch7's `optim.sgd` (and BigDL's `SGD`):
/// learning rate `lr / (1 + t * lr_decay)` at step `t`, L2 weight decay added
/// to the gradient, momentum with dampening (the first step's buffer is the
/// gradient itself) and optional Nesterov momentum.
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
    state: SgdState,
}

/// What an [`Sgd`] carries between steps; save it with a checkpoint and
/// [`Sgd::set_state`] it to continue exactly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SgdState {
    /// Steps taken.
    pub steps: u64,
    /// The momentum buffer (empty until the first step with momentum).
    pub velocity: Vec<f32>,
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
            state: SgdState::default(),
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

    /// The state to save.
    pub fn state(&self) -> &SgdState {
        &self.state
    }

    /// Restores a saved state.
    pub fn set_state(&mut self, state: SgdState) {
        self.state = state;
    }

    /// The learning rate the next step uses.
    pub fn current_lr(&self) -> f32 {
        self.lr / (1.0 + self.state.steps as f32 * self.lr_decay)
    }

    /// One step: updates `weights` from `grads` (same length; not modified).
    pub fn step(&mut self, weights: &mut [f32], grads: &[f32]) -> Result<()> {
        const NAME: &str = "Sgd";
        if weights.len() != grads.len() {
            return Err(invalid(
                NAME,
                format!("{} weights and {} gradients", weights.len(), grads.len()),
            ));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(invalid(
                NAME,
                "Nesterov momentum needs momentum > 0 and dampening 0",
            ));
        }
        let lr = self.current_lr();
        let (wd, mom, damp) = (self.weight_decay, self.momentum, self.dampening);
        if mom != 0.0 {
            let first = self.state.velocity.is_empty();
            if first {
                self.state.velocity = vec![0.0; weights.len()];
            } else if self.state.velocity.len() != weights.len() {
                return Err(invalid(
                    NAME,
                    format!(
                        "momentum state for {} weights, given {}",
                        self.state.velocity.len(),
                        weights.len()
                    ),
                ));
            }
            for ((w, &g), v) in weights
                .iter_mut()
                .zip(grads)
                .zip(self.state.velocity.iter_mut())
            {
                let d = g + wd * *w;
                *v = if first {
                    d
                } else {
                    mom * *v + (1.0 - damp) * d
                };
                let step = if self.nesterov { d + mom * *v } else { *v };
                *w -= lr * step;
            }
        } else {
            for (w, &g) in weights.iter_mut().zip(grads) {
                *w -= lr * (g + wd * *w);
            }
        }
        self.state.steps += 1;
        Ok(())
    }
}
