//! Criterions (losses): `ClassNLLCriterion`, `CrossEntropyCriterion`,
//! `MSECriterion`.

use std::fmt;

use bigdl_tensor::Tensor;

use crate::activity::Activity;
use crate::error::{Result, invalid, shape};
use crate::layers::LogSoftMax;
use crate::module::Module;

/// A loss: `forward(input, target)` returns the loss, `backward(input,
/// target)` its gradient with respect to `input`.
pub trait Criterion: Send + Sync + fmt::Debug {
    /// The criterion's name, used in its errors.
    fn name(&self) -> &str;
    /// The loss.
    fn forward(&mut self, input: &Activity, target: &Activity) -> Result<f32>;
    /// The gradient of the loss with respect to `input`.
    fn backward(&mut self, input: &Activity, target: &Activity) -> Result<Activity>;
}

/// Negative log-likelihood of class indices: `input` holds log-probabilities
/// `[N, C]` (or `[C]`), `target` the class of each sample as `[N]` (or a
/// 1-element tensor), 0-based. With `weights`, sample `i` counts `w[t_i]`
/// times; with `size_average` (the default) the loss is divided by the total
/// weight of the batch (N without weights), as in Torch7.
#[derive(Clone, Debug)]
pub struct ClassNLLCriterion {
    weights: Option<Vec<f32>>,
    size_average: bool,
}

impl Default for ClassNLLCriterion {
    fn default() -> Self {
        ClassNLLCriterion::new()
    }
}

impl ClassNLLCriterion {
    /// Unweighted, averaged over the batch.
    pub fn new() -> ClassNLLCriterion {
        ClassNLLCriterion {
            weights: None,
            size_average: true,
        }
    }

    /// Per-class weights.
    pub fn weights(mut self, w: &[f32]) -> Self {
        self.weights = Some(w.to_vec());
        self
    }

    /// Sum instead of average.
    pub fn size_average(mut self, yes: bool) -> Self {
        self.size_average = yes;
        self
    }

    /// `(log-probabilities [N, C] contiguous, classes, per-sample weights, norm)`.
    #[allow(clippy::type_complexity)]
    fn parse(
        &self,
        input: &Activity,
        target: &Activity,
    ) -> Result<(Tensor<f32>, Vec<usize>, Vec<f32>, f32)> {
        const NAME: &str = "ClassNLLCriterion";
        let x = input.tensor(NAME)?;
        let x = match x.dim() {
            1 => x.contiguous().unsqueeze(0)?,
            2 => x.contiguous(),
            _ => return Err(shape(NAME, "[N, C] or [C]", x.sizes())),
        };
        let (n, c) = (x.sizes()[0], x.sizes()[1]);
        let t = target.tensor(NAME)?;
        if t.numel() != n {
            return Err(invalid(
                NAME,
                format!(
                    "{} targets of shape {:?} for a batch of {n} (input {:?})",
                    t.numel(),
                    t.sizes(),
                    x.sizes()
                ),
            ));
        }
        if let Some(w) = &self.weights
            && w.len() != c
        {
            return Err(invalid(
                NAME,
                format!("{} class weights for {c} classes", w.len()),
            ));
        }
        let mut classes = Vec::with_capacity(n);
        for v in t.to_vec() {
            if !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < c) {
                return Err(invalid(
                    NAME,
                    format!("target {v} is not a class index in 0..{c}"),
                ));
            }
            classes.push(v as usize);
        }
        let w: Vec<f32> = classes
            .iter()
            .map(|&k| self.weights.as_ref().map_or(1.0, |w| w[k]))
            .collect();
        let norm = if self.size_average {
            w.iter().sum::<f32>()
        } else {
            1.0
        };
        Ok((x, classes, w, norm))
    }
}

impl Criterion for ClassNLLCriterion {
    fn name(&self) -> &str {
        "ClassNLLCriterion"
    }

