//! Winograd convolutions with stride 1, no dilation and one group: F(4x4,
//! 3x3) for 3x3 kernels, a quarter of the direct method's multiplies, and
//! F(2x2, 5x5) for 5x5 kernels, 36 multiplies for 100 (Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2016). Both use 6x6 input
//! tiles and the same interpolation points, so they share the input
//! transform `Bᵀ` and everything built on it; the description below is for
//! F(4x4, 3x3), F(2x2, 5x5) has 2x2 output tiles and a 6 x 5 `G`.
//!
//! Each 4x4 output tile comes from a 6x6 input tile `d` and the 3x3 kernel `g`:
//! `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`. Summed over input channels, the
//! element-wise product becomes 36 independent matrix products, one per
//! position of the 6x6 transformed tile:
//! `M[k] (OC x tiles) = U[k] (OC x C) · V[k] (C x tiles)`.
//!
//! Tiles (over images and tile rows, flattened) are processed in blocks sized
//! so that one block's `V` and `M` stay in the L2 cache where the channel
//! counts allow; blocks are split over the pool's threads, each with its own
//! slice of scratch. A block's 6x6 input tiles are first copied, from
//! zero-padded rows, into 36 rows of the block's tiles, so the input and
//! output transforms run on whole vectors of tiles whatever the plane size
//! (an 8x8 plane has only two tiles per tile row). The products run on a
//! register-blocked micro-kernel (8 output channels x 32 tiles on AVX-512)
//! reading `U` and `V` in the layouts the transforms write, so nothing is
//! packed twice.
//!
//! Accuracy: the transforms' constants (up to 8 in `A`, 1/24 in `G`) cost
//! precision; errors reach about 1.2e-5 of the sum of the absolute products
//! (the tests bound them at 5e-5; the im2col path's bound is `64 ε ≈ 7.6e-6`).
//!
//! Weight gradients differentiate the same formula: per position,
//! `dU[k] = Σ_tiles Z[k] V[k]ᵀ` with `Z = A dY Aᵀ`, then `dW = Gᵀ dU G`; the
//! products (a reduction over tiles) run on the SGEMM, each thread summing
//! its blocks into its own `dU`.
//!
//! Backward-data of a stride-1 3x3 convolution is itself one: the gradient of
//! the output convolved with the flipped kernel, channels swapped and padding
//! `2 - pad`; [`Geometry::backward_data`] describes it.

use crate::conv::Tail;
use crate::cpu::{self, Isa};
use crate::elementwise::simd::Simd;
use crate::elementwise::{Kernel, dispatch};
use crate::error::Result;
use crate::gemm::{Gemm, Parallelism, Transpose};
use crate::pool::{self, SyncPtr};

/// Positions of a transformed tile (6 x 6).
const POS: usize = 36;
/// Output channels per micro-kernel row block (`U` is padded to a multiple).
const ROWS: usize = 8;
/// Tiles per micro-kernel column block: a multiple of every ISA's
/// `LANES x vectors` (32 on AVX-512, 8 on AVX2, 1 in scalar code).
const CHUNK: usize = 32;
/// At most this many tiles per block.
const MAX_BLOCK: usize = 8 * CHUNK;
/// Floats between consecutive positions of `V` and `M` beyond their rows,
/// so the 36 streams a transform reads or writes do not alias in the L1
/// cache (their natural distance is a multiple of 4 KiB).
const SKEW: usize = 16;

/// A stride-1 3x3 convolution in the direction it is run: `cin` planes of
/// `h x w` in, `cout` planes of `oh x ow` out, with `pad_top`/`pad_left` zero
/// rows/columns before the input (those after it follow from the sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Kernel side: 3 (F(4x4, 3x3)) or 5 (F(2x2, 5x5)).
    pub r: usize,
    pub batch: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub oh: usize,
    pub ow: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

/// Bytes of `V` and `Z` a weight-gradient block aims at.
const GRAD_BUDGET: usize = 4 << 20;

/// The interpolation points of both variants (0, 1, -1, 2, -2 and
/// infinity), and the scale of each finite point's row of `G` (Lavin's
/// F(4x4, 3x3) normalisation, which fixes `Bᵀ`; F(2x2, 5x5) uses the same
/// points, so the same `Bᵀ`).
const POINTS: [f32; 5] = [0.0, 1.0, -1.0, 2.0, -2.0];
const SCALE: [f32; 5] = [0.25, -1.0 / 6.0, -1.0 / 6.0, 1.0 / 24.0, 1.0 / 24.0];

/// The kernel transform `G` (6 x r) for kernel side `r`: row `a` is
/// `SCALE[a] (1, p, p², ...)` at point `p = POINTS[a]`, the last row picks
/// the last tap (the point at infinity). Unused columns are zero.
fn g_matrix(r: usize) -> [[f32; 5]; 6] {
    let mut g = [[0.0f32; 5]; 6];
    for (a, row) in g.iter_mut().enumerate().take(5) {
        for (i, v) in row.iter_mut().enumerate().take(r) {
            *v = SCALE[a] * POINTS[a].powi(i as i32);
        }
    }
    g[5][r - 1] = 1.0;
    g
}

