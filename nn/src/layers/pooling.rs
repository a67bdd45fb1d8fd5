//! `SpatialMaxPooling` and `SpatialAveragePooling` over NCHW input.

use bigdl_tensor::Tensor;
use bigdl_tensor::kernels::pool2d::{Pool2d, PoolPlan};

use crate::activity::Activity;
use crate::error::{Result, invalid};
use crate::io::Spec;
use crate::module::{Module, batched, same_shape};

/// Window geometry shared by both poolings.
#[derive(Clone, Copy, Debug)]
struct Window {
    kernel: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
    ceil_mode: bool,
    global: bool,
}

impl Window {
    fn spec(&self, kind: &str) -> Spec {
        let pair = |p: (usize, usize)| [p.0, p.1];
        Spec::new(kind)
            .ints("kernel", &pair(self.kernel))
            .ints("stride", &pair(self.stride))
            .ints("pad", &pair(self.pad))
            .flag("ceil", self.ceil_mode)
            .flag("global", self.global)
    }

    fn plan(
        &self,
        name: &str,
        input: &Activity,
        count_include_pad: bool,
    ) -> Result<(Tensor<f32>, bool, PoolPlan)> {
        let (x, added) = batched(name, input, 4, &|| "[N, C, H, W] or [C, H, W]".into())?;
        let s = x.sizes();
        let pool = if self.global {
            Pool2d::global(s[0], s[1], (s[2], s[3]))
        } else {
            Pool2d {
                batch: s[0],
                channels: s[1],
                in_h: s[2],
                in_w: s[3],
                kernel_h: self.kernel.0,
                kernel_w: self.kernel.1,
                stride_h: self.stride.0,
                stride_w: self.stride.1,
                pad_h: self.pad.0,
                pad_w: self.pad.1,
                ceil_mode: self.ceil_mode,
                count_include_pad,
            }
        };
        let plan = pool.plan().map_err(|e| invalid(name, e.to_string()))?;
        Ok((x, added, plan))
    }
}

fn out_sizes(plan: &PoolPlan, added: bool) -> Vec<usize> {
    let p = &plan.pool;
    let chw = [p.channels, plan.out_h, plan.out_w];
    if added {
        chw.to_vec()
    } else {
        [&[p.batch][..], &chw].concat()
    }
}

fn grad_output(
    name: &str,
    grad_output: &Activity,
    plan: &PoolPlan,
    added: bool,
) -> Result<Tensor<f32>> {
    let gy = grad_output.tensor(name)?;
    same_shape(name, gy, &out_sizes(plan, added))?;
    Ok(gy.contiguous())
}

/// Max pooling with a `kh x kw` window (Torch7's `SpatialMaxPooling`), with
/// optional ceil-mode output sizes (Caffe, BigDL's `ceil()`).
#[derive(Clone, Debug)]
pub struct SpatialMaxPooling {
    name: String,
    window: Window,
    indices: Vec<u32>,
}

impl SpatialMaxPooling {
    /// A `kernel` window moved by `stride`, no padding, floor mode.
    pub fn new(kernel: (usize, usize), stride: (usize, usize)) -> SpatialMaxPooling {
        SpatialMaxPooling {
            name: format!(
                "SpatialMaxPooling({}x{}, /{}x{})",
                kernel.0, kernel.1, stride.0, stride.1
            ),
            window: Window {
                kernel,
                stride,
                pad: (0, 0),
                ceil_mode: false,
                global: false,
            },
            indices: Vec::new(),
        }
    }

    /// Sets the padding `(h, w)` (implicit negative infinity).
    pub fn pad(mut self, h: usize, w: usize) -> Self {
        self.window.pad = (h, w);
        self
    }

    /// Rounds output sizes up (Caffe).
    pub fn ceil(mut self) -> Self {
        self.window.ceil_mode = true;
        self
    }
}

