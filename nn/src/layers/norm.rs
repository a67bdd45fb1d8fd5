//! Batch normalisation (spatial and not), local response normalisation and
//! dropout.

use bigdl_tensor::Tensor;
use bigdl_tensor::kernels::norm::{BatchNorm, BatchNormSaved, Lrn, dropout_forward};

use crate::activity::Activity;
use crate::error::{Result, invalid, shape};
use crate::io::Spec;
use crate::module::{Module, StateMut, init_generator, same_shape};

/// Batch normalisation over the channels of `[N, C]` input
/// (`BatchNormalization`) or `[N, C, H, W]` input (`SpatialBatchNormalization`,
/// also `[C, H, W]`). Training mode normalises with the batch statistics and
/// updates the running ones (`momentum` 0.1, unbiased running variance, as
/// Torch7 and BigDL); inference mode uses the running statistics. The affine
/// weight (gamma, initialised to 1) and bias (beta, 0) are optional.
#[derive(Clone, Debug)]
pub struct BatchNormalization {
    name: String,
    channels: usize,
    spatial_input: bool,
    /// Takes `[N, C]` and `[N, C, H, W]` alike (ONNX's BatchNormalization).
    any_layout: bool,
    eps: f32,
    momentum: f32,
    affine: Option<[Tensor<f32>; 4]>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    saved: Option<BatchNormSaved>,
    training: bool,
}

impl BatchNormalization {
    fn build(name: String, channels: usize, spatial_input: bool) -> Result<BatchNormalization> {
        Ok(BatchNormalization {
            name,
            channels,
            spatial_input,
            any_layout: false,
            eps: 1e-5,
            momentum: 0.1,
            affine: Some([
                Tensor::ones(&[channels])?,
                Tensor::zeros(&[channels])?,
                Tensor::zeros(&[channels])?,
                Tensor::zeros(&[channels])?,
            ]),
            running_mean: vec![0.0; channels],
            running_var: vec![1.0; channels],
            saved: None,
            training: true,
        })
    }

    /// Over the features of `[N, C]` input.
    pub fn new(channels: usize) -> Result<BatchNormalization> {
        Self::build(format!("BatchNormalization({channels})"), channels, false)
    }

    /// Over the channels of `[N, C, H, W]` input.
    pub fn spatial(channels: usize) -> Result<BatchNormalization> {
        Self::build(
            format!("SpatialBatchNormalization({channels})"),
            channels,
            true,
        )
    }

    /// Over the channels (dimension 1) of `[N, C]` or `[N, C, H, W]` input
    /// alike (ONNX's `BatchNormalization`).
    pub fn any_layout(channels: usize) -> Result<BatchNormalization> {
        let mut bn = Self::build(format!("BatchNormalization({channels})"), channels, true)?;
        bn.any_layout = true;
        Ok(bn)
    }

    /// Sets epsilon (added to the variance; default 1e-5).
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the running statistics' momentum (default 0.1).
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Without the learnable gamma and beta.
    pub fn without_affine(mut self) -> Self {
        self.affine = None;
        self
    }

    /// The running mean and variance.
    pub fn running_stats(&self) -> (&[f32], &[f32]) {
        (&self.running_mean, &self.running_var)
    }

    /// The input as a contiguous tensor, and the kernel's geometry.
    fn geometry(&self, input: &Activity) -> Result<(Tensor<f32>, BatchNorm)> {
        let x = input.tensor(&self.name)?;
        let s = x.sizes();
        let c = self.channels;
        let (batch, spatial) = match (self.spatial_input, s) {
            (false, [n, cc]) if *cc == c => (*n, 1),
            (_, [n, cc]) if *cc == c && self.any_layout => (*n, 1),
            (true, [n, cc, h, w]) if *cc == c => (*n, h * w),
            (true, [cc, h, w]) if *cc == c && !self.any_layout => (1, h * w),
            _ => {
                let want = if self.any_layout {
                    format!("[N, {c}] or [N, {c}, H, W]")
                } else if self.spatial_input {
                    format!("[N, {c}, H, W] or [{c}, H, W]")
                } else {
                    format!("[N, {c}]")
                };
                return Err(shape(&self.name, want, s));
            }
        };
        let bn = BatchNorm {
            batch,
            channels: c,
            spatial,
            eps: self.eps,
            momentum: self.momentum,
        };
        Ok((x.contiguous(), bn))
    }

