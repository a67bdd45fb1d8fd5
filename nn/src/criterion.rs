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

/// The input and target of an element-wise criterion as vectors, with the
/// divisor (`numel` when averaging) and the input's shape.
struct Pair {
    x: Vec<f32>,
    t: Vec<f32>,
    norm: f32,
    sizes: Vec<usize>,
}

/// The [`Pair`] of `input` and `target` (equal element counts).
fn pair(name: &str, input: &Activity, target: &Activity, size_average: bool) -> Result<Pair> {
    let (x, t) = (input.tensor(name)?, target.tensor(name)?);
    if x.numel() != t.numel() {
        return Err(invalid(
            name,
            format!("input {:?} and target {:?} differ", x.sizes(), t.sizes()),
        ));
    }
    let norm = if size_average {
        x.numel().max(1) as f32
    } else {
        1.0
    };
    Ok(Pair {
        x: x.to_vec(),
        t: t.to_vec(),
        norm,
        sizes: x.sizes().to_vec(),
    })
}

/// An element-wise criterion: `loss = sum f(x, t) / norm`, gradient
/// `df/dx / norm`.
macro_rules! elementwise_criterion {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty = $default:expr),* },
     |$s:ident, $x:ident, $t:ident| loss: $loss:expr, grad: $grad:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            size_average: bool,
            $($field: $ty),*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { size_average: true, $($field: $default),* }
            }
        }

        impl $name {
            /// Sum instead of average.
            pub fn size_average(mut self, yes: bool) -> Self {
                self.size_average = yes;
                self
            }
        }

        impl Criterion for $name {
            fn name(&self) -> &str {
                stringify!($name)
            }

            fn forward(&mut self, input: &Activity, target: &Activity) -> Result<f32> {
                let p = pair(self.name(), input, target, self.size_average)?;
                let $s = &*self;
                let total: f64 = p
                    .x
                    .iter()
                    .zip(&p.t)
                    .map(|(&$x, &$t)| -> f64 { $loss })
                    .sum();
                Ok((total / p.norm as f64) as f32)
            }

            fn backward(&mut self, input: &Activity, target: &Activity) -> Result<Activity> {
                let p = pair(self.name(), input, target, self.size_average)?;
                let $s = &*self;
                let norm = p.norm;
                let g = p
                    .x
                    .iter()
                    .zip(&p.t)
                    .map(|(&$x, &$t)| -> f32 { ($grad) / norm })
                    .collect();
                Ok(Tensor::from_vec(g, &p.sizes)?.into())
            }
        }
    };
}

elementwise_criterion!(
    /// Mean squared error: `sum (x - t)^2` (averaged by default).
    MSECriterion {},
    |_s, x, t| loss: (x as f64 - t as f64).powi(2),
        grad: 2.0 * (x - t)
);

impl MSECriterion {
    /// Averaged.
    pub fn new() -> MSECriterion {
        MSECriterion::default()
    }
}

elementwise_criterion!(
    /// `sum |x - t|` (averaged by default).
    AbsCriterion {},
    |_s, x, t| loss: (x as f64 - t as f64).abs(),
        grad: if x > t { 1.0 } else if x < t { -1.0 } else { 0.0 }
);

elementwise_criterion!(
    /// Huber loss with threshold 1: `0.5 d^2` for `|d| < 1`, else `|d| - 0.5`.
    SmoothL1Criterion {},
    |_s, x, t| loss: {
        let d = (x - t) as f64;
        if d.abs() < 1.0 { 0.5 * d * d } else { d.abs() - 0.5 }
    },
        grad: {
            let d = x - t;
            if d.abs() < 1.0 { d } else { d.signum() }
        }
);

elementwise_criterion!(
    /// Hinge loss for targets `t` in {-1, 1}: `max(0, margin - x t)`.
    MarginCriterion { margin: f32 = 1.0 },
    |s, x, t| loss: ((s.margin - x * t) as f64).max(0.0),
        grad: if s.margin - x * t > 0.0 { -t } else { 0.0 }
);

impl MarginCriterion {
    /// With `margin` (default 1).
    pub fn new(margin: f32) -> MarginCriterion {
        MarginCriterion {
            margin,
            ..Default::default()
        }
    }
}

impl AbsCriterion {
    /// Averaged.
    pub fn new() -> AbsCriterion {
        AbsCriterion::default()
    }
}

impl SmoothL1Criterion {
    /// Averaged.
    pub fn new() -> SmoothL1Criterion {
        SmoothL1Criterion::default()
    }
}