impl Module for SpatialMaxPooling {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let (x, added, plan) = self.window.plan(&self.name, input, true)?;
        let mut y = vec![0.0f32; plan.output_len()];
        self.indices.resize(plan.output_len(), 0);
        plan.max_forward(&x.as_slice()?, &mut y, &mut self.indices)?;
        Ok(Tensor::from_vec(y, &out_sizes(&plan, added))?.into())
    }

    /// The maxima without their positions (a backward pass needs a
    /// `forward` first).
    fn predict(&mut self, input: &Activity) -> Result<Activity> {
        let (x, added, plan) = self.window.plan(&self.name, input, true)?;
        self.indices.clear();
        let mut y = crate::module::output_buffer(plan.output_len());
        plan.max_values(&x.as_slice()?, &mut y)?;
        Ok(Tensor::from_vec(y, &out_sizes(&plan, added))?.into())
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let (x, added, plan) = self.window.plan(&self.name, input, true)?;
        let gy = self::grad_output(&self.name, grad_output, &plan, added)?;
        if self.indices.len() != plan.output_len() {
            return Err(invalid(&self.name, "backward before forward on this input"));
        }
        let mut gx = vec![0.0f32; x.numel()];
        plan.max_backward(&gy.as_slice()?, &self.indices, &mut gx)?;
        Ok(Tensor::from_vec(gx, input.tensor(&self.name)?.sizes())?.into())
    }

    fn spec(&self) -> Option<Spec> {
        Some(self.window.spec("SpatialMaxPooling"))
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

/// Average pooling (Torch7's `SpatialAveragePooling`): padding counted in the
/// divisor by default (`count_include_pad`, as Torch7 and BigDL), ceil mode,
/// or global (the window is the whole plane).
#[derive(Clone, Debug)]
pub struct SpatialAveragePooling {
    name: String,
    window: Window,
    count_include_pad: bool,
}

impl SpatialAveragePooling {
    /// A `kernel` window moved by `stride`, no padding, floor mode.
    pub fn new(kernel: (usize, usize), stride: (usize, usize)) -> SpatialAveragePooling {
        SpatialAveragePooling {
            name: format!(
                "SpatialAveragePooling({}x{}, /{}x{})",
                kernel.0, kernel.1, stride.0, stride.1
            ),
            window: Window {
                kernel,
                stride,
                pad: (0, 0),
                ceil_mode: false,
                global: false,
            },
            count_include_pad: true,
        }
    }

    /// Averages each whole plane (output `[N, C, 1, 1]`).
    pub fn global() -> SpatialAveragePooling {
        let mut p = SpatialAveragePooling::new((1, 1), (1, 1));
        p.name = "SpatialAveragePooling(global)".into();
        p.window.global = true;
        p
    }

    /// Sets the zero padding `(h, w)`.
    pub fn pad(mut self, h: usize, w: usize) -> Self {
        self.window.pad = (h, w);
        self
    }

    /// Rounds output sizes up (Caffe).
    pub fn ceil(mut self) -> Self {
        self.window.ceil_mode = true;
        self
    }

    /// Whether padded positions count in the divisor.
    pub fn count_include_pad(mut self, yes: bool) -> Self {
        self.count_include_pad = yes;
        self
    }
}

impl Module for SpatialAveragePooling {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let (x, added, plan) = self
            .window
            .plan(&self.name, input, self.count_include_pad)?;
        let mut y = vec![0.0f32; plan.output_len()];
        plan.avg_forward(&x.as_slice()?, &mut y)?;
        Ok(Tensor::from_vec(y, &out_sizes(&plan, added))?.into())
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let (x, added, plan) = self
            .window
            .plan(&self.name, input, self.count_include_pad)?;
        let gy = self::grad_output(&self.name, grad_output, &plan, added)?;
        let mut gx = vec![0.0f32; x.numel()];
        plan.avg_backward(&gy.as_slice()?, &mut gx)?;
        Ok(Tensor::from_vec(gx, input.tensor(&self.name)?.sizes())?.into())
    }

    fn spec(&self) -> Option<Spec> {
        Some(
            self.window
                .spec("SpatialAveragePooling")
                .flag("count_include_pad", self.count_include_pad),
        )
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}