    fn forward(&mut self, input: &Activity, target: &Activity) -> Result<f32> {
        let (x, classes, w, norm) = self.parse(input, target)?;
        let c = x.sizes()[1];
        let xs = x.as_slice()?;
        let total: f64 = classes
            .iter()
            .zip(&w)
            .enumerate()
            .map(|(i, (&k, &w))| -(w as f64) * xs[i * c + k] as f64)
            .sum();
        Ok((total / norm as f64) as f32)
    }

    fn backward(&mut self, input: &Activity, target: &Activity) -> Result<Activity> {
        let (x, classes, w, norm) = self.parse(input, target)?;
        let c = x.sizes()[1];
        let mut g = vec![0.0f32; x.numel()];
        for (i, (&k, &w)) in classes.iter().zip(&w).enumerate() {
            g[i * c + k] = -w / norm;
        }
        Ok(Tensor::from_vec(g, input.tensor(self.name())?.sizes())?.into())
    }
}

/// `LogSoftMax` followed by `ClassNLLCriterion`, on raw scores `[N, C]`.
#[derive(Clone, Debug, Default)]
pub struct CrossEntropyCriterion {
    log_softmax: LogSoftMax,
    nll: ClassNLLCriterion,
}

impl CrossEntropyCriterion {
    /// Unweighted, averaged over the batch.
    pub fn new() -> CrossEntropyCriterion {
        CrossEntropyCriterion::default()
    }

    /// With a configured NLL part (weights, size_average).
    pub fn with_nll(nll: ClassNLLCriterion) -> CrossEntropyCriterion {
        CrossEntropyCriterion {
            log_softmax: LogSoftMax::new(),
            nll,
        }
    }
}

impl Criterion for CrossEntropyCriterion {
    fn name(&self) -> &str {
        "CrossEntropyCriterion"
    }

    fn forward(&mut self, input: &Activity, target: &Activity) -> Result<f32> {
        let lp = self.log_softmax.forward(input)?;
        self.nll.forward(&lp, target)
    }

    fn backward(&mut self, input: &Activity, target: &Activity) -> Result<Activity> {
        let lp = self.log_softmax.forward(input)?;
        let g = self.nll.backward(&lp, target)?;
        self.log_softmax.update_grad_input(input, &g)
    }
}

/// Mean squared error: `sum (x - t)^2`, divided by the number of elements
/// with `size_average` (the default).
#[derive(Clone, Debug)]
pub struct MSECriterion {
    size_average: bool,
}

impl Default for MSECriterion {
    fn default() -> Self {
        MSECriterion::new()
    }
}

impl MSECriterion {
    /// Averaged.
    pub fn new() -> MSECriterion {
        MSECriterion { size_average: true }
    }

    /// Sum instead of average.
    pub fn size_average(mut self, yes: bool) -> Self {
        self.size_average = yes;
        self
    }

    fn pair(&self, input: &Activity, target: &Activity) -> Result<(Vec<f32>, Vec<f32>, f32)> {
        const NAME: &str = "MSECriterion";
        let (x, t) = (input.tensor(NAME)?, target.tensor(NAME)?);
        if x.sizes() != t.sizes() {
            return Err(invalid(
                NAME,
                format!("input {:?} and target {:?} differ", x.sizes(), t.sizes()),
            ));
        }
        let norm = if self.size_average {
            x.numel().max(1) as f32
        } else {
            1.0
        };
        Ok((x.to_vec(), t.to_vec(), norm))
    }
}

impl Criterion for MSECriterion {
    fn name(&self) -> &str {
        "MSECriterion"
    }

    fn forward(&mut self, input: &Activity, target: &Activity) -> Result<f32> {
        let (x, t, norm) = self.pair(input, target)?;
        let s: f64 = x
            .iter()
            .zip(&t)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum();
        Ok((s / norm as f64) as f32)
    }

    fn backward(&mut self, input: &Activity, target: &Activity) -> Result<Activity> {
        let (x, t, norm) = self.pair(input, target)?;
        let g = x
            .iter()
            .zip(&t)
            .map(|(&a, &b)| 2.0 * (a - b) / norm)
            .collect();
        Ok(Tensor::from_vec(g, input.tensor(self.name())?.sizes())?.into())
    }
}
