//! 2-D convolution in NCHW: forward, backward-data, backward-weights (and bias),
//! with stride, asymmetric padding, dilation and groups (depthwise included).
//!
//! Plan, then run: [`Conv2d::plan`] validates the geometry, picks the algorithm
//! and states the scratch size; running allocates nothing of its own (the GEMMs
//! reuse their thread-local packing buffers).
//!
//! Algorithms: `im2col` + SGEMM in general; `Direct1x1` for 1x1 kernels with
//! stride 1 and no padding, where the input already is the column matrix;
//! `Winograd` F(4x4, 3x3) and F(2x2, 5x5) for 3x3 and 5x5 stride-1
//! convolutions with enough channels and tiles. On AVX-512, layers with few
//! channels run without a column matrix: forward and (stride-1)
//! backward-data passes as direct convolutions (`direct.rs`), weight
//! gradients as dot products over shifted planes (`shifted.rs`). Forward
//! passes of deep products on small planes run on a weight packed once by
//! the caller ([`ConvPlan::pack_weights`], [`ConvPlan::forward_packed`]),
//! vectorised along the output channels (`wide.rs`); the running uses no
//! scratch beyond the plan's, the packing is the caller's to keep.
//!
//! Layouts (all row-major, contiguous): input `N x C x H x W`, weight
//! `OC x C/groups x KH x KW`, output `N x OC x OH x OW`, with
//! `OH = (H + pad_top + pad_bottom - dilation_h (KH - 1) - 1) / stride_h + 1`.

use crate::error::{KernelError, Result};
use rayon::prelude::*;

use crate::cpu::{self, Isa};
use crate::gemm::{Epilogue, Gemm, PackedA, Transpose, relu_f32};
use crate::pool::{self, SyncPtr};
use crate::winograd::{self, Geometry};

mod direct;
mod shifted;
mod unfold;
mod wide;

const OP: &str = "conv2d";

/// A convolution's weight prepared for the forward passes of its plans by
/// [`ConvPlan::pack_weights`]: packed into panels of output channels for
/// the wide path, or transformed for Winograd's.
#[derive(Clone)]
pub struct PackedWeights {
    /// [`ConvPlan::layer`] of the plan that packed it.
    layer: [usize; 5],
    form: Form,
}

#[derive(Clone)]
enum Form {
    Panels(wide::Panels),
    /// Winograd's `U`.
    Winograd(Vec<f32>),
}

/// The kinds of [`Form`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Packing {
    Panels,
    Winograd,
}

impl PackedWeights {
    /// Whether [`ConvPlan::forward_packed`] on `plan` runs on this: a plan
    /// of the same layer (groups, channels and kernel) whose forward pass
    /// runs the way the plan that packed it does.
    pub fn serves(&self, plan: &ConvPlan) -> bool {
        self.layer == plan.layer() && plan.packing() == Some(self.packing())
    }

    fn packing(&self) -> Packing {
        match self.form {
            Form::Panels(_) => Packing::Panels,
            Form::Winograd(_) => Packing::Winograd,
        }
    }
}

impl std::fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [groups, cin, cout, kh, kw] = self.layer;
        write!(
            f,
            "PackedWeights({:?}: {cin} -> {cout}, {kh}x{kw}, {groups} groups)",
            self.packing()
        )
    }
}

/// Target columns per SGEMM when batching images with small output planes.
const BLOCK_COLUMNS: usize = 256;

/// The geometry of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2d {
    /// Images per batch (N).
    pub batch: usize,
    /// Input channels (C).
    pub in_channels: usize,
    /// Input height (H).
    pub in_h: usize,
    /// Input width (W).
    pub in_w: usize,
    /// Output channels (OC).
    pub out_channels: usize,
    /// Kernel height (KH).
    pub kernel_h: usize,
    /// Kernel width (KW).
    pub kernel_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero rows above.
    pub pad_top: usize,
    /// Zero rows below.
    pub pad_bottom: usize,
    /// Zero columns left.
    pub pad_left: usize,
    /// Zero columns right.
    pub pad_right: usize,
    /// Vertical dilation (1 = dense).
    pub dilation_h: usize,
    /// Horizontal dilation (1 = dense).
    pub dilation_w: usize,
    /// Groups: channels are split into `groups` independent convolutions
    /// (`groups == in_channels == out_channels` is depthwise).
    pub groups: usize,
}

/// The algorithm a plan runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvAlgo {
    /// Unfold the input into a column matrix, then one SGEMM per image and group.
    Im2col,
    /// 1x1 kernel, stride 1, no padding: the input is the column matrix.
    Direct1x1,
    /// Winograd F(4x4, 3x3) or F(2x2, 5x5), all three passes (3x3 or 5x5
    /// kernel, stride 1, no dilation, one group, each padding below the
    /// kernel's side). Errors reach about 1.2e-5 of the sum of the absolute
    /// products (im2col's stay under 7.6e-6).
    Winograd,
}

/// A validated convolution with its algorithm and scratch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvPlan {
    /// The geometry.
    pub conv: Conv2d,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// The algorithm (of the passes that do not run without a column matrix:
    /// see the module's documentation).
    pub algo: ConvAlgo,
    /// Images processed in parallel, one group of images per pool thread (each
    /// with its own scratch, single-threaded GEMMs); 1 runs the images in turn
    /// with multi-threaded GEMMs. Chosen at plan time: `min(pool threads, batch)`,
    /// 1 when planned from inside a pool worker.
    pub threads: usize,
    /// Images per SGEMM: small output planes (`OH x OW` under 256) are batched
    /// side by side so each product has at least ~256 columns.
    pub block: usize,
    /// Threads a Winograd run splits its tiles over (the pool's, or 1 when
    /// planned inside a worker), whatever the batch.
    tile_threads: usize,
    /// Whether a Winograd plan's backward-data pass runs on Winograd too
    /// (else im2col): when the channel counts swapped pass the forward
    /// pass's test, or when forced by [`ConvPlan::with_algo`].
    winograd_data: bool,
    /// Whether a Winograd plan computes weight gradients with Winograd too
    /// (else im2col): with at least 8 channels in and out and
    /// [`WINOGRAD_GRAD_TILES`] tiles per thread, or when forced by
    /// [`ConvPlan::with_algo`].
    winograd_grad: bool,
    /// Whether weight gradients skip the column matrix
    /// (`conv/shifted.rs`): small gradients of layers with few channels,
    /// on AVX-512, where Winograd does not take them.
    shifted_grad: bool,
    /// Whether the forward pass runs as a direct convolution
    /// (`conv/direct.rs`): few channels, AVX-512, not a 1x1 or a Winograd
    /// layer from 8 input channels up.
    direct_fwd: bool,
    /// Whether the backward-data pass does (stride 1, padding within the
    /// kernel's reach, where Winograd does not take it).
    direct_data: bool,
    /// Whether the forward pass runs on the weight packed by
    /// [`ConvPlan::pack_weights`] when it is given one (`conv/wide.rs`):
    /// small output planes, deep products, AVX-512.
    wide: bool,
}