    /// Copies of gamma and beta (both `None` without the affine part).
    fn gamma_beta(&self) -> [Option<Vec<f32>>; 2] {
        match &self.affine {
            Some([g, b, _, _]) => [Some(g.to_vec()), Some(b.to_vec())],
            None => [None, None],
        }
    }

    fn grads(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        want_input: bool,
        scale: Option<f32>,
    ) -> Result<Option<Activity>> {
        let (x, bn) = self.geometry(input)?;
        let gy = grad_output.tensor(&self.name)?;
        same_shape(&self.name, gy, x.sizes())?;
        let gy = gy.contiguous();
        let [gamma, _] = self.gamma_beta();
        let (xs, gys) = (x.as_slice()?, gy.as_slice()?);
        let mut gx = vec![0.0f32; if want_input { x.numel() } else { 0 }];
        if !self.training {
            // Inference: a fixed affine map per channel.
            if want_input {
                let runs = gx
                    .chunks_mut(bn.spatial.max(1))
                    .zip(gys.chunks(bn.spatial.max(1)));
                for (k, (g, d)) in runs.enumerate() {
                    let c = k % bn.channels;
                    let gm = gamma.as_ref().map_or(1.0, |g| g[c]);
                    let f = gm / (self.running_var[c] + self.eps).sqrt();
                    g.iter_mut().zip(d).for_each(|(g, &d)| *g = d * f);
                }
            }
            if let (Some(s), Some([_, _, gg, gb])) = (scale, &self.affine) {
                let (rm, rv, eps) = (&self.running_mean, &self.running_var, self.eps);
                let (dg, db) =
                    channel_grads(&bn, &xs, &gys, |c| (rm[c], 1.0 / (rv[c] + eps).sqrt()));
                add_scaled(gg, &dg, s)?;
                add_scaled(gb, &db, s)?;
            }
        } else {
            let saved = self
                .saved
                .as_ref()
                .ok_or_else(|| invalid(&self.name, "backward before a training-mode forward"))?;
            if want_input && scale == Some(1.0) {
                // Fused: one kernel pass for all three gradients.
                match &self.affine {
                    Some([_, _, gg, gb]) => {
                        Tensor::with_disjoint_mut(&[gg, gb], |g| {
                            let (a, b) = g.split_at_mut(1);
                            bn.backward(
                                &xs,
                                &gys,
                                gamma.as_deref(),
                                saved,
                                &mut gx,
                                Some(&mut *a[0]),
                                Some(&mut *b[0]),
                            )
                        })??;
                    }
                    None => bn.backward(&xs, &gys, None, saved, &mut gx, None, None)?,
                }
            } else {
                if want_input {
                    bn.backward(&xs, &gys, gamma.as_deref(), saved, &mut gx, None, None)?;
                }
                if let (Some(s), Some([_, _, gg, gb])) = (scale, &self.affine) {
                    let (dg, db) =
                        channel_grads(&bn, &xs, &gys, |c| (saved.mean[c], saved.invstd[c]));
                    add_scaled(gg, &dg, s)?;
                    add_scaled(gb, &db, s)?;
                }
            }
        }
        Ok(if want_input {
            Some(Tensor::from_vec(gx, x.sizes())?.into())
        } else {
            None
        })
    }
}