/// The kernel of a [`Geometry::run`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Weight<'a> {
    /// `cout x cin x r x r`, or, with `flip`, the weight of the forward
    /// convolution whose backward-data pass this is (`cin x cout x r x r`,
    /// applied rotated by 180 degrees): transformed by the run, in its
    /// scratch.
    Plain { weight: &'a [f32], flip: bool },
    /// Transformed before, by [`Geometry::transform`].
    Transformed(&'a [f32]),
}

/// How a run is cut: tiles per block and threads.
#[derive(Clone, Copy, Debug)]
struct Cut {
    block: usize,
    threads: usize,
}

impl Geometry {
    /// The backward-data pass of this (forward) geometry as a forward
    /// Winograd convolution; `None` when a padding exceeds `r - 1`.
    pub fn backward_data(&self) -> Option<Geometry> {
        let span = self.r - 1;
        let pad_bottom = (self.oh + span).checked_sub(self.h + self.pad_top)?;
        let pad_right = (self.ow + span).checked_sub(self.w + self.pad_left)?;
        Some(Geometry {
            r: self.r,
            batch: self.batch,
            cin: self.cout,
            h: self.oh,
            w: self.ow,
            cout: self.cin,
            oh: self.h,
            ow: self.w,
            pad_top: span.checked_sub(self.pad_top)?,
            pad_left: span.checked_sub(self.pad_left)?,
        })
        .filter(|_| pad_bottom <= span && pad_right <= span)
    }

    /// Output tile side: 4 for 3x3 kernels, 2 for 5x5 (`m + r - 1 = 6`).
    fn m(&self) -> usize {
        7 - self.r
    }
    fn tiles_y(&self) -> usize {
        self.oh.div_ceil(self.m())
    }
    fn tiles_x(&self) -> usize {
        self.ow.div_ceil(self.m())
    }
    pub fn tiles(&self) -> usize {
        self.batch * self.tiles_y() * self.tiles_x()
    }
    /// Output channels rounded up to the micro-kernel's row block.
    fn coutp(&self) -> usize {
        self.cout.next_multiple_of(ROWS)
    }
    /// Floats of the transformed kernel `U`: `36 x OCp x C`.
    fn u_len(&self) -> usize {
        POS * self.coutp() * self.cin
    }
    /// Width of the zero-padded input rows: every tile's six columns.
    fn pad_w(&self) -> usize {
        self.m() * self.tiles_x() + 6 - self.m()
    }
    /// Floats of the zero-padded input rows one image's share of a block
    /// spans.
    fn pad_len(&self, block: usize) -> usize {
        let rows = (self.tiles_y() - 1).min((block - 1) / self.tiles_x() + 1);
        (self.m() * rows + 6) * self.pad_w()
    }
    /// V, M (each with a cache line between positions), the block's
    /// untransformed tiles and the padded input rows (blocks are whole
    /// micro-kernel chunks, so vector loops end inside them).
    fn thread_len(&self, block: usize) -> usize {
        POS * ((self.cin + self.coutp()) * block + 2 * SKEW) + POS * block + self.pad_len(block)
    }

    fn cut(&self, threads: usize) -> Cut {
        let per_tile = 4 * POS * (self.cin + self.coutp());
        self.split(
            cpu::cache_sizes().l2 / 2 / per_tile,
            CHUNK,
            MAX_BLOCK,
            threads,
        )
    }

    /// Blocks of about `fit` tiles (clamped to `min ..= max`, whole chunks),
    /// as many per thread on every thread.
    fn split(&self, fit: usize, min: usize, max: usize, threads: usize) -> Cut {
        let tiles = self.tiles();
        let threads = threads.clamp(1, tiles.div_ceil(min).max(1));
        let fit = fit.clamp(min, max);
        // At least one block, so an empty batch still has a block size.
        let blocks = tiles.div_ceil(fit).next_multiple_of(threads).max(1);
        Cut {
            block: tiles.div_ceil(blocks).next_multiple_of(CHUNK).max(CHUNK),
            threads,
        }
    }

    /// Scratch floats of a run on up to `threads` threads.
    pub fn scratch_len(&self, threads: usize) -> usize {
        let cut = self.cut(threads);
        self.u_len() + cut.threads * self.thread_len(cut.block)
    }

    /// The transformed kernel `U` of `weight` (`cout x cin x r x r`), for
    /// runs of [`Weight::Transformed`]: it depends on the channels and the
    /// kernel side only.
    pub fn transform(&self, isa: Isa, weight: &[f32], threads: usize) -> Vec<f32> {
        assert_eq!(
            weight.len(),
            self.cin * self.cout * self.r * self.r,
            "winograd: weight size"
        );
        let mut u = vec![0.0; self.u_len()];
        self.transform_weights(isa, weight, false, &mut u, threads);
        u
    }

    /// Whether `u` is [`Geometry::transform`]'s output for these channels
    /// and kernel side (by size: the caller keeps the kernel's identity).
    pub fn fits_transformed(&self, u: &[f32]) -> bool {
        u.len() == self.u_len()
    }

    /// `output = conv(input, weight) + bias`, then `tail` (added residual,
    /// ReLU). Sizes are the caller's to check; `scratch` holds at least
    /// [`Geometry::scratch_len`] floats.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        isa: Isa,
        threads: usize,
        input: &[f32],
        weight: Weight<'_>,
        bias: Option<&[f32]>,
        tail: Tail<'_>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) {
        let cut = self.cut(threads);
        let weight_len = match weight {
            Weight::Plain { weight, .. } => weight.len() == self.cin * self.cout * self.r * self.r,
            Weight::Transformed(u) => self.fits_transformed(u),
        };
        assert!(
            input.len() == self.batch * self.cin * self.h * self.w
                && weight_len
                && output.len() == self.batch * self.cout * self.oh * self.ow
                && bias.is_none_or(|b| b.len() == self.cout)
                && tail.residual.is_none_or(|r| r.len() == output.len())
                && scratch.len() >= self.scratch_len(threads),
            "winograd: buffer sizes do not match {self:?}"
        );
        let (u, rest) = scratch.split_at_mut(self.u_len());
        let u: &[f32] = match weight {
            Weight::Plain { weight, flip } => {
                self.transform_weights(isa, weight, flip, u, cut.threads);
                u
            }
            Weight::Transformed(u) => u,
        };
        let blocks = self.tiles().div_ceil(cut.block);
        let per = blocks.div_ceil(cut.threads);
        let thread_len = self.thread_len(cut.block);
        let out = SyncPtr(output.as_mut_ptr());
        let rest = SyncPtr(rest.as_mut_ptr());
        pool::run_tasks(cut.threads, |t| {
            // SAFETY: each task owns its own `thread_len` slice of scratch.
            let work = unsafe {
                std::slice::from_raw_parts_mut(rest.get().add(t * thread_len), thread_len)
            };
            for b in (t * per..((t + 1) * per).min(blocks)).map(|b| b * cut.block) {
                let job = Block {
                    tiles: Tiles {
                        g: self,
                        t0: b,
                        nt: cut.block.min(self.tiles() - b),
                        stride: cut.block,
                    },
                    u,
                    input,
                    bias,
                    tail,
                    out,
                    work: work.as_mut_ptr(),
                };
                // SAFETY: `isa` is supported (the plan checked it); the block
                // writes only its own tiles' outputs, disjoint from every
                // other block's; `work` holds `thread_len` floats.
                unsafe { dispatch(isa, job) };
            }
        });
    }

    /// `U[k][ob][c][r] = (G g Gᵀ)[k]` for output channel `ob * 8 + r` (zero
    /// when padded) and input channel `c`, eight output channels at a time.
    fn transform_weights(
        &self,
        isa: Isa,
        weight: &[f32],
        flip: bool,
        u: &mut [f32],
        threads: usize,
    ) {
        let blocks = self.coutp() / ROWS;
        let per = blocks.div_ceil(threads.max(1));
        let up = SyncPtr(u.as_mut_ptr());
        pool::run_tasks(threads.min(blocks), |t| {
            let job = Weights {
                g: self,
                weight,
                flip,
                u: up,
                blocks: t * per..((t + 1) * per).min(blocks),
            };
            // SAFETY: `isa` is supported; task `t` writes only its own row blocks.
            unsafe { dispatch(isa, job) };
        });
    }

    /// Tiles per block and threads of a weight-gradient run: blocks of 64 to
    /// 1024 tiles whose `V` and `Z` take about [`GRAD_BUDGET`] bytes (the
    /// products stream them through the GEMM's packing; longer blocks read
    /// and write the `dU` accumulators fewer times).
    fn grad_cut(&self, threads: usize) -> Cut {
        let per_tile = 4 * POS * (self.cin + self.cout);
        self.split(GRAD_BUDGET / per_tile, 2 * CHUNK, 32 * CHUNK, threads)
    }

    /// One thread's share of a weight-gradient run: its `dU` (36 x cout x
    /// cin), V, Z, the tile rows and the padded rows.
    fn grad_thread_len(&self, block: usize) -> usize {
        POS * self.cout * self.cin
            + POS * ((self.cin + self.cout) * block + 2 * SKEW)
            + POS * block
            + self.pad_len(block)
    }

    /// Scratch floats of a weight-gradient run on up to `threads` threads.
    pub fn weight_grad_scratch_len(&self, threads: usize) -> usize {
        let cut = self.grad_cut(threads);
        cut.threads * self.grad_thread_len(cut.block)
    }

    /// `grad_weight += dL/dW` (`cout x cin x 3 x 3`) from `input` and
    /// `grad_output`: per position `k`, `dU[k] = Σ_tiles Z[k] V[k]ᵀ` with
    /// `Z = A dY Aᵀ` and `V = Bᵀ d B` (the forward pass's `Y = Aᵀ (U ⊙ V)
    /// A` differentiated), summed over threads, then `dW = Gᵀ dU G`. The
    /// products run on the SGEMM, single-threaded per task.
    pub fn run_weight_grad(
        &self,
        isa: Isa,
        threads: usize,
        input: &[f32],
        grad_output: &[f32],
        grad_weight: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        let cut = self.grad_cut(threads);
        assert!(
            input.len() == self.batch * self.cin * self.h * self.w
                && grad_output.len() == self.batch * self.cout * self.oh * self.ow
                && grad_weight.len() == self.cin * self.cout * self.r * self.r
                && scratch.len() >= self.weight_grad_scratch_len(threads),
            "winograd: buffer sizes do not match {self:?}"
        );
        let (cin, cout, st) = (self.cin, self.cout, cut.block);
        let (vk, zk, du_len) = (cin * st + SKEW, cout * st + SKEW, POS * cout * cin);
        let blocks = self.tiles().div_ceil(st);
        let per = blocks.div_ceil(cut.threads);
        let thread_len = self.grad_thread_len(st);
        let base = SyncPtr(scratch.as_mut_ptr());
        let failed = std::sync::Mutex::new(None);
        pool::run_tasks(cut.threads, |t| {
            // SAFETY: each task owns its own `thread_len` slice of scratch.
            let work = unsafe {
                std::slice::from_raw_parts_mut(base.get().add(t * thread_len), thread_len)
            };
            let (du, work) = work.split_at_mut(du_len);
            let (v, work) = work.split_at_mut(POS * vk);
            let (z, work) = work.split_at_mut(POS * zk);
            let (d, pad) = work.split_at_mut(POS * st);
            du.fill(0.0);
            for b in (t * per..((t + 1) * per).min(blocks)).map(|b| b * st) {
                let tiles = Tiles {
                    g: self,
                    t0: b,
                    nt: st.min(self.tiles() - b),
                    stride: st,
                };
                let (dp, vp, zp) = (d.as_mut_ptr(), v.as_mut_ptr(), z.as_mut_ptr());
                // SAFETY: `isa` is supported; V, Z, d and pad are this task's
                // and sized by `grad_thread_len`.
                unsafe {
                    let pad = &mut *pad;
                    dispatch(
                        isa,
                        InputTransform {
                            tiles,
                            input,
                            v: vp,
                            kstride: vk,
                            d: dp,
                            pad,
                        },
                    );
                    let pad = &mut *pad;
                    dispatch(
                        isa,
                        GradTransform {
                            tiles,
                            grad_output,
                            z: zp,
                            kstride: zk,
                            d: dp,
                            pad,
                        },
                    );
                }
                for k in 0..POS {
                    // dU[k] (cout x cin) += Z[k] (cout x nt) V[k]ᵀ (nt x cin).
                    let res = Gemm::new(cout, cin, tiles.nt)
                        .trans_b(Transpose::Yes)
                        .lda(st)
                        .ldb(st)
                        .beta(1.0)
                        .parallelism(Parallelism::Threads(1))
                        .run(
                            &z[k * zk..],
                            &v[k * vk..],
                            &mut du[k * cout * cin..][..cout * cin],
                        );
                    if let Err(e) = res {
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        return;
                    }
                }
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        // dW[o][c] += Gᵀ (Σ_threads dU[.][o][c]) G, output channels split
        // over the threads, eight input channels (contiguous in dU) at a time.
        let parts: Vec<&[f32]> = scratch
            .chunks(thread_len)
            .take(cut.threads)
            .map(|p| &p[..du_len])
            .collect();
        let (r, g) = (self.r, g_matrix(self.r));
        let gw = SyncPtr(grad_weight.as_mut_ptr());
        let per_o = cout.div_ceil(threads.max(1));
        pool::run_tasks(cout.div_ceil(per_o), |t| {
            for o in t * per_o..((t + 1) * per_o).min(cout) {
                for c0 in (0..cin).step_by(ROWS) {
                    let n = ROWS.min(cin - c0);
                    let mut d = [[0.0f32; ROWS]; POS];
                    for part in &parts {
                        for (k, dk) in d.iter_mut().enumerate() {
                            let src = &part[(k * cout + o) * cin + c0..][..n];
                            dk.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
                        }
                    }
                    let x = back_transform(&d, &g, r);
                    for (l, c) in (c0..c0 + n).enumerate() {
                        for (tap, xt) in x.iter().enumerate().take(r * r) {
                            // SAFETY: kernel (o, c) is inside `grad_weight`
                            // and written only by the task of `o`.
                            unsafe { *gw.get().add((o * cin + c) * r * r + tap) += xt[l] };
                        }
                    }
                }
            }
        });
        Ok(())
    }
}

/// Input channels whose transformed kernels are staged before they are
/// written out.
const STAGE: usize = 16;

/// The kernel transform of output-channel blocks `blocks`.
struct Weights<'a> {
    g: &'a Geometry,
    weight: &'a [f32],
    flip: bool,
    u: SyncPtr,
    blocks: std::ops::Range<usize>,
}

impl Kernel for Weights<'_> {
    type Out = ();

    /// Plain arrays of eight lanes, vectorised by the compiler under the
    /// dispatcher's target features.
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let (cin, cout, nb) = (self.g.cin, self.g.cout, self.g.coutp() / ROWS);
        let (r, gm) = (self.g.r, g_matrix(self.g.r));
        // Channels staged per pass, so the 36 positions (far apart in `U`)
        // are written as contiguous runs rather than 36 aliasing streams.
        let mut staged = [[[0.0f32; ROWS]; STAGE]; POS];
        for ob in self.blocks {
            for c0 in (0..cin).step_by(STAGE) {
                let n = STAGE.min(cin - c0);
                for (ci, c) in (c0..c0 + n).enumerate() {
                    // g[i][j][l]: tap (i, j) of output channel ob * 8 + l.
                    // Lanes innermost: strided loads (gathers), not
                    // scattered stores.
                    let mut g = [[[0.0f32; ROWS]; 5]; 5];
                    let lanes = ROWS.min(cout - ob * ROWS);
                    let o0 = ob * ROWS;
                    for (i, row) in g.iter_mut().enumerate().take(r) {
                        for (j, v) in row.iter_mut().enumerate().take(r) {
                            if self.flip {
                                let at = (c * cout + o0) * r * r + (r - 1 - i) * r + r - 1 - j;
                                gather(v, &self.weight[at..], r * r, lanes);
                            } else {
                                let at = (o0 * cin + c) * r * r + i * r + j;
                                gather(v, &self.weight[at..], cin * r * r, lanes);
                            }
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    if S::LANES >= ROWS {
                        // SAFETY: AVX2 and FMA come with the ISA levels
                        // whose vectors hold eight lanes or more.
                        unsafe {
                            match r {
                                3 => kernel_tile_avx2::<3>(&g, &gm, &mut staged, ci),
                                _ => kernel_tile_avx2::<5>(&g, &gm, &mut staged, ci),
                            }
                        }
                        continue;
                    }
                    match r {
                        3 => kernel_tile::<3>(&g, &gm, &mut staged, ci),
                        _ => kernel_tile::<5>(&g, &gm, &mut staged, ci),
                    }
                }
                for (k, st) in staged.iter().enumerate() {
                    // SAFETY: row block `ob` belongs to this task; the run
                    // `c0 .. c0 + n` of position `k` lies inside `U`.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            self.u.get().add(((k * nb + ob) * cin + c0) * ROWS),
                            n * ROWS,
                        )
                    };
                    dst.copy_from_slice(st[..n].as_flattened());
                }
            }
        }
    }
}