/// Binary cross-entropy on probabilities `x` in (0, 1) and targets `t` in
/// [0, 1]: `-w (t ln x + (1 - t) ln(1 - x))`, logarithms guarded by 1e-12 as
/// in Torch7; optional per-element weights (the input's shape), averaged by
/// default.
#[derive(Clone, Debug)]
pub struct BCECriterion {
    weights: Option<Vec<f32>>,
    size_average: bool,
}

impl Default for BCECriterion {
    fn default() -> Self {
        BCECriterion::new()
    }
}

impl BCECriterion {
    /// Unweighted, averaged.
    pub fn new() -> BCECriterion {
        BCECriterion {
            weights: None,
            size_average: true,
        }
    }

    /// Weights, one per input element.
    pub fn weights(mut self, w: &[f32]) -> Self {
        self.weights = Some(w.to_vec());
        self
    }

    /// Sum instead of average.
    pub fn size_average(mut self, yes: bool) -> Self {
        self.size_average = yes;
        self
    }

    fn weight(&self, n: usize) -> Result<Vec<f32>> {
        match &self.weights {
            Some(w) if w.len() == n => Ok(w.clone()),
            Some(w) => Err(invalid(
                "BCECriterion",
                format!("{} weights for {n} elements", w.len()),
            )),
            None => Ok(vec![1.0; n]),
        }
    }
}

const BCE_EPS: f64 = 1e-12;

impl Criterion for BCECriterion {
    fn name(&self) -> &str {
        "BCECriterion"
    }

    fn forward(&mut self, input: &Activity, target: &Activity) -> Result<f32> {
        let Pair { x, t, norm, .. } = pair(self.name(), input, target, self.size_average)?;
        let w = self.weight(x.len())?;
        let total: f64 = x
            .iter()
            .zip(&t)
            .zip(&w)
            .map(|((&x, &t), &w)| {
                let (x, t) = (x as f64, t as f64);
                -(w as f64) * (t * (x + BCE_EPS).ln() + (1.0 - t) * (1.0 - x + BCE_EPS).ln())
            })
            .sum();
        Ok((total / norm as f64) as f32)
    }

    fn backward(&mut self, input: &Activity, target: &Activity) -> Result<Activity> {
        let Pair { x, t, norm, sizes } = pair(self.name(), input, target, self.size_average)?;
        let w = self.weight(x.len())?;
        let g = x
            .iter()
            .zip(&t)
            .zip(&w)
            .map(|((&x, &t), &w)| {
                let (x, t) = (x as f64, t as f64);
                (w as f64 * (x - t) / ((1.0 - x + BCE_EPS) * (x + BCE_EPS)) / norm as f64) as f32
            })
            .collect();
        Ok(Tensor::from_vec(g, &sizes)?.into())
    }
}

/// Cosine embedding loss on a table `{x1, x2}` of `[N, D]` (or `[D]`)
/// tensors with targets `y` in {1, -1}: `1 - cos` for `y = 1`,
/// `max(0, cos - margin)` for `y = -1`; averaged over the batch by default.
#[derive(Clone, Debug)]
pub struct CosineEmbeddingCriterion {
    margin: f32,
    size_average: bool,
}

impl CosineEmbeddingCriterion {
    /// With `margin` (default 0), averaged.
    pub fn new(margin: f32) -> CosineEmbeddingCriterion {
        CosineEmbeddingCriterion {
            margin,
            size_average: true,
        }
    }

    /// Sum instead of average.
    pub fn size_average(mut self, yes: bool) -> Self {
        self.size_average = yes;
        self
    }

    /// `(x1 rows, x2 rows, targets, d, shape)`.
    #[allow(clippy::type_complexity)]
    fn parse(
        &self,
        input: &Activity,
        target: &Activity,
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>, usize, Vec<usize>)> {
        const NAME: &str = "CosineEmbeddingCriterion";
        let t = input.table(NAME)?;
        let [a, b] = t else {
            return Err(invalid(
                NAME,
                format!("a table of 2 tensors, got {}", t.len()),
            ));
        };
        let (a, b) = (a.tensor(NAME)?, b.tensor(NAME)?);
        if a.sizes() != b.sizes() || a.dim() == 0 || a.dim() > 2 {
            return Err(invalid(
                NAME,
                format!(
                    "inputs {:?} and {:?} (need equal [N, D] or [D])",
                    a.sizes(),
                    b.sizes()
                ),
            ));
        }
        let d = *a.sizes().last().expect("1-d or 2-d");
        let n = a.numel() / d.max(1);
        let y = target.tensor(NAME)?.to_vec();
        if y.len() != n || y.iter().any(|&v| v != 1.0 && v != -1.0) {
            return Err(invalid(
                NAME,
                format!("{} targets in {{1, -1}} needed for {n} pairs, got {y:?}", n),
            ));
        }
        Ok((a.to_vec(), b.to_vec(), y, d, a.sizes().to_vec()))
    }
}