/// Per channel, `sum(gy * (x - mean) * invstd)` and `sum(gy)` (the gamma and
/// beta gradients), with `(mean, invstd)` of channel `c` from `stats(c)`;
/// each run of `spatial` values summed in f32, the runs in f64.
fn channel_grads(
    bn: &BatchNorm,
    xs: &[f32],
    gys: &[f32],
    stats: impl Fn(usize) -> (f32, f32),
) -> (Vec<f64>, Vec<f64>) {
    let (mut dg, mut db) = (vec![0.0f64; bn.channels], vec![0.0f64; bn.channels]);
    let s = bn.spatial.max(1);
    for (k, (x, d)) in xs.chunks(s).zip(gys.chunks(s)).enumerate() {
        let c = k % bn.channels;
        let (mean, invstd) = stats(c);
        let (mut a, mut b) = (0.0f32, 0.0f32);
        for (&x, &d) in x.iter().zip(d) {
            a += d * (x - mean);
            b += d;
        }
        dg[c] += (a * invstd) as f64;
        db[c] += b as f64;
    }
    (dg, db)
}

fn add_scaled(dst: &Tensor<f32>, src: &[f64], scale: f32) -> Result<()> {
    let mut d = dst.as_slice_mut()?;
    d.iter_mut()
        .zip(src)
        .for_each(|(d, &s)| *d += scale * s as f32);
    Ok(())
}