/// `Gᵀ D G` for eight kernels at once (lane `l` of `d[a * 6 + b]` is
/// position `(a, b)` of kernel `l`): tap `(i, j)` at `[i * r + j]`.
fn back_transform(d: &[[f32; ROWS]; POS], g: &[[f32; 5]; 6], r: usize) -> [[f32; ROWS]; 25] {
    // gu[i][b] = Σ_a G[a][i] D[a][b].
    let mut gu = [[[0.0f32; ROWS]; 6]; 5];
    for (i, gui) in gu.iter_mut().enumerate().take(r) {
        for (b, v) in gui.iter_mut().enumerate() {
            for (a, grow) in g.iter().enumerate() {
                let w = grow[i];
                for l in 0..ROWS {
                    v[l] += w * d[a * 6 + b][l];
                }
            }
        }
    }
    // x[i][j] = Σ_b gu[i][b] G[b][j].
    let mut x = [[0.0f32; ROWS]; 25];
    for (i, gui) in gu.iter().enumerate().take(r) {
        for j in 0..r {
            let v = &mut x[i * r + j];
            for (b, u) in gui.iter().enumerate() {
                let w = g[b][j];
                for l in 0..ROWS {
                    v[l] += u[l] * w;
                }
            }
        }
    }
    x
}