/// `(a.b, |a|^2 + eps, |b|^2 + eps)` of two rows (Torch7's eps 1e-12).
fn cos_parts(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
    let mut s = (0.0, 1e-12, 1e-12);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        s = (s.0 + x * y, s.1 + x * x, s.2 + y * y);
    }
    s
}

impl Criterion for CosineEmbeddingCriterion {
    fn name(&self) -> &str {
        "CosineEmbeddingCriterion"
    }

    fn forward(&mut self, input: &Activity, target: &Activity) -> Result<f32> {
        let (a, b, y, d, _) = self.parse(input, target)?;
        let mut total = 0.0;
        for ((ra, rb), &y) in a.chunks(d.max(1)).zip(b.chunks(d.max(1))).zip(&y) {
            let (ab, aa, bb) = cos_parts(ra, rb);
            let cos = ab / (aa * bb).sqrt();
            total += if y > 0.0 {
                1.0 - cos
            } else {
                (cos - self.margin as f64).max(0.0)
            };
        }
        let norm = if self.size_average { y.len().max(1) } else { 1 };
        Ok((total / norm as f64) as f32)
    }

    fn backward(&mut self, input: &Activity, target: &Activity) -> Result<Activity> {
        let (a, b, y, d, sizes) = self.parse(input, target)?;
        let norm = if self.size_average { y.len().max(1) } else { 1 } as f64;
        let (mut ga, mut gb) = (vec![0.0f32; a.len()], vec![0.0f32; b.len()]);
        for (i, &y) in y.iter().enumerate() {
            let r = i * d..(i + 1) * d;
            let (ra, rb) = (&a[r.clone()], &b[r.clone()]);
            let (ab, aa, bb) = cos_parts(ra, rb);
            let cos = ab / (aa * bb).sqrt();
            // d loss / d cos.
            let dl = if y > 0.0 {
                -1.0
            } else if cos > self.margin as f64 {
                1.0
            } else {
                0.0
            } / norm;
            let s = (aa * bb).sqrt();
            for k in 0..d {
                let (x1, x2) = (ra[k] as f64, rb[k] as f64);
                ga[r.start + k] = (dl * (x2 / s - cos * x1 / aa)) as f32;
                gb[r.start + k] = (dl * (x1 / s - cos * x2 / bb)) as f32;
            }
        }
        Ok(Activity::Table(vec![
            Tensor::from_vec(ga, &sizes)?.into(),
            Tensor::from_vec(gb, &sizes)?.into(),
        ]))
    }
}

/// Applies a criterion at every time step of `[N, T, ...]` input and target
/// (step `t` = index `t` of dimension 1) and sums the losses (averages over
/// the steps with `size_average`).
#[derive(Debug)]
pub struct TimeDistributedCriterion {
    inner: Box<dyn Criterion>,
    size_average: bool,
}

impl TimeDistributedCriterion {
    /// Wraps `inner`; losses summed over time steps.
    pub fn new(inner: impl Criterion + 'static) -> TimeDistributedCriterion {
        TimeDistributedCriterion {
            inner: Box::new(inner),
            size_average: false,
        }
    }

    /// Average over the time steps instead of summing.
    pub fn size_average(mut self, yes: bool) -> Self {
        self.size_average = yes;
        self
    }

    fn steps(
        &self,
        input: &Activity,
        target: &Activity,
    ) -> Result<(Tensor<f32>, Tensor<f32>, usize)> {
        const NAME: &str = "TimeDistributedCriterion";
        let (x, t) = (input.tensor(NAME)?, target.tensor(NAME)?);
        if x.dim() < 2 || t.dim() < 2 || x.sizes()[..2] != t.sizes()[..2] {
            return Err(invalid(
                NAME,
                format!(
                    "input {:?} and target {:?} need the same [N, T, ...] leading sizes",
                    x.sizes(),
                    t.sizes()
                ),
            ));
        }
        Ok((x.clone(), t.clone(), x.sizes()[1]))
    }
}

impl Criterion for TimeDistributedCriterion {
    fn name(&self) -> &str {
        "TimeDistributedCriterion"
    }

    fn forward(&mut self, input: &Activity, target: &Activity) -> Result<f32> {
        let (x, t, steps) = self.steps(input, target)?;
        let mut total = 0.0f64;
        for s in 0..steps {
            let xs: Activity = x.select(1, s)?.contiguous().into();
            let ts: Activity = t.select(1, s)?.contiguous().into();
            total += self.inner.forward(&xs, &ts)? as f64;
        }
        let norm = if self.size_average { steps.max(1) } else { 1 };
        Ok((total / norm as f64) as f32)
    }