fn invalid(what: String) -> KernelError {
    KernelError::InvalidArgument { op: OP, what }
}

impl Conv2d {
    /// A convolution with square kernel `k`, stride `s`, symmetric padding `p`,
    /// no dilation and one group.
    pub fn new(
        batch: usize,
        in_channels: usize,
        in_hw: (usize, usize),
        out_channels: usize,
        k: usize,
        s: usize,
        p: usize,
    ) -> Conv2d {
        Conv2d {
            batch,
            in_channels,
            in_h: in_hw.0,
            in_w: in_hw.1,
            out_channels,
            kernel_h: k,
            kernel_w: k,
            stride_h: s,
            stride_w: s,
            pad_top: p,
            pad_bottom: p,
            pad_left: p,
            pad_right: p,
            dilation_h: 1,
            dilation_w: 1,
            groups: 1,
        }
    }

    /// Validates the geometry and picks the algorithm.
    pub fn plan(&self) -> Result<ConvPlan> {
        let c = self;
        if [
            c.kernel_h,
            c.kernel_w,
            c.stride_h,
            c.stride_w,
            c.dilation_h,
            c.dilation_w,
            c.groups,
        ]
        .contains(&0)
        {
            return Err(invalid(format!(
                "kernel, stride, dilation and groups must be positive: {c:?}"
            )));
        }
        if [c.in_channels, c.out_channels, c.in_h, c.in_w].contains(&0) {
            return Err(invalid(format!(
                "channels and input size must be positive: {c:?}"
            )));
        }
        if !c.in_channels.is_multiple_of(c.groups) || !c.out_channels.is_multiple_of(c.groups) {
            return Err(invalid(format!(
                "{} input and {} output channels do not split into {} groups",
                c.in_channels, c.out_channels, c.groups
            )));
        }
        let out = |size: usize,
                   lo: usize,
                   hi: usize,
                   k: usize,
                   s: usize,
                   d: usize|
         -> Result<usize> {
            let span = d.checked_mul(k - 1).and_then(|x| x.checked_add(1));
            let padded = size.checked_add(lo).and_then(|x| x.checked_add(hi));
            match (span, padded) {
                (Some(span), Some(padded)) if padded >= span => Ok((padded - span) / s + 1),
                _ => Err(invalid(format!(
                    "a kernel spanning {} does not fit an input of {size} padded by {lo} + {hi}",
                    d.saturating_mul(k - 1).saturating_add(1)
                ))),
            }
        };
        let out_h = out(
            c.in_h,
            c.pad_top,
            c.pad_bottom,
            c.kernel_h,
            c.stride_h,
            c.dilation_h,
        )?;
        let out_w = out(
            c.in_w,
            c.pad_left,
            c.pad_right,
            c.kernel_w,
            c.stride_w,
            c.dilation_w,
        )?;
        // Every buffer size must be representable (checked once, here).
        let sizes = [
            [c.batch, c.in_channels, c.in_h, c.in_w],
            [c.batch, c.out_channels, out_h, out_w],
            [
                c.out_channels,
                c.in_channels / c.groups,
                c.kernel_h,
                c.kernel_w,
            ],
            [
                c.in_channels / c.groups,
                c.kernel_h * c.kernel_w,
                out_h,
                out_w,
            ],
        ];
        for s in sizes {
            s.iter()
                .try_fold(1usize, |a, &x| a.checked_mul(x))
                .filter(|&n| n <= isize::MAX as usize / 8)
                .ok_or_else(|| invalid(format!("sizes {s:?} overflow")))?;
        }
        let direct = c.kernel_h == 1
            && c.kernel_w == 1
            && c.stride_h == 1
            && c.stride_w == 1
            && c.pad_top + c.pad_bottom + c.pad_left + c.pad_right == 0;
        let tile_threads = if pool::in_worker() {
            1
        } else {
            pool::num_threads()
        };
        let threads = tile_threads.min(c.batch).max(1);
        let mut plan = ConvPlan {
            conv: *c,
            out_h,
            out_w,
            algo: if direct {
                ConvAlgo::Direct1x1
            } else {
                ConvAlgo::Im2col
            },
            tile_threads,
            winograd_data: false,
            winograd_grad: false,
            shifted_grad: false,
            direct_fwd: false,
            direct_data: false,
            wide: false,
            threads,
            block: if out_h * out_w >= BLOCK_COLUMNS {
                1
            } else {
                BLOCK_COLUMNS
                    .div_ceil(out_h * out_w)
                    .min(c.batch.div_ceil(threads))
                    .max(1)
            },
        };
        let (cin, cout) = (c.in_channels, c.out_channels);
        if plan.winograd_fits()
            && cpu::isa() >= Isa::Avx2
            && prefers_winograd(cin, cout, plan.winograd().tiles())
        {
            plan.algo = ConvAlgo::Winograd;
            // Backward-data is a Winograd convolution from cout to cin
            // channels over the input plane's tiles.
            plan.winograd_data = prefers_winograd(cout, cin, plan.winograd_backward().tiles());
            // Each thread's `dU` (36 x cin x cout floats) is read and written
            // once per block of tiles, in products of cout x cin: with few
            // tiles or channels, im2col is faster (LeNet-5's conv2, 6 -> 12
            // channels: 0.6x).
            plan.winograd_grad = cin >= 8
                && cout >= 8
                && plan.winograd().tiles() >= WINOGRAD_GRAD_TILES * tile_threads.max(1);
        }
        plan.shifted_grad = !plan.winograd_grad && plan.shifted_fits();
        // Direct convolutions for few channels; Winograd keeps the passes
        // it takes from 8 input channels up (LeNet-5's conv2, 6 -> 12
        // channels: its forward pass 1.6x faster direct).
        let winograd = plan.algo == ConvAlgo::Winograd;
        // The direct kernels split images over the threads: not for fewer
        // images than threads (one image's GEMMs use them all), except a
        // forward pass with the output channels to split instead.
        let gemm_only = plan.algo == ConvAlgo::Direct1x1 || plan.threads < tile_threads;
        let split =
            plan.algo != ConvAlgo::Direct1x1 && cout >= DIRECT_SPLIT_CHANNELS * tile_threads;
        plan.direct_fwd =
            (!gemm_only || split) && plan.direct_forward().is_some() && !(winograd && cin >= 8);
        plan.direct_data =
            !gemm_only && plan.direct_backward().is_some() && !(winograd && plan.winograd_data);
        let split_images = (plan.threads >= tile_threads) as usize;
        plan.wide = cpu::isa() == Isa::Avx512
            && !winograd
            && !plan.direct_fwd
            && plan.ocg() >= wide::PANEL
            && plan.k() >= WIDE_MIN_K[split_images]
            && plan.p() <= WIDE_MAX_PIXELS[split_images];
        Ok(plan)
    }
}