impl Module for BatchNormalization {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let (x, bn) = self.geometry(input)?;
        let [gamma, beta] = self.gamma_beta();
        let mut y = vec![0.0f32; x.numel()];
        let xs = x.as_slice()?;
        if self.training {
            self.saved = Some(bn.forward_train(
                &xs,
                gamma.as_deref(),
                beta.as_deref(),
                &mut y,
                &mut self.running_mean,
                &mut self.running_var,
            )?);
        } else {
            bn.forward_infer(
                &xs,
                gamma.as_deref(),
                beta.as_deref(),
                &self.running_mean,
                &self.running_var,
                &mut y,
            )?;
        }
        Ok(Tensor::from_vec(y, x.sizes())?.into())
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        Ok(self
            .grads(input, grad_output, true, None)?
            .expect("input gradient requested"))
    }

    fn acc_grad_parameters(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        self.grads(input, grad_output, false, Some(scale))?;
        Ok(())
    }

    fn backward(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        Ok(self
            .grads(input, grad_output, true, Some(1.0))?
            .expect("input gradient requested"))
    }

    fn visit_parameters(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
        if let Some([g, b, gg, gb]) = &mut self.affine {
            f(g, gg);
            f(b, gb);
        }
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn is_training(&self) -> bool {
        self.training
    }

    fn visit_state(&mut self, f: &mut dyn FnMut(StateMut<'_>)) {
        f(StateMut::F32(&mut self.running_mean));
        f(StateMut::F32(&mut self.running_var));
    }

    fn spec(&self) -> Option<Spec> {
        Some(
            Spec::new("BatchNormalization")
                .int("channels", self.channels)
                .flag("spatial", self.spatial_input)
                .flag("any_layout", self.any_layout)
                .float("eps", self.eps)
                .float("momentum", self.momentum)
                .flag("affine", self.affine.is_some()),
        )
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

/// Local response normalisation across channels (AlexNet, Inception):
/// `y = x / (k + alpha / size * sum over the window of x^2)^beta`.
#[derive(Clone, Debug)]
pub struct SpatialCrossMapLRN {
    name: String,
    size: usize,
    alpha: f32,
    beta: f32,
    k: f32,
    scale: Vec<f32>,
    output: Option<Tensor<f32>>,
}

impl SpatialCrossMapLRN {
    /// A window of `size` channels (Torch7 defaults: 5, 1e-4, 0.75, 1).
    pub fn new(size: usize, alpha: f32, beta: f32, k: f32) -> SpatialCrossMapLRN {
        SpatialCrossMapLRN {
            name: format!("SpatialCrossMapLRN({size}, {alpha}, {beta}, {k})"),
            size,
            alpha,
            beta,
            k,
            scale: Vec::new(),
            output: None,
        }
    }

    fn geometry(&self, input: &Activity) -> Result<(Tensor<f32>, Lrn)> {
        let x = input.tensor(&self.name)?;
        let (batch, channels, spatial) = match x.sizes() {
            [n, c, h, w] => (*n, *c, h * w),
            [c, h, w] => (1, *c, h * w),
            s => return Err(shape(&self.name, "[N, C, H, W] or [C, H, W]", s)),
        };
        let lrn = Lrn {
            batch,
            channels,
            spatial,
            size: self.size,
            alpha: self.alpha,
            beta: self.beta,
            k: self.k,
        };
        Ok((x.contiguous(), lrn))
    }
}

impl Module for SpatialCrossMapLRN {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let (x, lrn) = self.geometry(input)?;
        let mut y = vec![0.0f32; x.numel()];
        self.scale.resize(x.numel(), 0.0);
        lrn.forward(&x.as_slice()?, &mut y, &mut self.scale)?;
        let y = Tensor::from_vec(y, x.sizes())?;
        self.output = Some(y.clone());
        Ok(y.into())
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let (x, lrn) = self.geometry(input)?;
        let gy = grad_output.tensor(&self.name)?;
        same_shape(&self.name, gy, x.sizes())?;
        let y = match &self.output {
            Some(y) if y.sizes() == x.sizes() => y.clone(),
            _ => return Err(invalid(&self.name, "backward before forward on this input")),
        };
        let mut gx = vec![0.0f32; x.numel()];
        lrn.backward(
            &x.as_slice()?,
            &y.as_slice()?,
            &self.scale,
            &gy.contiguous().as_slice()?,
            &mut gx,
        )?;
        Ok(Tensor::from_vec(gx, x.sizes())?.into())
    }

    fn spec(&self) -> Option<Spec> {
        Some(
            Spec::new("SpatialCrossMapLRN")
                .int("size", self.size)
                .float("alpha", self.alpha)
                .float("beta", self.beta)
                .float("k", self.k),
        )
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

/// Inverted dropout: in training mode each element is zeroed with probability
/// `p` and the others scaled by `1 / (1 - p)` (BigDL's default); identity in
/// inference mode. The mask is counter-based from a per-layer seed, so a run
/// repeats exactly.
#[derive(Clone, Debug)]
pub struct Dropout {
    name: String,
    p: f32,
    seed: u64,
    offset: u64,
    mask: Vec<f32>,
    training: bool,
}

impl Dropout {
    /// Drop probability `p` in `[0, 1)`.
    pub fn new(p: f32) -> Result<Dropout> {
        let name = format!("Dropout({p})");
        if !(0.0..1.0).contains(&p) {
            return Err(invalid(
                &name,
                format!("drop probability {p} outside [0, 1)"),
            ));
        }
        Ok(Dropout {
            name,
            p,
            seed: init_generator().seed,
            offset: 0,
            mask: Vec::new(),
            training: true,
        })
    }
}

impl Module for Dropout {
    fn name(&self) -> &str {
        &self.name
    }

    fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        self.offset = 0;
    }

    fn visit_state(&mut self, f: &mut dyn FnMut(StateMut<'_>)) {
        f(StateMut::U64(&mut self.seed));
        f(StateMut::U64(&mut self.offset));
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.name)?.contiguous();
        if !self.training || self.p == 0.0 {
            return Ok(x.deep_clone().into());
        }
        let mut y = vec![0.0f32; x.numel()];
        self.mask.resize(x.numel(), 0.0);
        dropout_forward(
            &x.as_slice()?,
            &mut y,
            &mut self.mask,
            self.p,
            self.seed,
            self.offset,
        )?;
        self.offset = self.offset.wrapping_add(x.numel() as u64);
        Ok(Tensor::from_vec(y, x.sizes())?.into())
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.name)?;
        let gy = grad_output.tensor(&self.name)?;
        same_shape(&self.name, gy, x.sizes())?;
        if !self.training || self.p == 0.0 {
            return Ok(gy.deep_clone().into());
        }
        if self.mask.len() != x.numel() {
            return Err(invalid(&self.name, "backward before forward on this input"));
        }
        let gx: Vec<f32> = gy
            .contiguous()
            .as_slice()?
            .iter()
            .zip(&self.mask)
            .map(|(&g, &m)| g * m)
            .collect();
        Ok(Tensor::from_vec(gx, x.sizes())?.into())
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn is_training(&self) -> bool {
        self.training
    }

    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("Dropout").float("p", self.p))
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}