/// `v[l] = w[l * stride]` for the first `lanes` lanes (all eight, a
/// constant trip count the compiler turns into a gather, or fewer).
#[inline(always)]
fn gather(v: &mut [f32; ROWS], w: &[f32], stride: usize, lanes: usize) {
    if lanes == ROWS {
        let w = &w[..(ROWS - 1) * stride + 1];
        for (l, v) in v.iter_mut().enumerate() {
            *v = w[l * stride];
        }
    } else {
        for (l, v) in v.iter_mut().enumerate().take(lanes) {
            *v = w[l * stride];
        }
    }
}

/// `(G g Gᵀ)` for eight kernels at once (lane `l` of `g[i][j]` is tap
/// `(i, j)` of kernel `l`; taps `>= R` are not read), into
/// `staged[a * 6 + b][ci]`. Every loop runs over the eight lanes innermost,
/// so the compiler vectorises it.
#[inline(always)]
fn kernel_tile<const R: usize>(
    g: &[[[f32; ROWS]; 5]; 5],
    gm: &[[f32; 5]; 6],
    staged: &mut [[[f32; ROWS]; STAGE]; POS],
    ci: usize,
) {
    // gg = G g: 6 x R.
    let mut gg = [[[0.0f32; ROWS]; R]; 6];
    for (a, ggrow) in gg.iter_mut().enumerate() {
        for (j, v) in ggrow.iter_mut().enumerate() {
            for (i, grow) in g.iter().enumerate().take(R) {
                let w = gm[a][i];
                for l in 0..ROWS {
                    v[l] += w * grow[j][l];
                }
            }
        }
    }
    // gg Gᵀ: 6 x 6.
    for (a, ggrow) in gg.iter().enumerate() {
        for (b, grow) in gm.iter().enumerate() {
            let mut v = [0.0f32; ROWS];
            for (j, x) in ggrow.iter().enumerate() {
                let w = grow[j];
                for l in 0..ROWS {
                    v[l] += x[l] * w;
                }
            }
            staged[a * 6 + b][ci] = v;
        }
    }
}