/// Element-wise work fused into a convolution's output, after the bias:
/// `y = relu?(y + residual)`, in the order separate passes take (so the
/// results are the same bit for bit), done while each block of the output
/// is in cache. This is how a ResNet block's addition and ReLUs cost no
/// pass of their own at inference.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tail<'a> {
    /// Added to the output (same shape).
    pub residual: Option<&'a [f32]>,
    /// Then `max(·, 0)` (NaN and -0 pass through, as the ReLU kernels).
    pub relu: bool,
}

impl Tail<'_> {
    /// Whether there is nothing to do.
    pub(crate) fn is_none(&self) -> bool {
        self.residual.is_none() && !self.relu
    }

    /// `y = relu?(y + residual[at..])` over a run of the output that starts
    /// at `at` (vectorised, unlike [`Tail::apply`] element by element).
    pub(crate) fn apply_run(&self, y: &mut [f32], at: usize) {
        match self.residual {
            Some(r) => {
                let r = &r[at..][..y.len()];
                if self.relu {
                    y.iter_mut()
                        .zip(r)
                        .for_each(|(v, &r)| *v = relu_f32(*v + r));
                } else {
                    y.iter_mut().zip(r).for_each(|(v, &r)| *v += r);
                }
            }
            None if self.relu => y.iter_mut().for_each(|v| *v = relu_f32(*v)),
            None => {}
        }
    }

    /// `relu?(v + residual[at])`, in the order separate passes would take.
    ///
    /// # Safety
    /// `at` is inside the output.
    #[inline(always)]
    pub(crate) unsafe fn apply(&self, v: f32, at: usize) -> f32 {
        // SAFETY: the residual is as long as the output (caller's contract).
        let v = self
            .residual
            .map_or(v, |r| v + unsafe { *r.get_unchecked(at) });
        if self.relu { relu_f32(v) } else { v }
    }
}

/// Floats of a forward pass's column matrix at a time (512 KiB: half of
/// Zen 4's L2), and the fewest columns a chunk has.
const CHUNK_FLOATS: usize = 128 << 10;
const MIN_CHUNK_COLUMNS: usize = 512;

/// The shallowest product and the largest output plane the forward pass
/// takes on packed weights ([`ConvPlan::pack_weights`]) for, when one
/// image runs on all threads (batch 1) and when images split over them.
/// Measured on Zen 5 with ResNet-50 against the SGEMM (2 threads): at
/// batch 1 its 1x1 layers from k = 128 gain 2-10% (k = 256 on 56x56
/// planes 0.249 -> 0.228 ms) and the whole model 4%, but k = 64 loses
/// 6% (the tile's transposed store outweighs its few products); at batch
/// 32 the model lost 3% with those thresholds, and gains with k from 384
/// on planes up to 32x32 (256 x 196 x 2304: 466 vs 375 GFLOP/s).
const WIDE_MIN_K: [usize; 2] = [128, 384];
const WIDE_MAX_PIXELS: [usize; 2] = [4096, 1024];

/// Output channels per thread from which a direct forward pass splits one
/// image's output channels over the threads, rather than running the GEMM
/// on them all: ResNet-50's stem at batch 1 (64 channels on 2 threads).
const DIRECT_SPLIT_CHANNELS: usize = 16;

/// Output columns per thread from which one image's forward pass runs as
/// tasks of output rows ([`ConvPlan::rows_in_tasks`]).
const ROW_TASK_COLUMNS: usize = 256;

/// Output tiles per thread from which Winograd's weight gradient beats
/// im2col's, measured on Zen 4 with `conv_table` (2 threads): 512 channels
/// on 7x7 planes, 32 tiles per thread 1.2-2x slower, 64 (ResNet-50's res5 at
/// batch 32) 1.1x faster; 24 per thread (128 channels at 28x28, batch 1)
/// 1.2x slower; ResNet-50's res2 (3136 per thread) 2.2x faster.
const WINOGRAD_GRAD_TILES: usize = 64;

/// Whether Winograd beats im2col for a pass from `cin` to `cout` channels
/// over `tiles` output tiles, as measured on Zen 4 (BENCHMARKS.md): not with
/// fewer than 6 channels in (the transforms outweigh the products: 0.55-0.9x
/// at 3 or 4; LeNet-5's conv2 forward, 6 -> 12 channels, 1.9x faster) or 8
/// out (its backward-data pass, 12 -> 6: 0.6x), nor with fewer than 48
/// output tiles (the products run 32 tiles wide, and the transformed
/// kernel, 4x the weight, is read once per block of tiles: 0.06-0.6x for
/// ResNet-50's last stages at batch 1).
fn prefers_winograd(cin: usize, cout: usize, tiles: usize) -> bool {
    cin >= 6 && cout >= 8 && tiles >= 48
}

impl ConvPlan {
    /// This plan with another algorithm, when it applies to the geometry
    /// (for tests and benchmarks that compare them), for all three passes.
    pub fn with_algo(mut self, algo: ConvAlgo) -> Result<ConvPlan> {
        let c = &self.conv;
        let fits = match algo {
            ConvAlgo::Im2col => true,
            ConvAlgo::Direct1x1 => {
                c.kernel_h == 1
                    && c.kernel_w == 1
                    && c.stride_h == 1
                    && c.stride_w == 1
                    && c.pad_top + c.pad_bottom + c.pad_left + c.pad_right == 0
            }
            ConvAlgo::Winograd => self.winograd_fits(),
        };
        if !fits {
            return Err(invalid(format!("{algo:?} does not apply to {c:?}")));
        }
        self.algo = algo;
        self.winograd_data = algo == ConvAlgo::Winograd;
        self.winograd_grad = algo == ConvAlgo::Winograd;
        // A forced algorithm runs every pass.
        (self.shifted_grad, self.direct_fwd, self.direct_data) = (false, false, false);
        self.wide = false;
        Ok(self)
    }

    /// 3x3 or 5x5, stride 1, undilated, one group, every padding at most
    /// the kernel's side less one.
    fn winograd_fits(&self) -> bool {
        let c = &self.conv;
        let r = c.kernel_h;
        (r == 3 || r == 5)
            && (c.kernel_w, c.stride_h, c.stride_w) == (r, 1, 1)
            && (c.dilation_h, c.dilation_w, c.groups) == (1, 1, 1)
            && [c.pad_top, c.pad_bottom, c.pad_left, c.pad_right]
                .iter()
                .all(|&p| p < r)
    }

    /// The forward pass as a Winograd geometry.
    fn winograd(&self) -> Geometry {
        let c = &self.conv;
        Geometry {
            r: c.kernel_h,
            batch: c.batch,
            cin: c.in_channels,
            h: c.in_h,
            w: c.in_w,
            cout: c.out_channels,
            oh: self.out_h,
            ow: self.out_w,
            pad_top: c.pad_top,
            pad_left: c.pad_left,
        }
    }

