//! Weight gradients without a column matrix (AVX-512), for layers whose
//! gradient is small and whose input has few channels (LeNet-5's convolutions,
//! ResNet-20's first and strided layers, ResNet-50's stem).
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
//! Images too large for half a chunk (ResNet-50's stem: 3.9 MiB staged)
//! are staged in bands of output rows: a band's gradient rows and the rows
//! of the phase planes its taps read (the band's and the largest shift's
//! below them), so the dot products split into one per band.
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
/// which the dot products beat im2col and a packed SGEMM (ResNet-50's stem,
/// 64 x 147: 1.15x faster on Zen 5).
const MAX_WEIGHT: usize = 128 * 128;
const MAX_SIDE: usize = 64;

/// The staged layout of one band of output rows of an image (all of them
/// when an image fits half a chunk).
#[derive(Clone, Copy, Debug)]
pub(super) struct Staging {
    /// Output rows per band and bands per image.
    rows: usize,
    pub(super) bands: usize,
    /// Rows and columns of a band's phase planes: the band's rows and the
    /// rows below that its taps reach.
    ph: usize,
    pw: usize,
    /// Floats of a widened gradient row of a band, read whole:
    /// `(rows - 1) PW + OW` rounded up to 16.
    len: usize,
    /// Floats of one staged band: the widened gradient rows, the phase
    /// planes, and 16 floats that a row read from the last plane may run
    /// into.
    unit: usize,
}

impl ConvPlan {
    /// The staging with the fewest bands whose band fits half a chunk.
    pub(super) fn staging(&self) -> Option<Staging> {
        let c = &self.conv;
        let (ph, pw) = self.phase_plane();
        let planes = self.cg() * c.stride_h * c.stride_w;
        (1..=self.out_h).find_map(|bands| {
            let rows = self.out_h.div_ceil(bands);
            let len = ((rows - 1) * pw + self.out_w).next_multiple_of(16);
            let ph = rows + ph - self.out_h;
            let unit = self.ocg() * len + planes * ph * pw + 16;
            let bands = self.out_h.div_ceil(rows);
            (2 * unit <= CHUNK_FLOATS).then_some(Staging {
                rows,
                bands,
                ph,
                pw,
                len,
                unit,
            })
        })
    }

    /// Whether the weight gradient takes this path: AVX-512, a column
    /// matrix to unfold (not `Direct1x1`) of at least 4/3 of the staged
    /// floats, one group, a small gradient with a side of at most 64, at
    /// most 1.5x the exact multiplies, and a staged band in half of the
    /// chunk. Measured on Zen 4 against im2col and `gemm::dot` (one
    /// thread): LeNet-5's conv1 and conv2 (staging a third and a fifth of
    /// the column matrix) 1.5x and 1.8x faster, ResNet-20's strided layer
    /// (0.74 of it) 1.25x faster; ResNet-20's conv1 (0.76, most of it the
    /// widened output gradient) 8% slower (1.2x faster on two threads).
    pub(super) fn shifted_fits(&self) -> bool {
        let (ocg, k) = (self.ocg(), self.k());
        let fits = |s: Staging| {
            4 * s.bands * s.unit <= 3 * k * self.p() && 2 * s.bands * s.len <= 3 * self.p()
        };
        crate::cpu::isa() == crate::cpu::Isa::Avx512
            && self.algo != super::ConvAlgo::Direct1x1
            && self.conv.groups == 1
            && ocg * k <= MAX_WEIGHT
            && ocg.min(k) <= MAX_SIDE
            && self.staging().is_some_and(fits)
    }

    /// Bands staged at once by one thread.
    fn shifted_chunk(&self, s: Staging) -> usize {
        (CHUNK_FLOATS / s.unit).clamp(1, self.per_task() * s.bands)
    }