/// [`kernel_tile`] with AVX2 vectors of the eight lanes and FMA.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_tile_avx2<const R: usize>(
    g: &[[[f32; ROWS]; 5]; 5],
    gm: &[[f32; 5]; 6],
    staged: &mut [[[f32; ROWS]; STAGE]; POS],
    ci: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY: every pointer is to an array of eight floats.
    unsafe {
        let gv: [[__m256; R]; R] =
            std::array::from_fn(|i| std::array::from_fn(|j| _mm256_loadu_ps(g[i][j].as_ptr())));
        let mut gg = [[_mm256_setzero_ps(); R]; 6];
        for (a, ggrow) in gg.iter_mut().enumerate() {
            for (j, v) in ggrow.iter_mut().enumerate() {
                for (i, grow) in gv.iter().enumerate() {
                    *v = _mm256_fmadd_ps(_mm256_set1_ps(gm[a][i]), grow[j], *v);
                }
            }
        }
        for (a, ggrow) in gg.iter().enumerate() {
            for (b, grow) in gm.iter().enumerate() {
                let mut v = _mm256_setzero_ps();
                for (j, x) in ggrow.iter().enumerate() {
                    v = _mm256_fmadd_ps(*x, _mm256_set1_ps(grow[j]), v);
                }
                _mm256_storeu_ps(staged[a * 6 + b][ci].as_mut_ptr(), v);
            }
        }
    }
}

/// Tiles `t0 .. t0 + nt` (over images and tile rows, flattened), held in
/// rows of `stride` floats.
#[derive(Clone, Copy)]
struct Tiles<'a> {
    g: &'a Geometry,
    t0: usize,
    nt: usize,
    stride: usize,
}

/// The block's tiles of one image: tiles `first .. first + len` of image
/// `img`, the first at index `at` of the block.
struct Run {
    img: usize,
    first: usize,
    len: usize,
    at: usize,
}