    /// The backward-data pass as a Winograd geometry.
    fn winograd_backward(&self) -> Geometry {
        self.winograd()
            .backward_data()
            .expect("winograd_fits bounds the padding")
    }

    fn cg(&self) -> usize {
        self.conv.in_channels / self.conv.groups
    }
    fn ocg(&self) -> usize {
        self.conv.out_channels / self.conv.groups
    }
    /// Rows of the column matrix: `C/groups x KH x KW`.
    fn k(&self) -> usize {
        self.cg() * self.conv.kernel_h * self.conv.kernel_w
    }
    /// Output pixels per image: `OH x OW`.
    fn p(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        let c = &self.conv;
        c.batch * c.in_channels * c.in_h * c.in_w
    }
    /// Elements of the output.
    pub fn output_len(&self) -> usize {
        self.conv.batch * self.conv.out_channels * self.p()
    }
    /// Elements of the weight.
    pub fn weight_len(&self) -> usize {
        self.conv.out_channels * self.k()
    }
    /// Column-matrix floats one thread needs: `K x block x P` (0 for an
    /// unbatched `Direct1x1`, which reads the input in place).
    fn col_len(&self) -> usize {
        if self.block == 1 && self.algo == ConvAlgo::Direct1x1 {
            0
        } else {
            self.k() * self.block * self.p()
        }
    }

    /// Output staging floats one thread needs when batching: `OC/groups x block x P`.
    fn stage_len(&self) -> usize {
        if self.block > 1 {
            self.ocg() * self.block * self.p()
        } else {
            0
        }
    }

    /// Floats of one thread's column matrix and staging area, or of its
    /// staged images for [`ConvPlan::shifted_weight_grad`].
    fn work_len(&self) -> usize {
        let winograd = self.algo == ConvAlgo::Winograd;
        // Whether some pass unfolds the input.
        let direct = [
            self.direct_fwd || winograd,
            self.direct_data || (winograd && self.winograd_data),
            self.shifted_grad || (winograd && self.winograd_grad),
        ];
        let columns = direct.contains(&false);
        let mut len = if columns {
            self.col_len() + self.stage_len()
        } else {
            0
        };
        if self.shifted_grad {
            len = len.max(self.shifted_len());
        }
        if let Some(d) = self
            .direct_forward()
            .filter(|_| self.direct_fwd && !self.direct_in_place())
        {
            len = len.max(d.planes_len());
        }
        if let Some(d) = self.direct_backward().filter(|_| self.direct_data) {
            len = len.max(d.planes_len());
        }
        len
    }

    /// Scratch floats of one thread: its column matrix, its staging area and,
    /// when images run in parallel, its partial weight and bias gradients.
    fn thread_scratch(&self) -> usize {
        self.work_len()
            + if self.threads > 1 {
                self.weight_len() + self.conv.out_channels
            } else {
                0
            }
    }

    /// Floats of scratch every run needs.
    pub fn scratch_len(&self) -> usize {
        // The flipped weight of a direct backward-data pass comes last.
        self.pass_scratch_len()
            + if self.direct_data {
                self.weight_len()
            } else {
                0
            }
    }

    /// [`ConvPlan::scratch_len`] but the flipped weight.
    fn pass_scratch_len(&self) -> usize {
        let mut im2col = self.threads * self.thread_scratch();
        if self.rows_in_tasks() && !self.direct_fwd {
            let (_, chunk) = self.row_tasks();
            im2col = im2col.max(self.tile_threads * self.k() * chunk * self.out_w);
        }
        if self.algo == ConvAlgo::Winograd {
            let g = self.winograd();
            g.scratch_len(self.tile_threads)
                .max(if self.winograd_data {
                    self.winograd_backward().scratch_len(self.tile_threads)
                } else {
                    im2col
                })
                .max(if self.winograd_grad {
                    g.weight_grad_scratch_len(self.tile_threads)
                } else {
                    im2col
                })
                .max(if self.direct_fwd { im2col } else { 0 })
        } else {
            im2col
        }
    }

    /// Images per parallel task.
    fn per_task(&self) -> usize {
        self.conv.batch.div_ceil(self.threads).max(1)
    }

