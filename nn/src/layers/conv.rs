//! `SpatialConvolution`: 2-D convolution over NCHW input.

use std::sync::Arc;

use bigdl_tensor::Tensor;
use bigdl_tensor::kernels::conv::{Conv2d, ConvPlan, PackedWeights, Tail};

use crate::activity::Activity;
use crate::error::{Result, invalid};
use crate::io::Spec;
use crate::module::{
    FusionRole, Module, batched, init_generator, same_shape, uniform_init, with_scratch,
};

/// 2-D convolution: input `[N, C, H, W]` (or `[C, H, W]`), weight
/// `[out, C / groups, kh, kw]`, bias `[out]` (optional), with stride, padding,
/// dilation and groups. Initialised as Torch7 and BigDL do:
/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, `fan_in = C / groups * kh * kw`.
#[derive(Clone, Debug)]
pub struct SpatialConvolution {
    name: String,
    in_channels: usize,
    out_channels: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
    weight: Tensor<f32>,
    bias: Option<Tensor<f32>>,
    grad_weight: Tensor<f32>,
    grad_bias: Option<Tensor<f32>>,
    /// The weight packed for the forward passes ([`ConvPlan::pack_weights`]):
    /// one packing for each way of running them that the batch sizes seen
    /// so far chose (at most two: panels and a Winograd transform).
    packed: Vec<Packed>,
}

/// A packing of the weight, valid while the weight tensor is the same
/// view of the same storage at the same version.
#[derive(Clone, Debug)]
struct Packed {
    /// A view of the weight packed (keeping its storage alive, so that a
    /// new weight cannot take its place unnoticed).
    weight: Tensor<f32>,
    version: u64,
    data: Arc<PackedWeights>,
}