    /// Scratch floats of one thread.
    pub(super) fn shifted_len(&self) -> usize {
        self.staging().map_or(0, |s| self.shifted_chunk(s) * s.unit)
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
        let s = self.staging().expect("shifted_fits checked the staging");
        let (in_img, out_img) = (c.in_channels * c.in_h * c.in_w, c.out_channels * self.p());
        let chunk = self.shifted_chunk(s);
        let units = input.len() / in_img * s.bands;
        for u0 in (0..units).step_by(chunk) {
            let n = chunk.min(units - u0);
            let stage = &mut scratch[..n * s.unit];
            for (i, st) in stage.chunks_exact_mut(s.unit).enumerate() {
                let (img, band) = ((u0 + i) / s.bands, (u0 + i) % s.bands);
                self.stage_band(
                    &input[img * in_img..][..in_img],
                    &grad_output[img * out_img..][..out_img],
                    s,
                    band,
                    st,
                );
            }
            // SAFETY: `shifted_fits` checked AVX-512; every staged band
            // holds the rows the offsets address (see `accumulate`).
            unsafe { self.accumulate(stage, s, n, grad_weight) };
        }
    }

    /// Stages band `band` of one image (layout in the module's
    /// documentation).
    fn stage_band(&self, x: &[f32], gy: &[f32], s: Staging, band: usize, st: &mut [f32]) {
        let c = &self.conv;
        let (oh_n, ow_n) = (self.out_h, self.out_w);
        let y0 = band * s.rows;
        let (dy, planes) = st.split_at_mut(self.ocg() * s.len);
        for (row, g) in dy.chunks_exact_mut(s.len).zip(gy.chunks_exact(oh_n * ow_n)) {
            row.fill(0.0);
            let g = &g[y0 * ow_n..][..(oh_n - y0).min(s.rows) * ow_n];
            for (oh, src) in g.chunks_exact(ow_n).enumerate() {
                copy_row(&mut row[oh * s.pw..][..ow_n], src);
            }
        }
        let (planes, slack) = planes.split_at_mut(planes.len() - 16);
        slack.fill(0.0);
        let strides = (c.stride_h, c.stride_w);
        let pad = (c.pad_top, c.pad_left);
        super::direct::phase_planes(x, (c.in_h, c.in_w), pad, strides, (y0, s.ph, s.pw), planes);
    }

    /// Where row `r = (c, kh, kw)` of the unfolded input starts in a staged
    /// band.
    fn tap_offset(&self, s: Staging, r: usize) -> usize {
        let c = &self.conv;
        let taps = c.kernel_h * c.kernel_w;
        let (ch, kh, kw) = (r / taps, r % taps / c.kernel_w, r % c.kernel_w);
        let tap = (kh * c.dilation_h, kw * c.dilation_w);
        let strides = (c.stride_h, c.stride_w);
        self.ocg() * s.len + super::direct::tap_offset(ch, tap, strides, (s.ph, s.pw))
    }

    /// `gw[o][r] += sum over the staged bands of <dy row o, tap row r>`.
    ///
    /// # Safety
    /// AVX-512F is available; `stage` holds `bands` bands staged by
    /// [`ConvPlan::stage_band`] with `s`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn accumulate(&self, stage: &[f32], s: Staging, bands: usize, gw: &mut [f32]) {
        use std::arch::x86_64::*;
        const R: usize = 4;
        let (m, n) = (self.ocg(), self.k());
        let (len, unit) = (s.len, s.unit);
        assert!(stage.len() >= bands * unit && gw.len() >= m * n);
        let base = stage.as_ptr();
        for i0 in (0..m).step_by(R) {
            // Rows and columns past the end repeat the last one; their sums
            // are not stored.
            let a: [usize; R] = std::array::from_fn(|r| (i0 + r).min(m - 1) * len);
            for j0 in (0..n).step_by(R) {
                let b: [usize; R] =
                    std::array::from_fn(|c| self.tap_offset(s, (j0 + c).min(n - 1)));
                let mut acc = [[_mm512_setzero_ps(); R]; R];
                for band in 0..bands {
                    // SAFETY: a gradient row holds `len` floats; a tap row
                    // starts inside the phase planes and its `len` floats
                    // end inside the planes and the 16 floats of slack
                    // (`staging`: PH and PW leave room for the largest
                    // shift).
                    unsafe {
                        let at = base.add(band * unit);
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
    unsafe fn accumulate(&self, _: &[f32], _: Staging, _: usize, _: &mut [f32]) {
        unreachable!("the shifted weight gradient needs AVX-512")
    }
}
