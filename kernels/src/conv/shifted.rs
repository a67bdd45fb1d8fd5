//! Weight gradients without a column matrix (AVX-512), for layers whose
//! gradient is small and whose input has few channels (LeNet-5's convolutions,
//! ResNet-20's first and strided layers).
//!
//! The unfolded input of such a layer is 9 to 25 times the input; writing
//! it and reading it back cost more than the products (LeNet-5's conv2: two
//! thirds of the pass). Here each image is staged as
//! - its zero-padded input split into `stride_h x stride_w` phase planes
//!   (`P[c][a][b][y][x] = X[c][y sh + a - pad_top][x sw + b - pad_left]`,
//!   zero outside the input), each `PH x PW`;
//! - its output gradient with every row widened from `OW` to `PW` with zeros.
//!
//! Tap `(kh, kw)` then reads phase `(kh dh mod sh, kw dw mod sw)` from row
//! `kh dh / sh` and column `kw dw / sw` on: a plain shifted slice of the
//! phase plane, as long as a widened gradient row, whose products with the
//! gradient's zeros vanish. So `dW[o][c, kh, kw]` is one dot product of two
//! contiguous runs per image, with `PW / OW` of the multiplies of the exact
//! sum (at most 1.5x by the plan's test). A 4 x 4 block of `dW` keeps 16
//! vector accumulators over every image of a chunk and is reduced once.
//!
//! The widened rows pair gradient zeros with input values the exact sum
//! leaves out (columns past a row's last output, and with a stride the rows
//! and columns it steps over): an infinite or NaN input there makes those
//! gradient entries NaN where the exact sum is finite, even where the
//! forward pass never reads it.

use super::ConvPlan;
use super::unfold::copy_row;

/// Floats of staged images per chunk (384 KiB: most of Zen 4's 1 MiB L2,
/// which each 4 x 4 block of the gradient streams through).
const CHUNK_FLOATS: usize = 96 << 10;
/// Largest weight gradient (`OC x C KH KW`) and largest smaller side for
/// which the dot products beat a packed SGEMM's tiles (the shapes of
/// `gemm::dot`).
const MAX_WEIGHT: usize = 128 * 128;
const MAX_SIDE: usize = 32;

/// The staged layout of one image.
#[derive(Clone, Copy, Debug)]
struct Staging {
    /// Phase plane rows and columns.
    ph: usize,
    pw: usize,
    /// Floats of a widened gradient row, read whole: `(OH - 1) PW + OW`
    /// rounded up to 16.
    len: usize,
}

impl ConvPlan {
    fn staging(&self) -> Staging {
        let (ph, pw) = self.phase_plane();
        let len = ((self.out_h - 1) * pw + self.out_w).next_multiple_of(16);
        Staging { ph, pw, len }
    }

    /// Floats of one staged image: the widened gradient rows, the phase
    /// planes, and 16 floats that a row read from the last plane may run
    /// into.
    fn staged_image_len(&self) -> usize {
        let (c, s) = (&self.conv, self.staging());
        self.ocg() * s.len + self.cg() * c.stride_h * c.stride_w * s.ph * s.pw + 16
    }

    /// Whether the weight gradient takes this path: AVX-512, a column
    /// matrix to unfold (not `Direct1x1`) of at least 4/3 of the staged
    /// floats, one group, a small gradient with a side of at most 32, at
    /// most 1.5x the exact multiplies, and a staged image in half of the
    /// chunk. Measured on Zen 4 against im2col and `gemm::dot` (one
    /// thread): LeNet-5's conv1 and conv2 (staging a third and a fifth of
    /// the column matrix) 1.5x and 1.8x faster, ResNet-20's strided layer
    /// (0.74 of it) 1.25x faster; ResNet-20's conv1 (0.76, most of it the
    /// widened output gradient) 8% slower (1.2x faster on two threads).
    pub(super) fn shifted_fits(&self) -> bool {
        let (ocg, k) = (self.ocg(), self.k());
        crate::cpu::isa() == crate::cpu::Isa::Avx512
            && self.algo != super::ConvAlgo::Direct1x1
            && 4 * self.staged_image_len() <= 3 * k * self.p()
            && self.conv.groups == 1
            && ocg * k <= MAX_WEIGHT
            && ocg.min(k) <= MAX_SIDE
            && 2 * self.staging().len <= 3 * self.p()
            && 2 * self.staged_image_len() <= CHUNK_FLOATS
    }

    /// Images staged at once by one thread.
    fn shifted_chunk(&self) -> usize {
        (CHUNK_FLOATS / self.staged_image_len()).clamp(1, self.per_task())
    }

    /// Scratch floats of one thread.
    pub(super) fn shifted_len(&self) -> usize {
        self.shifted_chunk() * self.staged_image_len()
    }