impl SpatialConvolution {
    /// `in_channels -> out_channels` with a `kh x kw` kernel (Torch7's
    /// argument order is `(nIn, nOut, kW, kH, dW, dH, padW, padH)`; here the
    /// pairs are `(h, w)`), stride 1, no padding, with a bias.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
    ) -> Result<SpatialConvolution> {
        SpatialConvolution::with_groups(in_channels, out_channels, kernel, 1)
    }

    /// As [`SpatialConvolution::new`], split into `groups` groups.
    pub fn with_groups(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        groups: usize,
    ) -> Result<SpatialConvolution> {
        let name = format!(
            "SpatialConvolution({in_channels} -> {out_channels}, {}x{})",
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
        let fan_in = in_channels / groups * kernel.0 * kernel.1;
        let wsize = [out_channels, in_channels / groups, kernel.0, kernel.1];
        let mut g = init_generator();
        Ok(SpatialConvolution {
            name,
            in_channels,
            out_channels,
            kernel,
            stride: (1, 1),
            pad: (0, 0),
            dilation: (1, 1),
            groups,
            weight: uniform_init(&wsize, fan_in, &mut g)?,
            bias: Some(uniform_init(&[out_channels], fan_in, &mut g)?),
            grad_weight: Tensor::zeros(&wsize)?,
            grad_bias: Some(Tensor::zeros(&[out_channels])?),
            packed: Vec::new(),
        })
    }

    /// Sets the stride `(h, w)`.
    pub fn stride(mut self, h: usize, w: usize) -> Self {
        self.stride = (h, w);
        self
    }

    /// Sets the zero padding `(h, w)` on both sides.
    pub fn pad(mut self, h: usize, w: usize) -> Self {
        self.pad = (h, w);
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

    /// The weight, `[out, in / groups, kh, kw]`.
    pub fn weight(&self) -> &Tensor<f32> {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor<f32>> {
        self.bias.as_ref()
    }

    /// The input with a batch dimension, and the plan for its shape.
    fn plan(&mut self, input: &Activity) -> Result<(Tensor<f32>, bool, ConvPlan)> {
        let expected = || format!("[N, {0}, H, W] or [{0}, H, W]", self.in_channels);
        let (x, added) = batched(&self.name, input, 4, &expected)?;
        let s = x.sizes();
        if s[1] != self.in_channels {
            let got = input.tensor(&self.name)?.sizes().to_vec();
            return Err(crate::error::shape(&self.name, expected(), &got));
        }
        let plan = Conv2d {
            batch: s[0],
            in_channels: s[1],
            in_h: s[2],
            in_w: s[3],
            out_channels: self.out_channels,
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
        Ok((x, added, plan))
    }

    fn out_sizes(&self, plan: &ConvPlan, added: bool) -> Vec<usize> {
        let chw = [self.out_channels, plan.out_h, plan.out_w];
        if added {
            chw.to_vec()
        } else {
            [&[plan.conv.batch][..], &chw].concat()
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

impl SpatialConvolution {
    /// The weight packed for `plan`'s forward pass, when it runs on one:
    /// packed the first time, then kept while the weight is unchanged
    /// (inference; a training step changes it, and the next pass packs it
    /// again). `forward` and `predict` both run on it, so that they agree
    /// bit for bit.
    fn packed_weight(&mut self, plan: &ConvPlan) -> Result<Option<Arc<PackedWeights>>> {
        let Some(version) = self.weight.version() else {
            return Ok(None);
        };
        let w = &self.weight;
        self.packed.retain(|p| {
            p.version == version
                && p.weight.shares_storage(w)
                && p.weight.offset() == w.offset()
                && p.weight.strides() == w.strides()
                && p.weight.sizes() == w.sizes()
        });
        if let Some(p) = self.packed.iter().find(|p| p.data.serves(plan)) {
            return Ok(Some(p.data.clone()));
        }
        let weight = self.weight.contiguous();
        let Some(packed) = plan
            .pack_weights(&weight.as_slice()?)
            .map_err(|e| invalid(&self.name, e.to_string()))?
        else {
            return Ok(None);
        };
        let data = Arc::new(packed);
        self.packed.push(Packed {
            weight: self.weight.clone(),
            version,
            data: data.clone(),
        });
        Ok(Some(data))
    }

    /// The forward pass with `tail` fused, on the packed weight where the
    /// plan runs on one.
    fn run_forward(
        &mut self,
        input: &Activity,
        residual: Option<&Tensor<f32>>,
        relu: bool,
    ) -> Result<Activity> {
        let (x, added, plan) = self.plan(input)?;
        let sizes = self.out_sizes(&plan, added);
        let residual = match residual {
            Some(r) => {
                same_shape(&self.name, r, &sizes)?;
                Some(r.contiguous())
            }
            None => None,
        };
        let packed = self.packed_weight(&plan)?;
        // Overwritten whole: a recycled buffer will do.
        let mut y = crate::module::output_buffer(plan.output_len());
        let bias = self.bias.as_ref().map(|b| b.as_slice()).transpose()?;
        let residual = residual.as_ref().map(|r| r.as_slice()).transpose()?;
        let (x_s, w_s) = (x.as_slice()?, self.weight.as_slice()?);
        let tail = Tail {
            residual: residual.as_deref(),
            relu,
        };
        with_scratch(plan.scratch_len(), |s| {
            plan.forward_packed(
                &x_s,
                &w_s,
                packed.as_deref(),
                bias.as_deref(),
                tail,
                &mut y,
                s,
            )
        })?;
        Ok(Tensor::from_vec(y, &sizes)?.into())
    }
}

impl Module for SpatialConvolution {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        self.run_forward(input, None, false)
    }

    fn fusion_role(&self) -> FusionRole {
        FusionRole::Producer
    }

    fn predict_with(
        &mut self,
        input: &Activity,
        residual: Option<&Tensor<f32>>,
        relu: bool,
    ) -> Result<Activity> {
        self.run_forward(input, residual, relu)
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let (x, added, plan) = self.plan(input)?;
        let gy = self.grad_output(grad_output, &plan, added)?;
        let mut gx = vec![0.0f32; x.numel()];
        let (gy_s, w_s) = (gy.as_slice()?, self.weight.as_slice()?);
        with_scratch(plan.scratch_len(), |s| {
            plan.backward_data(&gy_s, &w_s, &mut gx, s)
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
        with_scratch(plan.scratch_len(), |scratch| {
            self.weight_grads(&plan, &x, &gy, scratch, scale)
        })
    }

    fn backward_parameters(&mut self, input: &Activity, grad_output: &Activity) -> Result<()> {
        self.acc_grad_parameters(input, grad_output, 1.0)
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
            Spec::new("SpatialConvolution")
                .int("in", self.in_channels)
                .int("out", self.out_channels)
                .ints("kernel", &pair(self.kernel))
                .ints("stride", &pair(self.stride))
                .ints("pad", &pair(self.pad))
                .ints("dilation", &pair(self.dilation))
                .int("groups", self.groups)
                .flag("bias", self.bias.is_some()),
        )
    }
}

impl SpatialConvolution {
    /// Adds `scale` times the weight (and bias) gradient to the gradients.
    fn weight_grads(
        &self,
        plan: &ConvPlan,
        x: &[f32],
        gy: &[f32],
        scratch: &mut [f32],
        scale: f32,
    ) -> Result<()> {
        if scale == 1.0 {
            // Weight and bias gradients may be views of one flat buffer.
            let mut grads = vec![&self.grad_weight];
            grads.extend(&self.grad_bias);
            Tensor::with_disjoint_mut(&grads, |g| {
                let (gw, gb) = g.split_at_mut(1);
                plan.backward_weights(
                    x,
                    gy,
                    gw[0],
                    gb.first_mut().map(|b| &mut **b),
                    scratch,
                    true,
                )
            })??;
        } else {
            // The kernel accumulates unscaled: compute, then add scaled.
            let mut gw = vec![0.0f32; plan.weight_len()];
            let mut gb = vec![0.0f32; self.out_channels];
            let with_bias = self.grad_bias.is_some();
            plan.backward_weights(
                x,
                gy,
                &mut gw,
                with_bias.then_some(&mut gb[..]),
                scratch,
                false,
            )?;
            let add = |dst: &Tensor<f32>, src: &[f32]| -> Result<()> {
                let mut d = dst.as_slice_mut()?;
                d.iter_mut().zip(src).for_each(|(d, &s)| *d += scale * s);
                Ok(())
            };
            add(&self.grad_weight, &gw)?;
            if let Some(b) = &self.grad_bias {
                add(b, &gb)?;
            }
        }
        Ok(())
    }
}
