//! `SpatialFullConvolution`: transposed 2-D convolution (deconvolution).

use bigdl_tensor::Tensor;
use bigdl_tensor::kernels::conv::{Conv2d, ConvPlan};

use crate::activity::Activity;
use crate::error::{Result, invalid};
use crate::io::Spec;
use crate::module::{Module, batched, init_generator, same_shape, uniform_init, with_scratch};

/// Transposed convolution (Torch7's `SpatialFullConvolution`, PyTorch's
/// `conv_transpose2d`): input `[N, in, H, W]` (or `[in, H, W]`), weight
/// `[in, out / groups, kh, kw]`, output size
/// `(H - 1) stride - 2 pad + dilation (k - 1) + 1 + adj`. It is the adjoint
/// of the convolution from `out` to `in` channels with the same geometry, and
/// runs on that convolution's kernels: its forward is their backward-data
/// pass, its backward-data their forward.
#[derive(Clone, Debug)]
pub struct SpatialFullConvolution {
    name: String,
    in_channels: usize,
    out_channels: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
    adj: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
    weight: Tensor<f32>,
    bias: Option<Tensor<f32>>,
    grad_weight: Tensor<f32>,
    grad_bias: Option<Tensor<f32>>,
}

impl SpatialFullConvolution {
    /// `in_channels -> out_channels` with a `(kh, kw)` kernel in `groups`
    /// groups, stride 1, no padding, with a bias. Initialised as Torch7:
    /// `U(-1/sqrt(fan), 1/sqrt(fan))`, `fan = out / groups * kh * kw`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        groups: usize,
    ) -> Result<SpatialFullConvolution> {
        let name = format!(
            "SpatialFullConvolution({in_channels} -> {out_channels}, {}x{})",
            kernel.0, kernel.1
        );
        if groups == 0
            || !in_channels.is_multiple_of(groups)
            || !out_channels.is_multiple_of(groups)
            || kernel.0 == 0
            || kernel.1 == 0
        {
            return Err(invalid(
                &name,
                format!(
                    "kernel {kernel:?} and {groups} groups do not fit {in_channels} -> {out_channels} channels"
                ),
            ));
        }
        let fan = out_channels / groups * kernel.0 * kernel.1;
        let wsize = [in_channels, out_channels / groups, kernel.0, kernel.1];
        let mut g = init_generator();
        Ok(SpatialFullConvolution {
            name,
            in_channels,
            out_channels,
            kernel,
            stride: (1, 1),
            pad: (0, 0),
            adj: (0, 0),
            dilation: (1, 1),
            groups,
            weight: uniform_init(&wsize, fan, &mut g)?,
            bias: Some(uniform_init(&[out_channels], fan, &mut g)?),
            grad_weight: Tensor::zeros(&wsize)?,
            grad_bias: Some(Tensor::zeros(&[out_channels])?),
        })
    }

    /// Sets the stride `(h, w)`.
    pub fn stride(mut self, h: usize, w: usize) -> Self {
        self.stride = (h, w);
        self
    }

    /// Sets the padding `(h, w)` (removed from the output's borders).
    pub fn pad(mut self, h: usize, w: usize) -> Self {
        self.pad = (h, w);
        self
    }

    /// Sets the extra output rows and columns `(h, w)` (each below the stride).
    pub fn adj(mut self, h: usize, w: usize) -> Self {
        self.adj = (h, w);
        self
    }

    /// Sets the dilation `(h, w)`.
    pub fn dilation(mut self, h: usize, w: usize) -> Self {
        self.dilation = (h, w);
        self
    }

    /// Removes the bias.
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self.grad_bias = None;
        self
    }

    /// The input with a batch dimension, the adjoint convolution's plan and
    /// the output size.
    fn plan(&mut self, input: &Activity) -> Result<(Tensor<f32>, bool, ConvPlan)> {
        let expected = || format!("[N, {0}, H, W] or [{0}, H, W]", self.in_channels);
        let (x, added) = batched(&self.name, input, 4, &expected)?;
        let s = x.sizes();
        if s[1] != self.in_channels {
            let got = input.tensor(&self.name)?.sizes().to_vec();
            return Err(crate::error::shape(&self.name, expected(), &got));
        }
        if self.adj.0 >= self.stride.0 || self.adj.1 >= self.stride.1 {
            return Err(invalid(
                &self.name,
                format!(
                    "adj {:?} must be below the stride {:?}",
                    self.adj, self.stride
                ),
            ));
        }
        let out = |size: usize, s: usize, p: usize, d: usize, k: usize, a: usize| {
            ((size.max(1) - 1) * s + d * (k - 1) + 1 + a).checked_sub(2 * p)
        };
        let (oh, ow) = match (
            out(
                s[2],
                self.stride.0,
                self.pad.0,
                self.dilation.0,
                self.kernel.0,
                self.adj.0,
            ),
            out(
                s[3],
                self.stride.1,
                self.pad.1,
                self.dilation.1,
                self.kernel.1,
                self.adj.1,
            ),
        ) {
            (Some(h), Some(w)) if h > 0 && w > 0 && s[2] > 0 && s[3] > 0 => (h, w),
            _ => {
                return Err(invalid(
                    &self.name,
                    format!("padding {:?} leaves no output for input {s:?}", self.pad),
                ));
            }
        };
        let plan = Conv2d {
            batch: s[0],
            in_channels: self.out_channels,
            in_h: oh,
            in_w: ow,
            out_channels: self.in_channels,
            kernel_h: self.kernel.0,
            kernel_w: self.kernel.1,
            stride_h: self.stride.0,
            stride_w: self.stride.1,
            pad_top: self.pad.0,
            pad_bottom: self.pad.0,
            pad_left: self.pad.1,
            pad_right: self.pad.1,
            dilation_h: self.dilation.0,
            dilation_w: self.dilation.1,
            groups: self.groups,
        }
        .plan()
        .map_err(|e| invalid(&self.name, e.to_string()))?;
        debug_assert_eq!((plan.out_h, plan.out_w), (s[2], s[3]));
        Ok((x, added, plan))
    }

    fn out_sizes(&self, plan: &ConvPlan, added: bool) -> Vec<usize> {
        let c = &plan.conv;
        let chw = [self.out_channels, c.in_h, c.in_w];
        if added {
            chw.to_vec()
        } else {
            [&[c.batch][..], &chw].concat()
        }
    }

    fn grad_output(
        &self,
        grad_output: &Activity,
        plan: &ConvPlan,
        added: bool,
    ) -> Result<Tensor<f32>> {
        let gy = grad_output.tensor(&self.name)?;
        same_shape(&self.name, gy, &self.out_sizes(plan, added))?;
        Ok(gy.contiguous())
    }
}