    fn backward(&mut self, input: &Activity, target: &Activity) -> Result<Activity> {
        let (x, t, steps) = self.steps(input, target)?;
        let gx = Tensor::<f32>::zeros(x.sizes())?;
        let scale = if self.size_average {
            1.0 / steps.max(1) as f32
        } else {
            1.0
        };
        for s in 0..steps {
            let xs: Activity = x.select(1, s)?.contiguous().into();
            let ts: Activity = t.select(1, s)?.contiguous().into();
            let g = self.inner.backward(&xs, &ts)?.into_tensor(self.name())?;
            gx.select(1, s)?.copy_from(&g.mul_scalar(scale))?;
        }
        Ok(gx.into())
    }
}

/// A weighted sum of criterions on the same input and target.
#[derive(Debug, Default)]
pub struct MultiCriterion {
    parts: Vec<(Box<dyn Criterion>, f32)>,
}

impl MultiCriterion {
    /// No criterions yet.
    pub fn new() -> MultiCriterion {
        MultiCriterion::default()
    }

    /// Adds `c` with `weight` (builder style).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, c: impl Criterion + 'static, weight: f32) -> Self {
        self.parts.push((Box::new(c), weight));
        self
    }
}

impl Criterion for MultiCriterion {
    fn name(&self) -> &str {
        "MultiCriterion"
    }

    fn forward(&mut self, input: &Activity, target: &Activity) -> Result<f32> {
        let mut total = 0.0;
        for (c, w) in &mut self.parts {
            total += *w * c.forward(input, target)?;
        }
        Ok(total)
    }

    fn backward(&mut self, input: &Activity, target: &Activity) -> Result<Activity> {
        let mut sum: Option<Activity> = None;
        for (c, w) in &mut self.parts {
            let g = scale_activity(&c.backward(input, target)?, *w)?;
            sum = Some(match sum {
                None => g,
                Some(s) => crate::table::add_activities("MultiCriterion", &s, &g)?,
            });
        }
        sum.ok_or_else(|| invalid("MultiCriterion", "no criterions"))
    }
}

fn scale_activity(a: &Activity, w: f32) -> Result<Activity> {
    Ok(match a {
        Activity::Tensor(t) => t.mul_scalar(w).into(),
        Activity::Table(v) => Activity::Table(
            v.iter()
                .map(|x| scale_activity(x, w))
                .collect::<Result<_>>()?,
        ),
    })
}

/// Criterion `i` on entry `i` of table input and target, weighted and summed.
#[derive(Debug, Default)]
pub struct ParallelCriterion {
    parts: Vec<(Box<dyn Criterion>, f32)>,
}

impl ParallelCriterion {
    /// No criterions yet.
    pub fn new() -> ParallelCriterion {
        ParallelCriterion::default()
    }

    /// Adds `c` with `weight` for the next table entry (builder style).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, c: impl Criterion + 'static, weight: f32) -> Self {
        self.parts.push((Box::new(c), weight));
        self
    }

    fn entries<'a>(
        &self,
        input: &'a Activity,
        target: &'a Activity,
    ) -> Result<(&'a [Activity], &'a [Activity])> {
        const NAME: &str = "ParallelCriterion";
        let (x, t) = (input.table(NAME)?, target.table(NAME)?);
        if x.len() != self.parts.len() || t.len() != self.parts.len() {
            return Err(invalid(
                NAME,
                format!(
                    "tables of {} inputs and {} targets for {} criterions",
                    x.len(),
                    t.len(),
                    self.parts.len()
                ),
            ));
        }
        Ok((x, t))
    }
}

impl Criterion for ParallelCriterion {
    fn name(&self) -> &str {
        "ParallelCriterion"
    }

    fn forward(&mut self, input: &Activity, target: &Activity) -> Result<f32> {
        let (x, t) = self.entries(input, target)?;
        let mut total = 0.0;
        for ((c, w), (x, t)) in self.parts.iter_mut().zip(x.iter().zip(t)) {
            total += *w * c.forward(x, t)?;
        }
        Ok(total)
    }

    fn backward(&mut self, input: &Activity, target: &Activity) -> Result<Activity> {
        let (x, t) = self.entries(input, target)?;
        let mut out = Vec::with_capacity(x.len());
        for ((c, w), (x, t)) in self.parts.iter_mut().zip(x.iter().zip(t)) {
            out.push(scale_activity(&c.backward(x, t)?, *w)?);
        }
        Ok(Activity::Table(out))
    }
}