impl Tiles<'_> {
    fn runs(self) -> impl Iterator<Item = Run> {
        let per_img = self.g.tiles_y() * self.g.tiles_x();
        let end = self.t0 + self.nt;
        let mut t = self.t0;
        std::iter::from_fn(move || {
            if t >= end {
                return None;
            }
            let (img, first) = (t / per_img, t % per_img);
            let len = (per_img - first).min(end - t);
            let run = Run {
                img,
                first,
                len,
                at: t - self.t0,
            };
            t += len;
            Some(run)
        })
    }

    /// Whole vectors of tiles: `nt` rounded up to the lanes (inside `stride`,
    /// a multiple of 32).
    fn lanes<S: Simd>(self) -> usize {
        self.nt.next_multiple_of(S::LANES)
    }

    /// Writes the `SIZE x SIZE` windows of `run` in `plane` (`h x w`, with
    /// `top` and `left` zero rows and columns before it) at tile origins
    /// `(m ty, m tx)` (`m` the output tile side) as rows of the block's
    /// tiles: `d[(r * SIZE + q) * stride + tile]`, zero outside the plane.
    /// Reads them from a zero-padded copy of the rows the run spans, in
    /// `pad`.
    #[inline(always)]
    unsafe fn gather<const SIZE: usize>(
        self,
        plane: &[f32],
        (h, w): (usize, usize),
        (top, left): (usize, usize),
        run: &Run,
        d: *mut f32,
        pad: &mut [f32],
    ) {
        let tx_n = self.g.tiles_x();
        let step = self.g.m();
        let pw = step * tx_n + SIZE - step;
        let (ty0, ty1) = (run.first / tx_n, (run.first + run.len - 1) / tx_n);
        // Padded column x holds plane column x - left.
        let (lo, hi) = (left.min(pw), (left + w).min(pw));
        for (i, prow) in pad
            .chunks_exact_mut(pw)
            .take(step * (ty1 - ty0) + SIZE)
            .enumerate()
        {
            let y = (step * ty0 + i) as isize - top as isize;
            if y < 0 || y as usize >= h {
                prow.fill(0.0);
                continue;
            }
            prow[..lo].fill(0.0);
            prow[lo..hi].copy_from_slice(&plane[y as usize * w..][..hi - lo]);
            prow[hi..].fill(0.0);
        }
        let st = self.stride;
        for t in 0..run.len {
            let (ty, tx) = ((run.first + t) / tx_n, (run.first + t) % tx_n);
            let src = &pad[step * (ty - ty0) * pw + step * tx..];
            for r in 0..SIZE {
                for (q, &x) in src[r * pw..][..SIZE].iter().enumerate() {
                    // SAFETY: caller's contract: SIZE² rows of `stride`
                    // floats at `d`; tile `< nt <= stride`.
                    unsafe { *d.add((r * SIZE + q) * st + run.at + t) = x };
                }
            }
        }
    }
}

/// The input transform of a block of tiles: `V[k][c][tile]` at
/// `v + k * kstride + c * stride`, with `d` (36 rows) and `pad` as work space.
struct InputTransform<'a> {
    tiles: Tiles<'a>,
    input: &'a [f32],
    v: *mut f32,
    kstride: usize,
    d: *mut f32,
    pad: &'a mut [f32],
}

impl Kernel for InputTransform<'_> {
    type Out = ();

    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let (tiles, g, st) = (self.tiles, self.tiles.g, self.tiles.stride);
        for c in 0..g.cin {
            for run in tiles.runs() {
                let plane = &self.input[(run.img * g.cin + c) * g.h * g.w..][..g.h * g.w];
                // SAFETY: `d` holds 36 rows of `stride` floats.
                unsafe {
                    tiles.gather::<6>(
                        plane,
                        (g.h, g.w),
                        (g.pad_top, g.pad_left),
                        &run,
                        self.d,
                        self.pad,
                    )
                };
            }
            for t in (0..tiles.lanes::<S>()).step_by(S::LANES) {
                // SAFETY: `V` holds 36 rows of `kstride >= cin * stride`.
                unsafe { input_tile::<S>(self.d.add(t), st, self.v.add(c * st + t), self.kstride) };
            }
        }
    }
}

/// One block of the forward pass: input transform, 36 products, output
/// transform.
struct Block<'a> {
    tiles: Tiles<'a>,
    u: &'a [f32],
    input: &'a [f32],
    bias: Option<&'a [f32]>,
    tail: Tail<'a>,
    out: SyncPtr,
    work: *mut f32,
}

impl Kernel for Block<'_> {
    type Out = ();

    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        // SAFETY: forwarded.
        unsafe {
            match self.tiles.g.m() {
                4 => self.run_m::<S, 4>(),
                _ => self.run_m::<S, 2>(),
            }
        }
    }
}

impl Block<'_> {
    /// The block for output tiles of `M x M`.
    #[inline(always)]
    unsafe fn run_m<S: Simd, const M: usize>(self) {
        let (tiles, g) = (self.tiles, self.tiles.g);
        let (cin, coutp, stride) = (g.cin, g.coutp(), tiles.stride);
        let (vk, mk) = (cin * stride + SKEW, coutp * stride + SKEW);
        let lanes = tiles.lanes::<S>();
        // SAFETY: `work` holds V (36 x vk), M (36 x mk), the 36 x stride tile
        // rows and the padded rows (`Geometry::thread_len`); every index stays
        // inside them because tiles are `< nt <= stride` and vectors end by
        // `nt` rounded up to 32, which `stride` is a multiple of.
        unsafe {
            let v = self.work;
            let m = v.add(POS * vk);
            let d = m.add(POS * mk);
            let pad = std::slice::from_raw_parts_mut(d.add(POS * stride), g.pad_len(stride));
            InputTransform {
                tiles,
                input: self.input,
                v,
                kstride: vk,
                d,
                pad,
            }
            .run::<S>();
            // Products: M[k] = U[k] V[k].
            let wide = S::LANES >= 16;
            let cols = tiles
                .nt
                .next_multiple_of(if wide { 2 } else { 1 } * S::LANES);
            for k in 0..POS {
                let vk = v.add(k * vk);
                for ob in 0..coutp / ROWS {
                    let uk = self
                        .u
                        .as_ptr()
                        .add(((k * (coutp / ROWS) + ob) * cin) * ROWS);
                    let mk = m.add(k * mk + ob * ROWS * stride);
                    let mut col = 0;
                    while col < cols {
                        if wide {
                            micro::<S, 2>(cin, uk, vk.add(col), stride, mk.add(col));
                            col += 2 * S::LANES;
                        } else {
                            micro::<S, 1>(cin, uk, vk.add(col), stride, mk.add(col));
                            col += S::LANES;
                        }
                    }
                }
            }
            // Output transform into 16 tile rows, then scattered to the planes.
            for o in 0..g.cout {
                let bias = S::splat(self.bias.map_or(0.0, |b| b[o]));
                for t in (0..lanes).step_by(S::LANES) {
                    output_tile::<S, M>(m.add(o * stride + t), mk, bias, d.add(t), stride);
                }
                for run in tiles.runs() {
                    self.scatter_tiles::<M>(o, &run, d);
                }
            }
        }
    }
}