impl Module for SpatialFullConvolution {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let (x, added, plan) = self.plan(input)?;
        let mut y = vec![0.0f32; plan.input_len()];
        let (x_s, w_s) = (x.as_slice()?, self.weight.as_slice()?);
        with_scratch(plan.scratch_len(), |s| {
            plan.backward_data(&x_s, &w_s, &mut y, s)
        })?;
        if let Some(b) = &self.bias {
            let b = b.as_slice()?;
            let plane = plan.conv.in_h * plan.conv.in_w;
            for (k, run) in y.chunks_mut(plane.max(1)).enumerate() {
                let v = b[k % self.out_channels];
                run.iter_mut().for_each(|y| *y += v);
            }
        }
        Ok(Tensor::from_vec(y, &self.out_sizes(&plan, added))?.into())
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let (x, added, plan) = self.plan(input)?;
        let gy = self.grad_output(grad_output, &plan, added)?;
        let mut gx = vec![0.0f32; x.numel()];
        let (gy_s, w_s) = (gy.as_slice()?, self.weight.as_slice()?);
        with_scratch(plan.scratch_len(), |s| {
            plan.forward(&gy_s, &w_s, None, &mut gx, s)
        })?;
        Ok(Tensor::from_vec(gx, input.tensor(&self.name)?.sizes())?.into())
    }

    fn acc_grad_parameters(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        let (x, added, plan) = self.plan(input)?;
        let gy = self.grad_output(grad_output, &plan, added)?;
        let (x, gy) = (x.as_slice()?, gy.as_slice()?);
        // The adjoint convolution's weight gradient, with its input and output
        // gradient in the roles of our output gradient and input.
        let mut gw = vec![0.0f32; plan.weight_len()];
        with_scratch(plan.scratch_len(), |s| {
            plan.backward_weights(&gy, &x, &mut gw, None, s, false)
        })?;
        {
            let mut d = self.grad_weight.as_slice_mut()?;
            d.iter_mut().zip(&gw).for_each(|(d, &s)| *d += scale * s);
        }
        if let Some(gb) = &self.grad_bias {
            let plane = (plan.conv.in_h * plan.conv.in_w).max(1);
            let mut sums = vec![0.0f64; self.out_channels];
            for (k, run) in gy.chunks(plane).enumerate() {
                sums[k % self.out_channels] += run.iter().map(|&v| v as f64).sum::<f64>();
            }
            let mut d = gb.as_slice_mut()?;
            d.iter_mut()
                .zip(&sums)
                .for_each(|(d, &s)| *d += scale * s as f32);
        }
        Ok(())
    }

    fn visit_parameters(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
        f(&mut self.weight, &mut self.grad_weight);
        if let (Some(b), Some(gb)) = (&mut self.bias, &mut self.grad_bias) {
            f(b, gb);
        }
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }

    fn spec(&self) -> Option<Spec> {
        let pair = |p: (usize, usize)| [p.0, p.1];
        Some(
            Spec::new("SpatialFullConvolution")
                .int("in", self.in_channels)
                .int("out", self.out_channels)
                .ints("kernel", &pair(self.kernel))
                .ints("stride", &pair(self.stride))
                .ints("pad", &pair(self.pad))
                .ints("adj", &pair(self.adj))
                .ints("dilation", &pair(self.dilation))
                .int("groups", self.groups)
                .flag("bias", self.bias.is_some()),
        )
    }
}