    fn check(&self, bufs: &[(&'static str, usize, usize)]) -> Result<()> {
        for &(name, len, needed) in bufs {
            if len != needed && !(name == "scratch" && len > needed) {
                return Err(KernelError::BufferTooSmall {
                    op: OP,
                    name,
                    len,
                    needed,
                });
            }
        }
        Ok(())
    }

    /// `output = conv(input, weight) + bias`.
    pub fn forward(
        &self,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        self.forward_with(input, weight, bias, Tail::default(), output, scratch)
    }

    /// `output = relu?(conv(input, weight) + bias + residual)`: the forward
    /// pass with `tail` fused into it.
    pub fn forward_with(
        &self,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        tail: Tail<'_>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        self.forward_packed(input, weight, None, bias, tail, output, scratch)
    }

    /// The weight prepared for this plan's forward pass, when the pass runs
    /// on a prepared weight (else `None`): a caller that runs the same
    /// weight many times (inference) prepares it once and hands it to
    /// [`ConvPlan::forward_packed`]. It serves the plans of the same layer
    /// whose forward pass runs the same way ([`PackedWeights::serves`]).
    pub fn pack_weights(&self, weight: &[f32]) -> Result<Option<PackedWeights>> {
        self.check(&[("weight", weight.len(), self.weight_len())])?;
        let form = match self.packing() {
            Some(Packing::Panels) => Form::Panels(wide::Panels::new(
                self.conv.groups,
                self.ocg(),
                self.k(),
                weight,
            )),
            Some(Packing::Winograd) => Form::Winograd(self.winograd().transform(
                cpu::isa(),
                weight,
                self.tile_threads,
            )),
            None => return Ok(None),
        };
        Ok(Some(PackedWeights {
            layer: self.layer(),
            form,
        }))
    }

    /// How this plan's forward pass runs on a prepared weight, if it does.
    fn packing(&self) -> Option<Packing> {
        if self.wide {
            Some(Packing::Panels)
        } else if self.algo == ConvAlgo::Winograd && !self.direct_fwd {
            Some(Packing::Winograd)
        } else {
            None
        }
    }

    /// What identifies the layer: groups, input and output channels,
    /// kernel height and width.
    fn layer(&self) -> [usize; 5] {
        let c = &self.conv;
        [
            c.groups,
            c.in_channels,
            c.out_channels,
            c.kernel_h,
            c.kernel_w,
        ]
    }

    /// [`ConvPlan::forward_with`] with the weight also packed by
    /// [`ConvPlan::pack_weights`] (of this `weight`: it is not checked),
    /// used where the plan runs on it.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_packed(
        &self,
        input: &[f32],
        weight: &[f32],
        packed: Option<&PackedWeights>,
        bias: Option<&[f32]>,
        tail: Tail<'_>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        self.check(&[
            ("input", input.len(), self.input_len()),
            ("weight", weight.len(), self.weight_len()),
            ("output", output.len(), self.output_len()),
            ("scratch", scratch.len(), self.scratch_len()),
        ])?;
        if let Some(b) = bias {
            self.check(&[("bias", b.len(), self.conv.out_channels)])?;
        }
        if let Some(r) = tail.residual {
            self.check(&[("residual", r.len(), self.output_len())])?;
        }
        if let Some(w) = packed.filter(|w| w.layer != self.layer()) {
            return Err(invalid(format!(
                "{w:?} is not a packing of this layer's weight ({:?})",
                self.conv
            )));
        }
        let form = packed.filter(|w| w.serves(self)).map(|w| &w.form);
        #[cfg(target_arch = "x86_64")]
        if let Some(Form::Panels(w)) = form {
            return self.forward_wide(input, w, bias, tail, output, scratch);
        }
        if let Some(d) = self.direct_forward().filter(|_| self.direct_fwd) {
            return self.forward_direct(&d, input, weight, bias, tail, output, scratch);
        }
        if self.algo == ConvAlgo::Winograd {
            let weight = match form {
                Some(Form::Winograd(u)) => winograd::Weight::Transformed(u),
                _ => winograd::Weight::Plain {
                    weight,
                    flip: false,
                },
            };
            self.winograd().run(
                cpu::isa(),
                self.tile_threads,
                input,
                weight,
                bias,
                tail,
                output,
                scratch,
            );
            return Ok(());
        }
        let packed = self.packed_weights(weight, false)?;
        if self.rows_in_tasks() {
            return self.forward_row_tasks(input, weight, &packed, bias, tail, output, scratch);
        }
        let (in_img, out_img) = (
            self.input_len() / self.conv.batch.max(1),
            self.output_len() / self.conv.batch.max(1),
        );
        self.par_images(input, in_img, output, out_img, scratch, |i0, x, y, s| {
            let tail = Tail {
                residual: tail.residual.map(|r| &r[i0 * out_img..][..y.len()]),
                ..tail
            };
            self.forward_images(x, weight, &packed, bias, tail, y, s)
        })
    }

    /// Each group's weight packed once for the products of this call (as
    /// `W^T` for the backward-data pass) when a thread multiplies it more
    /// than once (several images or blocks of images, or a plane in
    /// chunks) and the GEMM would pack it for each product (ResNet-50's
    /// res5 1x1 at batch 32: 7% of each product); else none.
    fn packed_weights(&self, weight: &[f32], transposed: bool) -> Result<Vec<PackedA>> {
        // Products per thread, and their columns.
        let (per_thread, n) = if self.rows_in_tasks() && !transposed {
            let (rows, chunk) = self.row_tasks();
            (rows.div_ceil(chunk), chunk * self.out_w)
        } else if transposed {
            (self.per_task().div_ceil(self.block), self.block * self.p())
        } else {
            let chunk = self.forward_chunk_rows();
            let products = self.per_task().div_ceil(self.block) * self.out_h.div_ceil(chunk);
            (products, self.block * chunk * self.out_w)
        };
        let (k, ocg) = (self.k(), self.ocg());
        let gemm = if transposed {
            Gemm::new(k, n, ocg).trans_a(Transpose::Yes)
        } else {
            Gemm::new(ocg, n, k)
        };
        if per_thread < 2 || !gemm.packs_a() {
            return Ok(Vec::new());
        }
        let mut packed = Vec::with_capacity(self.conv.groups);
        for g in 0..self.conv.groups {
            let w = &weight[g * ocg * k..][..ocg * k];
            match gemm.pack_a(w)? {
                Some(p) => packed.push(p),
                None => return Ok(Vec::new()),
            }
        }
        Ok(packed)
    }

    /// Whether the direct forward pass reads the input in place (no padding,
    /// stride 1: the image is its own phase plane).
    fn direct_in_place(&self) -> bool {
        let c = &self.conv;
        c.pad_top + c.pad_bottom + c.pad_left + c.pad_right == 0
            && (c.stride_h, c.stride_w) == (1, 1)
    }

    /// Runs `f(first_image, images_in, images_out, thread_scratch)` over
    /// groups of whole images, one group per thread when the plan has
    /// several.
    fn par_images(
        &self,
        a: &[f32],
        a_img: usize,
        b: &mut [f32],
        b_img: usize,
        scratch: &mut [f32],
        f: impl Fn(usize, &[f32], &mut [f32], &mut [f32]) -> Result<()> + Sync,
    ) -> Result<()> {
        if self.threads <= 1 || a.is_empty() {
            return f(0, a, b, scratch);
        }
        let per = self.per_task();
        let tasks: Vec<_> = a
            .chunks(per * a_img)
            .zip(b.chunks_mut(per * b_img))
            .zip(scratch.chunks_mut(self.thread_scratch().max(1)))
            .enumerate()
            .collect();
        pool::install(|| {
            tasks
                .into_par_iter()
                .map(|(t, ((a, b), s))| f(t * per, a, b, s))
                .collect::<Result<Vec<()>>>()
        })?;
        Ok(())
    }

    /// One image on several threads, through the column matrix, with
    /// enough output: each thread takes a band of output rows and unfolds
    /// and multiplies it in L2-sized blocks, on its own. Unfolding the
    /// whole image on the caller first left the other threads waiting, and
    /// the matrix (7.4 MB for ResNet-50's stem) went through memory.
    fn rows_in_tasks(&self) -> bool {
        self.algo == ConvAlgo::Im2col
            && self.conv.batch == 1
            && self.tile_threads > 1
            && !self.same_width()
            && self.p() >= ROW_TASK_COLUMNS * self.tile_threads
    }

    /// The most output rows a task of [`ConvPlan::rows_in_tasks`] takes,
    /// and the rows per block it unfolds.
    fn row_tasks(&self) -> (usize, usize) {
        let rows = self.out_h.div_ceil(self.tile_threads);
        (rows, self.chunk_rows().min(rows))
    }

    /// Task `t`'s band of output rows: the rows split as evenly as they go.
    fn row_band(&self, t: usize) -> std::ops::Range<usize> {
        let tt = self.tile_threads;
        t * self.out_h / tt..(t + 1) * self.out_h / tt
    }

    /// The forward pass of [`ConvPlan::rows_in_tasks`].
    #[allow(clippy::too_many_arguments)]
    fn forward_row_tasks(
        &self,
        input: &[f32],
        weight: &[f32],
        packed: &[PackedA],
        bias: Option<&[f32]>,
        tail: Tail<'_>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        let (k, p, ocg, c) = (self.k(), self.p(), self.ocg(), &self.conv);
        let in_grp = self.cg() * c.in_h * c.in_w;
        let (_, chunk) = self.row_tasks();
        let (out, out_len) = (SyncPtr(output.as_mut_ptr()), output.len());
        let tasks: Vec<_> = scratch
            .chunks_mut(k * chunk * self.out_w)
            .take(self.tile_threads)
            .enumerate()
            .collect();
        let task = |(t, cols): (usize, &mut [f32])| -> Result<()> {
            let band = self.row_band(t);
            for g in 0..c.groups {
                let x = &input[g * in_grp..][..in_grp];
                let w = &weight[g * ocg * k..][..ocg * k];
                let at = g * ocg * p;
                let epilogue = Epilogue {
                    row_bias: bias.map(|b| &b[g * ocg..][..ocg]),
                    residual: tail.residual.map(|r| &r[at..][..ocg * p]),
                    relu: tail.relu,
                };
                assert!(at + ocg * p <= out_len);
                // SAFETY: the group's output rows lie inside `output`; only
                // this task writes the columns of its band, and nothing else
                // reads `output` until every task is done.
                unsafe {
                    self.forward_rows(
                        x,
                        w,
                        packed.get(g),
                        &epilogue,
                        out.get().add(at),
                        band.clone(),
                        chunk,
                        cols,
                    )?;
                }
            }
            Ok(())
        };
        pool::install(|| {
            tasks
                .into_par_iter()
                .with_max_len(1)
                .map(task)
                .collect::<Result<Vec<()>>>()
        })?;
        Ok(())
    }

    /// Output rows `rows` of one image's group, `chunk` rows at a time:
    /// each block unfolded from `x` (the group's input planes) into `cols`,
    /// multiplied by `w` (from `packed` when given) and written, with
    /// `epilogue` (its residual laid out like the output), into columns
    /// `rows.start * OW..` of the group's `ocg` output rows at `out`.
    ///
    /// # Safety
    /// `out` must be valid for the group's `ocg x OH x OW` floats, and no
    /// other thread may access the columns of `rows` during the call.
    #[allow(clippy::too_many_arguments)]
    unsafe fn forward_rows(
        &self,
        x: &[f32],
        w: &[f32],
        packed: Option<&PackedA>,
        epilogue: &Epilogue<'_>,
        out: *mut f32,
        rows: std::ops::Range<usize>,
        chunk: usize,
        cols: &mut [f32],
    ) -> Result<()> {
        let (k, p, ocg) = (self.k(), self.p(), self.ocg());
        for oh0 in rows.clone().step_by(chunk) {
            let oh1 = (oh0 + chunk).min(rows.end);
            let (q0, len) = (oh0 * self.out_w, (oh1 - oh0) * self.out_w);
            let cols = &mut cols[..k * len];
            self.im2col_rows(x, cols, len, 0, oh0..oh1);
            // Columns q0..q0 + len of the ocg output rows (leading dimension p).
            let c_len = (ocg - 1) * p + len;
            let epilogue = Epilogue {
                residual: epilogue.residual.map(|r| &r[q0..][..c_len]),
                ..*epilogue
            };
            let gemm = Gemm::new(ocg, len, k).ldc(p);
            // SAFETY: q0 + c_len <= ocg p floats from `out`, columns of
            // `rows` only (caller's contract).
            unsafe {
                let c = out.add(q0);
                match packed {
                    Some(pa) => gemm.run_packed_raw(pa, cols, c, c_len, &epilogue)?,
                    None => gemm.run_with_raw(w, cols, c, c_len, &epilogue)?,
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_images(
        &self,
        input: &[f32],
        weight: &[f32],
        packed: &[PackedA],
        bias: Option<&[f32]>,
        tail: Tail<'_>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        let (k, p, ocg, c) = (self.k(), self.p(), self.ocg(), &self.conv);
        let in_img = c.in_channels * c.in_h * c.in_w;
        let in_grp = self.cg() * c.in_h * c.in_w;
        if self.block > 1 {
            let (cols, stage) = scratch.split_at_mut(self.col_len());
            for (i0, b) in blocks(input.len() / in_img, self.block) {
                let ld = b * p;
                for g in 0..c.groups {
                    self.unfold_block(input, cols, i0, b, g);
                    let stage = &mut stage[..ocg * ld];
                    run_weight(
                        Gemm::new(ocg, ld, k),
                        packed.get(g),
                        &weight[g * ocg * k..][..ocg * k],
                        &cols[..k * ld],
                        stage,
                        &Epilogue::default(),
                    )?;
                    for i in 0..b {
                        for o in 0..ocg {
                            let bv = bias.map_or(0.0, |bias| bias[g * ocg + o]);
                            let at = ((i0 + i) * c.out_channels + g * ocg + o) * p;
                            let src = &stage[o * ld + i * p..][..p];
                            let dst = &mut output[at..][..p];
                            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v + bv);
                            tail.apply_run(dst, at);
                        }
                    }
                }
            }
            return Ok(());
        }
        let chunk = self.forward_chunk_rows();
        for n in 0..input.len() / in_img {
            for g in 0..c.groups {
                let x = &input[n * in_img + g * in_grp..][..in_grp];
                let w = &weight[g * ocg * k..][..ocg * k];
                let at = (n * c.out_channels + g * ocg) * p;
                let out = &mut output[at..][..ocg * p];
                let epilogue = Epilogue {
                    row_bias: bias.map(|b| &b[g * ocg..][..ocg]),
                    residual: tail.residual.map(|r| &r[at..][..ocg * p]),
                    relu: tail.relu,
                };
                if chunk >= self.out_h {
                    let cols = self.columns(x, scratch);
                    run_weight(Gemm::new(ocg, p, k), packed.get(g), w, cols, out, &epilogue)?;
                    continue;
                }
                // SAFETY: `out` is the group's output rows, borrowed
                // exclusively.
                unsafe {
                    self.forward_rows(
                        x,
                        w,
                        packed.get(g),
                        &epilogue,
                        out.as_mut_ptr(),
                        0..self.out_h,
                        chunk,
                        scratch,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// `grad_input = conv^T(grad_output, weight)` (overwrites `grad_input`).
    pub fn backward_data(
        &self,
        grad_output: &[f32],
        weight: &[f32],
        grad_input: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        self.check(&[
            ("grad_output", grad_output.len(), self.output_len()),
            ("weight", weight.len(), self.weight_len()),
            ("grad_input", grad_input.len(), self.input_len()),
            ("scratch", scratch.len(), self.scratch_len()),
        ])?;
        if self.algo == ConvAlgo::Winograd && self.winograd_data {
            self.winograd_backward().run(
                cpu::isa(),
                self.tile_threads,
                grad_output,
                winograd::Weight::Plain { weight, flip: true },
                None,
                Tail::default(),
                grad_input,
                scratch,
            );
            return Ok(());
        }
        let (in_img, out_img) = (
            self.input_len() / self.conv.batch.max(1),
            self.output_len() / self.conv.batch.max(1),
        );
        if let Some(d) = self.direct_backward().filter(|_| self.direct_data) {
            let c = &self.conv;
            let (in_img, out_img) = (c.in_channels * c.in_h * c.in_w, c.out_channels * self.p());
            let (scratch, wt) = scratch.split_at_mut(self.pass_scratch_len());
            let wt = &mut wt[..self.weight_len()];
            self.flipped_weight(weight, wt);
            let pad = (
                (c.kernel_h - 1) * c.dilation_h - c.pad_top,
                (c.kernel_w - 1) * c.dilation_w - c.pad_left,
            );
            let wt = &*wt;
            return self.par_images(
                grad_output,
                out_img,
                grad_input,
                in_img,
                scratch,
                |_, gy, gx, s| {
                    for (gy, gx) in gy.chunks_exact(out_img).zip(gx.chunks_exact_mut(in_img)) {
                        let s = &mut s[..d.planes_len()];
                        let (out, plane) = ((self.out_h, self.out_w), (d.hp, d.wp));
                        direct::phase_planes(gy, out, pad, (1, 1), (0, plane.0, plane.1), s);
                        d.run(s, wt, None, false, gx);
                    }
                    Ok(())
                },
            );
        }
        let packed = self.packed_weights(weight, true)?;
        self.par_images(
            grad_output,
            out_img,
            grad_input,
            in_img,
            scratch,
            |_, gy, gx, s| self.backward_data_images(gy, weight, &packed, gx, s),
        )
    }

    fn backward_data_images(
        &self,
        grad_output: &[f32],
        weight: &[f32],
        packed: &[PackedA],
        grad_input: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        let (k, p, ocg, c) = (self.k(), self.p(), self.ocg(), &self.conv);
        let in_img = c.in_channels * c.in_h * c.in_w;
        let in_grp = self.cg() * c.in_h * c.in_w;
        if self.block > 1 {
            let (cols, stage) = scratch.split_at_mut(self.col_len());
            for (i0, b) in blocks(grad_input.len() / in_img, self.block) {
                let ld = b * p;
                for g in 0..c.groups {
                    let stage = &mut stage[..ocg * ld];
                    self.stage_grad_output(grad_output, stage, i0, b, g);
                    // cols (k x ld) = W^T (k x ocg) * stage (ocg x ld)
                    let cols = &mut cols[..k * ld];
                    run_weight(
                        Gemm::new(k, ld, ocg).trans_a(Transpose::Yes),
                        packed.get(g),
                        &weight[g * ocg * k..][..ocg * k],
                        stage,
                        cols,
                        &Epilogue::default(),
                    )?;
                    for i in 0..b {
                        let gx = &mut grad_input[(i0 + i) * in_img + g * in_grp..][..in_grp];
                        gx.fill(0.0);
                        self.col2im(&mut cols[..], gx, ld, i * p);
                    }
                }
            }
            return Ok(());
        }
        for n in 0..grad_input.len() / in_img {
            for g in 0..c.groups {
                let w = &weight[g * ocg * k..][..ocg * k];
                let gy = &grad_output[(n * c.out_channels + g * ocg) * p..][..ocg * p];
                let gx = &mut grad_input[n * in_img + g * in_grp..][..in_grp];
                // cols (k x p) = W^T (k x ocg) * gy (ocg x p)
                let gemm = Gemm::new(k, p, ocg).trans_a(Transpose::Yes);
                let none = Epilogue::default();
                match self.algo {
                    ConvAlgo::Direct1x1 => run_weight(gemm, packed.get(g), w, gy, gx, &none)?,
                    ConvAlgo::Im2col | ConvAlgo::Winograd => {
                        run_weight(gemm, packed.get(g), w, gy, &mut scratch[..k * p], &none)?;
                        gx.fill(0.0);
                        self.col2im(&mut scratch[..k * p], gx, p, 0);
                    }
                }
            }
        }
        Ok(())
    }

    /// `grad_weight (+)= dL/dW` and `grad_bias (+)= dL/db` for one batch;
    /// `accumulate = false` overwrites instead of adding.
    pub fn backward_weights(
        &self,
        input: &[f32],
        grad_output: &[f32],
        grad_weight: &mut [f32],
        grad_bias: Option<&mut [f32]>,
        scratch: &mut [f32],
        accumulate: bool,
    ) -> Result<()> {
        self.check(&[
            ("input", input.len(), self.input_len()),
            ("grad_output", grad_output.len(), self.output_len()),
            ("grad_weight", grad_weight.len(), self.weight_len()),
            ("scratch", scratch.len(), self.scratch_len()),
        ])?;
        if let Some(b) = &grad_bias {
            self.check(&[("grad_bias", b.len(), self.conv.out_channels)])?;
        }
        // Per-thread scratch: [columns + staging | partial weight gradient | bias].
        let (wl, oc, col) = (self.weight_len(), self.conv.out_channels, self.work_len());
        if !accumulate {
            grad_weight.fill(0.0);
        }
        let mut bias_sum = vec![0.0f64; if grad_bias.is_some() { oc } else { 0 }];
        if self.algo == ConvAlgo::Winograd && self.winograd_grad {
            self.winograd().run_weight_grad(
                cpu::isa(),
                self.tile_threads,
                input,
                grad_output,
                grad_weight,
                scratch,
            )?;
            if !bias_sum.is_empty() {
                self.add_bias_grad(self.conv.batch, grad_output, &mut bias_sum);
            }
        } else if self.threads <= 1 {
            self.backward_weights_images(input, grad_output, grad_weight, &mut bias_sum, scratch)?;
        } else {
            // Each thread sums its images into its own partial gradient (kept in
            // its scratch); the partials are added at the end.
            let (in_img, out_img) = (
                self.input_len() / self.conv.batch,
                self.output_len() / self.conv.batch,
            );
            let per = self.per_task();
            let tasks: Vec<_> = input
                .chunks(per * in_img)
                .zip(grad_output.chunks(per * out_img))
                .zip(scratch.chunks_mut(self.thread_scratch()))
                .collect();
            let partial_bias = pool::install(|| {
                tasks
                    .into_par_iter()
                    .map(|((x, gy), s)| {
                        let (cols, gw) = s.split_at_mut(col);
                        let gw = &mut gw[..wl];
                        gw.fill(0.0);
                        let mut bs = vec![0.0f64; bias_sum.len()];
                        self.backward_weights_images(x, gy, gw, &mut bs, cols)?;
                        Ok(bs)
                    })
                    .collect::<Result<Vec<Vec<f64>>>>()
            })?;
            let used = self.conv.batch.div_ceil(per);
            for part in scratch.chunks(self.thread_scratch()).take(used) {
                grad_weight
                    .iter_mut()
                    .zip(&part[col..col + wl])
                    .for_each(|(g, &v)| *g += v);
            }
            for bs in partial_bias {
                bias_sum.iter_mut().zip(bs).for_each(|(a, b)| *a += b);
            }
        }
        if let Some(gb) = grad_bias {
            if !accumulate {
                gb.fill(0.0);
            }
            gb.iter_mut()
                .zip(&bias_sum)
                .for_each(|(b, &s)| *b += s as f32);
        }
        Ok(())
    }

    /// Adds the weight gradient of `input`'s images to `grad_weight` and their
    /// bias gradient to `bias_sum` (if not empty).
    fn backward_weights_images(
        &self,
        input: &[f32],
        grad_output: &[f32],
        grad_weight: &mut [f32],
        bias_sum: &mut [f64],
        scratch: &mut [f32],
    ) -> Result<()> {
        let (k, p, ocg, c) = (self.k(), self.p(), self.ocg(), &self.conv);
        let in_img = c.in_channels * c.in_h * c.in_w;
        let in_grp = self.cg() * c.in_h * c.in_w;
        if self.shifted_grad {
            self.shifted_weight_grad(input, grad_output, grad_weight, scratch);
        } else if self.block > 1 {
            let (cols, stage) = scratch.split_at_mut(self.col_len());
            for (i0, b) in blocks(input.len() / in_img, self.block) {
                let ld = b * p;
                for g in 0..c.groups {
                    self.unfold_block(input, cols, i0, b, g);
                    let stage = &mut stage[..ocg * ld];
                    self.stage_grad_output(grad_output, stage, i0, b, g);
                    // gw (ocg x k) += stage (ocg x ld) * cols^T (ld x k)
                    let gw = &mut grad_weight[g * ocg * k..][..ocg * k];
                    Gemm::new(ocg, k, ld)
                        .trans_b(Transpose::Yes)
                        .beta(1.0)
                        .run(stage, &cols[..k * ld], gw)?;
                }
            }
        } else {
            for n in 0..input.len() / in_img {
                for g in 0..c.groups {
                    let x = &input[n * in_img + g * in_grp..][..in_grp];
                    let cols = self.columns(x, scratch);
                    let gy = &grad_output[(n * c.out_channels + g * ocg) * p..][..ocg * p];
                    let gw = &mut grad_weight[g * ocg * k..][..ocg * k];
                    // gw (ocg x k) += gy (ocg x p) * cols^T (p x k)
                    Gemm::new(ocg, k, p)
                        .trans_b(Transpose::Yes)
                        .beta(1.0)
                        .run(gy, cols, gw)?;
                }
            }
        }
        self.add_bias_grad(input.len() / in_img, grad_output, bias_sum);
        Ok(())
    }

    /// Adds each output channel's gradient sum over `images` images to
    /// `bias_sum` (nothing if it is empty).
    fn add_bias_grad(&self, images: usize, grad_output: &[f32], bias_sum: &mut [f64]) {
        let (p, oc) = (self.p(), self.conv.out_channels);
        for n in 0..images {
            for (o, b) in bias_sum.iter_mut().enumerate() {
                // Each plane summed in f32 vector lanes, the planes in f64.
                *b += crate::elementwise::sum(&grad_output[(n * oc + o) * p..][..p]) as f64;
            }
        }
    }

    /// Unfolds group `g` of images `i0..i0+b` of `input` side by side into
    /// `cols` (`K x b*P`, image `i` in columns `i*P..`).
    fn unfold_block(&self, input: &[f32], cols: &mut [f32], i0: usize, b: usize, g: usize) {
        let c = &self.conv;
        let (in_img, in_grp, p) = (
            c.in_channels * c.in_h * c.in_w,
            self.cg() * c.in_h * c.in_w,
            self.p(),
        );
        for i in 0..b {
            self.im2col(
                &input[(i0 + i) * in_img + g * in_grp..][..in_grp],
                cols,
                b * p,
                i * p,
            );
        }
    }

    /// Copies group `g` of images `i0..i0+b` of `grad_output` into `stage`
    /// (`OC/groups x b*P`, image `i` in columns `i*P..`).
    fn stage_grad_output(
        &self,
        grad_output: &[f32],
        stage: &mut [f32],
        i0: usize,
        b: usize,
        g: usize,
    ) {
        let (p, ocg, oc) = (self.p(), self.ocg(), self.conv.out_channels);
        let ld = b * p;
        for i in 0..b {
            for o in 0..ocg {
                stage[o * ld + i * p..][..p]
                    .copy_from_slice(&grad_output[((i0 + i) * oc + g * ocg + o) * p..][..p]);
            }
        }
    }

    /// The column matrix (`K x P`) of one image's group `x`: `x` itself for
    /// `Direct1x1`, else unfolded into `scratch`.
    fn columns<'a>(&self, x: &'a [f32], scratch: &'a mut [f32]) -> &'a [f32] {
        match self.algo {
            ConvAlgo::Direct1x1 => x,
            ConvAlgo::Im2col | ConvAlgo::Winograd => {
                let cols = &mut scratch[..self.col_len()];
                self.im2col(x, cols, self.p(), 0);
                cols
            }
        }
    }

    /// Output rows per column matrix in a forward pass, so that the matrix
    /// stays in the L2 cache between its unfolding and the GEMM's packing
    /// (ResNet-50's 7x7 stem: 7.4 MB per image at once); all rows where it
    /// is small, or where the same-width unfolding (one copy per row of the
    /// matrix) applies, and where images run in turn.
    fn forward_chunk_rows(&self) -> usize {
        // With images in turn, the GEMM runs on every thread: one product
        // per image splits better than a product per chunk (one image on
        // several threads takes [`ConvPlan::rows_in_tasks`] where it can).
        if self.algo != ConvAlgo::Im2col || self.block > 1 || self.threads <= 1 || self.same_width()
        {
            return self.out_h;
        }
        self.chunk_rows()
    }

    /// Output rows whose column matrix is about [`CHUNK_FLOATS`].
    fn chunk_rows(&self) -> usize {
        let cols = (CHUNK_FLOATS / self.k()).max(MIN_CHUNK_COLUMNS);
        (cols / self.out_w.max(1)).clamp(1, self.out_h.max(1))
    }
}

/// `c = gemm(w, b)` with `w` (a group's weight) from its packing when there
/// is one ([`ConvPlan::packed_weights`]).
fn run_weight(
    gemm: Gemm,
    packed: Option<&PackedA>,
    w: &[f32],
    b: &[f32],
    c: &mut [f32],
    epilogue: &Epilogue<'_>,
) -> Result<()> {
    match packed {
        Some(pa) => gemm.run_packed_with(pa, b, c, epilogue),
        None => gemm.run_with(w, b, c, epilogue),
    }
}

/// `(first, count)` of consecutive groups of at most `block` of `n` images.
fn blocks(n: usize, block: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n)
        .step_by(block.max(1))
        .map(move |i0| (i0, block.min(n - i0)))
}

#[cfg(test)]
mod tests;