impl Block<'_> {
    /// Copies `run`'s `M x M` output tiles from `q[(i * M + j) * stride +
    /// tile]` into output channel `o`, clipped to the plane.
    #[inline(always)]
    unsafe fn scatter_tiles<const M: usize>(&self, o: usize, run: &Run, q: *const f32) {
        let (g, st) = (self.tiles.g, self.tiles.stride);
        let tx_n = g.tiles_x();
        // SAFETY: the run's tiles are this block's alone; rows and columns
        // are clipped to the plane, so `at` indexes the output, which the
        // residual is as long as (asserted by `run`).
        unsafe {
            let plane_at = (run.img * g.cout + o) * g.oh * g.ow;
            let plane = self.out.get().add(plane_at);
            for t in 0..run.len {
                let (ty, tx) = ((run.first + t) / tx_n, (run.first + t) % tx_n);
                let (rows, cols) = ((g.oh - M * ty).min(M), (g.ow - M * tx).min(M));
                let at = M * ty * g.ow + M * tx;
                let dst = plane.add(at);
                let src = q.add(run.at + t);
                if !self.tail.is_none() {
                    for i in 0..rows {
                        for j in 0..cols {
                            let v = *src.add((i * M + j) * st);
                            let at = plane_at + at + i * g.ow + j;
                            *dst.add(i * g.ow + j) = self.tail.apply(v, at);
                        }
                    }
                } else if rows == M && cols == M {
                    for i in 0..M {
                        for j in 0..M {
                            *dst.add(i * g.ow + j) = *src.add((i * M + j) * st);
                        }
                    }
                } else {
                    for i in 0..rows {
                        for j in 0..cols {
                            *dst.add(i * g.ow + j) = *src.add((i * M + j) * st);
                        }
                    }
                }
            }
        }
    }
}

/// The output-gradient transform of a block of tiles: `Z[k][o][tile] = (A
/// dY Aᵀ)[k]` at `z + k * kstride + o * stride`, with `d` (`m²` of its 36
/// rows) and `pad` as work space.
struct GradTransform<'a> {
    tiles: Tiles<'a>,
    grad_output: &'a [f32],
    z: *mut f32,
    kstride: usize,
    d: *mut f32,
    pad: &'a mut [f32],
}

impl Kernel for GradTransform<'_> {
    type Out = ();

    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        // SAFETY: forwarded.
        unsafe {
            match self.tiles.g.m() {
                4 => self.run_m::<S, 4>(),
                _ => self.run_m::<S, 2>(),
            }
        }
    }
}

impl GradTransform<'_> {
    #[inline(always)]
    unsafe fn run_m<S: Simd, const M: usize>(self) {
        let (tiles, g, st) = (self.tiles, self.tiles.g, self.tiles.stride);
        let p = g.oh * g.ow;
        for o in 0..g.cout {
            for run in tiles.runs() {
                let plane = &self.grad_output[(run.img * g.cout + o) * p..][..p];
                // SAFETY: `d` holds 36 >= M² rows of `stride` floats.
                unsafe { tiles.gather::<M>(plane, (g.oh, g.ow), (0, 0), &run, self.d, self.pad) };
            }
            for t in (0..tiles.lanes::<S>()).step_by(S::LANES) {
                // SAFETY: `Z` holds 36 rows of `kstride >= cout * stride`.
                unsafe {
                    grad_tile::<S, M>(self.d.add(t), st, self.z.add(o * st + t), self.kstride)
                };
            }
        }
    }
}

/// `A y Aᵀ` for `LANES` tiles: `y[i][j]` at `d[(i * M + j) * dstride]`,
/// result `k = a * 6 + b` at `z[k * kstride]`.
#[inline(always)]
unsafe fn grad_tile<S: Simd, const M: usize>(
    d: *const f32,
    dstride: usize,
    z: *mut f32,
    kstride: usize,
) {
    // SAFETY: caller's contract.
    unsafe {
        let mut t = [[S::splat(0.0); M]; 6];
        for j in 0..M {
            let mut col = [S::splat(0.0); M];
            for (i, x) in col.iter_mut().enumerate() {
                *x = S::load(d.add((i * M + j) * dstride));
            }
            for (row, a) in t.iter_mut().zip(grad_1d::<S, M>(col)) {
                row[j] = a;
            }
        }
        for (a, row) in t.iter().enumerate() {
            for (b, x) in grad_1d::<S, M>(*row).iter().enumerate() {
                S::store(z.add((a * 6 + b) * kstride), *x);
            }
        }
    }
}