    /// Adds the weight gradient of `input`'s images to `grad_weight`
    /// (`scratch`: at least [`ConvPlan::shifted_len`] floats).
    pub(super) fn shifted_weight_grad(
        &self,
        input: &[f32],
        grad_output: &[f32],
        grad_weight: &mut [f32],
        scratch: &mut [f32],
    ) {
        let c = &self.conv;
        let (in_img, out_img) = (c.in_channels * c.in_h * c.in_w, c.out_channels * self.p());
        let img_len = self.staged_image_len();
        let chunk = self.shifted_chunk();
        let images = input.len() / in_img;
        for i0 in (0..images).step_by(chunk) {
            let n = chunk.min(images - i0);
            let stage = &mut scratch[..n * img_len];
            for (i, st) in stage.chunks_exact_mut(img_len).enumerate() {
                let at = i0 + i;
                self.stage_image(
                    &input[at * in_img..][..in_img],
                    &grad_output[at * out_img..][..out_img],
                    st,
                );
            }
            // SAFETY: `shifted_fits` checked AVX-512; every staged image
            // holds the rows the offsets address (see `stage_image`).
            unsafe { self.accumulate(stage, n, grad_weight) };
        }
    }

    /// Stages one image (layout in the module's documentation).
    fn stage_image(&self, x: &[f32], gy: &[f32], st: &mut [f32]) {
        let (c, s) = (&self.conv, self.staging());
        let (oh_n, ow_n) = (self.out_h, self.out_w);
        let (dy, planes) = st.split_at_mut(self.ocg() * s.len);
        for (row, g) in dy.chunks_exact_mut(s.len).zip(gy.chunks_exact(oh_n * ow_n)) {
            row.fill(0.0);
            for (oh, src) in g.chunks_exact(ow_n).enumerate() {
                copy_row(&mut row[oh * s.pw..][..ow_n], src);
            }
        }
        let (planes, slack) = planes.split_at_mut(planes.len() - 16);
        slack.fill(0.0);
        let strides = (c.stride_h, c.stride_w);
        let pad = (c.pad_top, c.pad_left);
        super::direct::phase_planes(x, (c.in_h, c.in_w), pad, strides, (s.ph, s.pw), planes);
    }

    /// Where row `r = (c, kh, kw)` of the unfolded input starts in a staged
    /// image.
    fn tap_offset(&self, r: usize) -> usize {
        let (c, s) = (&self.conv, self.staging());
        let taps = c.kernel_h * c.kernel_w;
        let (ch, kh, kw) = (r / taps, r % taps / c.kernel_w, r % c.kernel_w);
        let tap = (kh * c.dilation_h, kw * c.dilation_w);
        let strides = (c.stride_h, c.stride_w);
        self.ocg() * s.len + super::direct::tap_offset(ch, tap, strides, (s.ph, s.pw))
    }

    /// `gw[o][r] += sum over the staged images of <dy row o, tap row r>`.
    ///
    /// # Safety
    /// AVX-512F is available; `stage` holds `images` images staged by
    /// [`ConvPlan::stage_image`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn accumulate(&self, stage: &[f32], images: usize, gw: &mut [f32]) {
        use std::arch::x86_64::*;
        const R: usize = 4;
        let (m, n) = (self.ocg(), self.k());
        let (len, img_len) = (self.staging().len, self.staged_image_len());
        assert!(stage.len() >= images * img_len && gw.len() >= m * n);
        let base = stage.as_ptr();
        for i0 in (0..m).step_by(R) {
            // Rows and columns past the end repeat the last one; their sums
            // are not stored.
            let a: [usize; R] = std::array::from_fn(|r| (i0 + r).min(m - 1) * len);
            for j0 in (0..n).step_by(R) {
                let b: [usize; R] = std::array::from_fn(|c| self.tap_offset((j0 + c).min(n - 1)));
                let mut acc = [[_mm512_setzero_ps(); R]; R];
                for img in 0..images {
                    // SAFETY: a gradient row holds `len` floats; a tap row
                    // starts inside the phase planes and its `len` floats
                    // end inside the planes and the 16 floats of slack
                    // (`staging`: PH and PW leave room for the largest
                    // shift).
                    unsafe {
                        let at = base.add(img * img_len);
                        let (pa, pb) = (a.map(|o| at.add(o)), b.map(|o| at.add(o)));
                        for kk in (0..len).step_by(16) {
                            let bv: [__m512; R] =
                                std::array::from_fn(|c| _mm512_loadu_ps(pb[c].add(kk)));
                            for r in 0..R {
                                let av = _mm512_loadu_ps(pa[r].add(kk));
                                for c in 0..R {
                                    acc[r][c] = _mm512_fmadd_ps(av, bv[c], acc[r][c]);
                                }
                            }
                        }
                    }
                }
                // SAFETY: AVX-512F is available (caller's contract).
                let sums = unsafe { crate::gemm::sum_4x4(&acc) };
                for r in 0..R.min(m - i0) {
                    for c in 0..R.min(n - j0) {
                        gw[(i0 + r) * n + j0 + c] += sums[r * R + c];
                    }
                }
            }
        }
    }

    /// Never called: `shifted_fits` requires AVX-512.
    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn accumulate(&self, _: &[f32], _: usize, _: &mut [f32]) {
        unreachable!("the shifted weight gradient needs AVX-512")
    }
}