/// `A y` for one column of `M` (`A` = `Aᵀ` transposed, 6 x M).
#[inline(always)]
unsafe fn grad_1d<S: Simd, const M: usize>(y: [S::V; M]) -> [S::V; 6] {
    // SAFETY: arithmetic only.
    unsafe {
        let zero = S::splat(0.0);
        let y: [S::V; 4] = std::array::from_fn(|i| if i < M { y[i] } else { zero });
        if M == 2 {
            // Aᵀ rows (1, 1, 1, 1, 1, 0) and (0, 1, -1, 2, -2, 1).
            let two = S::mul(S::splat(2.0), y[1]);
            return [
                y[0],
                S::add(y[0], y[1]),
                S::sub(y[0], y[1]),
                S::add(y[0], two),
                S::sub(y[0], two),
                y[1],
            ];
        }
        let p = S::add(y[0], y[2]);
        let q = S::add(y[1], y[3]);
        let r = S::fma(S::splat(4.0), y[2], y[0]);
        let s = S::fma(S::splat(8.0), y[3], S::mul(S::splat(2.0), y[1]));
        [
            y[0],
            S::add(p, q),
            S::sub(p, q),
            S::add(r, s),
            S::sub(r, s),
            y[3],
        ]
    }
}

/// `Bᵀ d B` for `LANES` tiles: `d[r][s]` at `d[(r * 6 + s) * dstride]`,
/// result `k = i * 6 + j` at `v[k * kstride]`.
#[inline(always)]
unsafe fn input_tile<S: Simd>(d: *const f32, dstride: usize, v: *mut f32, kstride: usize) {
    // SAFETY: caller's contract.
    unsafe {
        let mut t = [[S::splat(0.0); 6]; 6];
        for s in 0..6 {
            let mut col = [S::splat(0.0); 6];
            for (r, x) in col.iter_mut().enumerate() {
                *x = S::load(d.add((r * 6 + s) * dstride));
            }
            for (row, a) in t.iter_mut().zip(input_1d::<S>(col)) {
                row[s] = a;
            }
        }
        for (i, row) in t.iter().enumerate() {
            let a = input_1d::<S>(*row);
            for (j, x) in a.iter().enumerate() {
                S::store(v.add((i * 6 + j) * kstride), *x);
            }
        }
    }
}

/// `Bᵀ d` for one column of six.
#[inline(always)]
unsafe fn input_1d<S: Simd>(d: [S::V; 6]) -> [S::V; 6] {
    // SAFETY: arithmetic only.
    unsafe {
        let (four, five, two) = (S::splat(4.0), S::splat(-5.0), S::splat(2.0));
        let m4 = S::splat(-4.0);
        let a = S::fma(m4, d[2], d[4]);
        let b = S::fma(m4, d[1], d[3]);
        let c = S::sub(d[4], d[2]);
        let e = S::mul(two, S::sub(d[3], d[1]));
        [
            S::fma(four, d[0], S::fma(five, d[2], d[4])),
            S::add(a, b),
            S::sub(a, b),
            S::add(c, e),
            S::sub(c, e),
            S::fma(four, d[1], S::fma(five, d[3], d[5])),
        ]
    }
}

/// `Aᵀ m` for one column of six: `M` outputs.
#[inline(always)]
unsafe fn output_1d<S: Simd, const M: usize>(m: [S::V; 6]) -> [S::V; M] {
    // SAFETY: arithmetic only.
    unsafe {
        let p = S::add(m[1], m[2]);
        let q = S::sub(m[1], m[2]);
        let r = S::add(m[3], m[4]);
        let s = S::sub(m[3], m[4]);
        let all: [S::V; 4] = if M == 2 {
            // Aᵀ rows (1, 1, 1, 1, 1, 0) and (0, 1, -1, 2, -2, 1).
            let zero = S::splat(0.0);
            [
                S::add(S::add(m[0], p), r),
                S::add(S::fma(S::splat(2.0), s, q), m[5]),
                zero,
                zero,
            ]
        } else {
            [
                S::add(S::add(m[0], p), r),
                S::fma(S::splat(2.0), s, q),
                S::fma(S::splat(4.0), r, p),
                S::add(S::fma(S::splat(8.0), s, q), m[5]),
            ]
        };
        std::array::from_fn(|i| all[i])
    }
}

/// `Aᵀ M A + bias` for `LANES` tiles: `M[k]` at `m[k * kstride]`, result
/// `(i, j)` at `q[(i * M + j) * qstride]` (`M` the output tile side).
#[inline(always)]
unsafe fn output_tile<S: Simd, const M: usize>(
    m: *const f32,
    kstride: usize,
    bias: S::V,
    q: *mut f32,
    qstride: usize,
) {
    // SAFETY: caller's contract.
    unsafe {
        let mut t = [[S::splat(0.0); 6]; M];
        for col in 0..6 {
            let mut x = [S::splat(0.0); 6];
            for (r, v) in x.iter_mut().enumerate() {
                *v = S::load(m.add((r * 6 + col) * kstride));
            }
            for (row, a) in t.iter_mut().zip(output_1d::<S, M>(x)) {
                row[col] = a;
            }
        }
        for (i, row) in t.iter().enumerate() {
            for (j, y) in output_1d::<S, M>(*row).iter().enumerate() {
                S::store(q.add((i * M + j) * qstride), S::add(*y, bias));
            }
        }
    }
}

/// `M[0..8][0..NV lanes] = U (8 x c, as c x 8) · V (c x NV lanes, row stride `ld`)`.
#[inline(always)]
unsafe fn micro<S: Simd, const NV: usize>(
    c: usize,
    u: *const f32,
    v: *const f32,
    ld: usize,
    m: *mut f32,
) {
    // SAFETY: caller's contract: `u` holds c x 8, `v` and `m` rows of NV vectors.
    unsafe {
        let mut acc = [[S::splat(0.0); NV]; ROWS];
        for ci in 0..c {
            let mut x = [S::splat(0.0); NV];
            for (j, x) in x.iter_mut().enumerate() {
                *x = S::load(v.add(ci * ld + j * S::LANES));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let b = S::splat(*u.add(ci * ROWS + r));
                for j in 0..NV {
                    row[j] = S::fma(b, x[j], row[j]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                S::store(m.add(r * ld + j * S::LANES), *a);
            }
        }
    }
}
