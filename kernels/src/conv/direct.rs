//! Convolutions with few channels, computed directly (AVX-512VL): LeNet-5's
//! layers and their backward-data passes, ResNet-20's first and strided
//! layers, ResNet-50's stem.
//!
//! im2col multiplies such a layer's input 9 to 25-fold for products of a
//! few rows (LeNet-5's conv2: 12 rows), and col2im adds it back. Here an
//! output tile of 4 channels x 4 runs of 16 outputs (8 on rows narrower
//! than 16; 16 vector accumulators) sums, for every input channel and
//! kernel tap, a broadcast weight times a run of contiguous inputs: the
//! inputs a run of outputs reads through one tap are themselves a run. Rows
//! wider than a run take runs at 0, 16, ... and a last one ending at the
//! row's end (overlapping the one before it; both store the same sums).
//! Zen 5 issues 16-lane FMAs as fast as 8-lane ones (Zen 4 at half the
//! rate), so runs of 16 win there even where a row wastes a quarter of them.
//!
//! Padding and strides come from a copy of each image split into
//! `sh x sw` phase planes of the zero-padded input,
//! `P[c][a][b][y][x] = Xpad[c][y sh + a][x sw + b]`: tap `(kh, kw)` reads
//! phase `(kh dh mod sh, kw dw mod sw)` from row `kh dh / sh` and column
//! `kw dw / sw` on, and a run of outputs reads a run of that plane. Without
//! padding or strides the image is read in place. Backward-data (stride 1)
//! is the same convolution from the output gradient, padded by
//! `(K - 1) d - pad` on each side, with the weight flipped and its channel
//! axes swapped. That padding meets every weight: an infinite or NaN
//! weight gives NaN input gradients at the borders where the exact sum has
//! no term with it (the forward pass has spread it into the outputs).

use super::unfold::{copy_row, copy_strided, valid_range};
use super::{ConvPlan, DIRECT_SPLIT_CHANNELS, Tail};
use crate::cpu::{self, Isa};
use crate::elementwise::simd::{Avx2, Avx512, Simd};
use crate::error::Result;
use crate::pool;

/// Outputs per run on the narrowest rows (one `__m256`).
const RUN: usize = 8;
/// Largest `C x KH x KW` and output channel count taken: deeper or wider
/// layers go to the GEMM (or Winograd), whose blocking wins there. Measured
/// on Zen 4, one thread, against im2col + SGEMM: LeNet-5's conv1 and conv2
/// forward 2.8x and 1.6x (against Winograd) faster, ResNet-20's first and
/// strided layers 1.4x and 1.2x, ResNet-50's stem (147 deep, 64 channels)
/// 1.3x.
const MAX_DEPTH: usize = 400;
const MAX_OUT: usize = 64;

/// A convolution of one image over its phase planes (see the module).
#[derive(Clone, Copy, Debug)]
pub(super) struct Direct {
    /// Input channels and phase plane size.
    pub cin: usize,
    pub hp: usize,
    pub wp: usize,
    /// Strides (phases per channel: `sh x sw`).
    pub sh: usize,
    pub sw: usize,
    /// Output channels and plane size.
    pub cout: usize,
    pub oh: usize,
    pub ow: usize,
    /// Kernel size and dilation.
    pub kh: usize,
    pub kw: usize,
    pub dh: usize,
    pub dw: usize,
}

impl Direct {
    /// Whether this kernel takes the convolution: AVX-512, rows of at least
    /// one run, and few channels.
    fn suits(&self) -> bool {
        cpu::isa() == Isa::Avx512
            && self.ow >= RUN
            && self.cin * self.kh * self.kw <= MAX_DEPTH
            && self.cout <= MAX_OUT
    }

    /// Floats of one image's phase planes.
    pub(super) fn planes_len(&self) -> usize {
        self.cin * self.sh * self.sw * self.hp * self.wp
    }

    /// `out (cout x oh x ow) = relu?(conv(x, w (cout x cin kh kw)) + bias)`,
    /// `x` the phase planes; runs of 16 outputs on rows of at least 16. The
    /// ReLU is `max(0, v)` on the way out (NaN and -0 pass, as the ReLU
    /// kernels): no second pass over the output.
    pub(super) fn run(
        &self,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        out: &mut [f32],
    ) {
        let depth = self.cin * self.kh * self.kw;
        assert!(
            x.len() >= self.planes_len()
                && w.len() >= self.cout * depth
                && out.len() >= self.cout * self.oh * self.ow
                && bias.is_none_or(|b| b.len() >= self.cout)
                && self.hp >= self.oh + (self.kh - 1) * self.dh / self.sh
                && self.wp >= self.ow + (self.kw - 1) * self.dw / self.sw
                && self.ow >= RUN
        );
        assert_eq!(
            cpu::isa(),
            Isa::Avx512,
            "the direct convolution needs AVX-512"
        );
        // SAFETY: AVX-512F and VL are available (asserted); the sizes are
        // checked above.
        unsafe {
            if self.ow >= Avx512::LANES {
                self.run_with::<Avx512>(x, w, bias, relu, out);
            } else {
                self.run_with::<Avx2>(x, w, bias, relu, out);
            }
        }
    }

    /// [`Direct::run`] with runs of `S::LANES`.
    ///
    /// # Safety
    /// As for [`Direct::tiles`].
    unsafe fn run_with<S: Simd>(
        &self,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        out: &mut [f32],
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            // Channel blocks that divide the channels where they can.
            match self.cout {
                1 => self.tiles::<S, 1, 16>(x, w, bias, relu, out),
                2 => self.tiles::<S, 2, 8>(x, w, bias, relu, out),
                c if c % 4 == 0 => self.tiles::<S, 4, 4>(x, w, bias, relu, out),
                c if c % 6 == 0 => self.tiles::<S, 6, 3>(x, w, bias, relu, out),
                c if c % 3 == 0 => self.tiles::<S, 3, 5>(x, w, bias, relu, out),
                _ => self.tiles::<S, 4, 4>(x, w, bias, relu, out),
            }
        }
    }

    /// Tiles of `OB` output channels x `RB` runs.
    ///
    /// # Safety
    /// AVX-512F and VL are available; the buffers hold what `run` checks.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,fma")]
    unsafe fn tiles<S: Simd, const OB: usize, const RB: usize>(
        &self,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        out: &mut [f32],
    ) {
        const { assert!(S::LANES >= RUN) };
        let run = S::LANES;
        let depth = self.cin * self.kh * self.kw;
        let per_row = self.ow.div_ceil(run);
        let runs = self.oh * per_row;
        let plane = self.oh * self.ow;
        // Run `i`: output row and column, and where its first tap reads.
        let run_at = |i: usize| {
            let (y, j) = (i / per_row, i % per_row);
            let x0 = (j * run).min(self.ow - run);
            (y * self.ow + x0, y * self.wp + x0)
        };
        // Where the taps of row (c, kh) start reading, for the run at (0,
        // 0), and where tap kw reads from there.
        let (strides, phase) = ((self.sh, self.sw), (self.hp, self.wp));
        let mut rows = [0usize; MAX_DEPTH];
        for (i, row) in rows[..self.cin * self.kh].iter_mut().enumerate() {
            *row = tap_offset(i / self.kh, (i % self.kh * self.dh, 0), strides, phase);
        }
        let mut cols = [0usize; MAX_DEPTH];
        for (kw, col) in cols[..self.kw].iter_mut().enumerate() {
            *col = tap_offset(0, (0, kw * self.dw), strides, phase);
        }
        let (rows, cols) = (&rows[..self.cin * self.kh], &cols[..self.kw]);
        for o0 in (0..self.cout).step_by(OB) {
            // Channels past the end repeat the last one and are not stored.
            let o: [usize; OB] = std::array::from_fn(|i| (o0 + i).min(self.cout - 1));
            // SAFETY: rows of w, which holds cout x depth floats.
            let wo: [*const f32; OB] = o.map(|o| unsafe { w.as_ptr().add(o * depth) });
            for r0 in (0..runs).step_by(RB) {
                // Runs past the end repeat the last one (same sums, stored
                // again).
                let at: [(usize, usize); RB] =
                    std::array::from_fn(|j| run_at((r0 + j).min(runs - 1)));
                let mut acc: [[S::V; RB]; OB] = std::array::from_fn(|i| {
                    // SAFETY: the ISA is available (caller's contract).
                    [unsafe { S::splat(bias.map_or(0.0, |b| b[o[i]])) }; RB]
                });
                let px: [*const f32; RB] = at.map(|a| x.as_ptr().wrapping_add(a.1));
                let mut r = 0;
                for &row in rows {
                    for &col in cols {
                        // SAFETY: run j reads x[row + col + at.1 .. + run]:
                        // row y + kh dh / sh < hp, columns x0 + kw dw / sw +
                        // run <= wp of a phase inside the planes (checked by
                        // `run`; x0 + run <= ow).
                        unsafe {
                            let v: [S::V; RB] =
                                std::array::from_fn(|j| S::load(px[j].add(row + col)));
                            for i in 0..OB {
                                let wv = S::splat(*wo[i].add(r));
                                for j in 0..RB {
                                    acc[i][j] = S::fma(wv, v[j], acc[i][j]);
                                }
                            }
                        }
                        r += 1;
                    }
                }
                for (i, acc) in acc.iter().enumerate().take(self.cout - o0) {
                    for (j, &v) in acc.iter().enumerate() {
                        // SAFETY: the ISA is available; channel o0 + i <
                        // cout, the run's outputs lie in its row.
                        unsafe {
                            let v = if relu { S::max(S::splat(0.0), v) } else { v };
                            S::store(out.as_mut_ptr().add((o0 + i) * plane + at[j].0), v)
                        };
                    }
                }
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn tiles<S: Simd, const OB: usize, const RB: usize>(
        &self,
        _: &[f32],
        _: &[f32],
        _: Option<&[f32]>,
        _: bool,
        _: &mut [f32],
    ) {
        unreachable!("the direct convolution needs AVX-512")
    }
}

impl ConvPlan {
    /// The forward pass on [`Direct`](Direct), images split over
    /// the threads.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_direct(
        &self,
        d: &Direct,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        tail: Tail<'_>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        let c = &self.conv;
        let (in_img, out_img) = (c.in_channels * c.in_h * c.in_w, c.out_channels * self.p());
        let in_place = self.direct_in_place();
        self.par_images(input, in_img, output, out_img, scratch, |i0, x, y, s| {
            for (n, (x, y)) in x
                .chunks_exact(in_img)
                .zip(y.chunks_exact_mut(out_img))
                .enumerate()
            {
                let x = if in_place {
                    x
                } else {
                    let s = &mut s[..d.planes_len()];
                    let pad = (c.pad_top, c.pad_left);
                    let (strides, plane) = ((d.sh, d.sw), (d.hp, d.wp));
                    phase_planes(x, (c.in_h, c.in_w), pad, strides, (0, plane.0, plane.1), s);
                    &*s
                };
                self.direct_split(d, x, weight, bias, tail, y, (i0 + n) * out_img);
            }
            Ok(())
        })
    }

    /// One image's direct forward pass from its phase planes `x` into `y`
    /// (at `at` in the whole output), on the pool's threads by blocks of
    /// output channels when the plan runs images in turn.
    #[allow(clippy::too_many_arguments)]
    fn direct_split(
        &self,
        d: &Direct,
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        tail: Tail<'_>,
        y: &mut [f32],
        at: usize,
    ) {
        let (p, depth) = (self.p(), d.cin * d.kh * d.kw);
        let tasks = if self.threads > 1 {
            1
        } else {
            self.tile_threads.min(d.cout / DIRECT_SPLIT_CHANNELS).max(1)
        };
        // Blocks of a multiple of 4 channels (the kernel's channel block).
        let per = d.cout.div_ceil(tasks).next_multiple_of(4).min(d.cout);
        let parts: Vec<_> = y.chunks_mut(per * p).enumerate().collect();
        let run = |(t, y): (usize, &mut [f32])| {
            let (o0, cout) = (t * per, y.len() / p);
            let part = Direct { cout, ..*d };
            // A ReLU alone runs in the kernel; a residual comes first.
            let fused = tail.residual.is_none() && tail.relu;
            part.run(
                x,
                &weight[o0 * depth..][..cout * depth],
                bias.map(|b| &b[o0..][..cout]),
                fused,
                y,
            );
            if !fused {
                tail.apply_run(y, at + o0 * p);
            }
        };
        pool::for_each_part(parts, run);
    }

    /// Rows and columns of a phase plane of the padded input: at least `OH +
    /// (KH - 1) dh / sh` and `OW + (KW - 1) dw / sw`, the last output of the
    /// largest shift (`ceil((OH - 1) sh + (KH - 1) dh + 1) / sh)` and
    /// `(q + 1) / s` rounded up is at least `q / s` rounded down plus one).
    pub(super) fn phase_plane(&self) -> (usize, usize) {
        let c = &self.conv;
        (
            (c.in_h + c.pad_top + c.pad_bottom).div_ceil(c.stride_h),
            (c.in_w + c.pad_left + c.pad_right).div_ceil(c.stride_w),
        )
    }

    /// The forward pass as a [`Direct`] convolution, if it takes it.
    pub(super) fn direct_forward(&self) -> Option<Direct> {
        let c = &self.conv;
        let (hp, wp) = self.phase_plane();
        let d = Direct {
            cin: c.in_channels,
            hp,
            wp,
            sh: c.stride_h,
            sw: c.stride_w,
            cout: c.out_channels,
            oh: self.out_h,
            ow: self.out_w,
            kh: c.kernel_h,
            kw: c.kernel_w,
            dh: c.dilation_h,
            dw: c.dilation_w,
        };
        (c.groups == 1 && d.suits()).then_some(d)
    }

    /// The backward-data pass as a [`Direct`] convolution over the output
    /// gradient padded by `(K - 1) d - pad`, if it takes it (every padding
    /// at most the dilated kernel's reach).
    pub(super) fn direct_backward(&self) -> Option<Direct> {
        let c = &self.conv;
        let (reach_h, reach_w) = (
            (c.kernel_h - 1) * c.dilation_h,
            (c.kernel_w - 1) * c.dilation_w,
        );
        let d = Direct {
            cin: c.out_channels,
            hp: c.in_h + reach_h,
            wp: c.in_w + reach_w,
            sh: 1,
            sw: 1,
            cout: c.in_channels,
            oh: c.in_h,
            ow: c.in_w,
            kh: c.kernel_h,
            kw: c.kernel_w,
            dh: c.dilation_h,
            dw: c.dilation_w,
        };
        (c.groups == 1
            && (c.stride_h, c.stride_w) == (1, 1)
            && c.pad_top.max(c.pad_bottom) <= reach_h
            && c.pad_left.max(c.pad_right) <= reach_w
            && d.suits())
        .then_some(d)
    }

    /// The weight of the backward-data [`Direct`] convolution:
    /// `wt[c][o][kh][kw] = w[o][c][KH - 1 - kh][KW - 1 - kw]`.
    pub(super) fn flipped_weight(&self, w: &[f32], wt: &mut [f32]) {
        let c = &self.conv;
        let (taps, cin, cout) = (c.kernel_h * c.kernel_w, c.in_channels, c.out_channels);
        for o in 0..cout {
            for ch in 0..cin {
                let src = &w[(o * cin + ch) * taps..][..taps];
                let dst = &mut wt[(ch * cout + o) * taps..][..taps];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        }
    }
}

/// Where tap `(th, tw)` (dilated offsets) of channel `ch` starts reading in
/// phase planes of `hp x wp` (layout in the module's documentation): row
/// `th / sh` and column `tw / sw` of phase `(th mod sh, tw mod sw)`. The
/// offset is the sum of its `(ch, th, 0)` and `(0, 0, tw)` parts.
pub(super) fn tap_offset(
    ch: usize,
    (th, tw): (usize, usize),
    (sh, sw): (usize, usize),
    (hp, wp): (usize, usize),
) -> usize {
    ((ch * sh + th % sh) * sw + tw % sw) * hp * wp + th / sh * wp + tw / sw
}

/// Splits the planes of `x` (`h x w` each), with `top` rows and `left`
/// columns of zeros before them and zeros after, into `sh x sw` phase planes
/// of `hp x wp` each, `dst[c][a][b][y][x] = xpad[c][(y0 + y) sh + a][x sw + b]`
/// (layout in the module's documentation; `y0 > 0` stages rows of the planes
/// from `y0` on); as many as `dst` holds.
pub(super) fn phase_planes(
    x: &[f32],
    (h, w): (usize, usize),
    (top, left): (usize, usize),
    (sh, sw): (usize, usize),
    (y0, hp, wp): (usize, usize, usize),
    dst: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if sw <= 2 && cpu::isa() == Isa::Avx512 {
        let plane = hp * wp;
        for (i, planes) in dst.chunks_exact_mut(sw * plane).enumerate() {
            let (ch, a) = (i / sh, i % sh);
            let src = &x[ch * h * w..][..h * w];
            for y in 0..hp {
                let ih = ((y0 + y) * sh + a).wrapping_sub(top);
                if ih >= h {
                    for b in 0..sw {
                        planes[b * plane + y * wp..][..wp].fill(0.0);
                    }
                    continue;
                }
                let (first, rest) = planes.split_at_mut(plane);
                let second: &mut [f32] = if sw == 2 {
                    &mut rest[y * wp..][..wp]
                } else {
                    &mut []
                };
                let dst = [&mut first[y * wp..][..wp], second];
                // SAFETY: AVX-512F is available; the row holds `w` floats,
                // and each of the `sw` destinations `wp`.
                unsafe { split_row_avx512(&src[ih * w..][..w], left, sw, wp, dst) };
            }
        }
        return;
    }
    for (i, plane) in dst.chunks_exact_mut(hp * wp).enumerate() {
        let (ch, a, b) = (i / (sh * sw), i / sw % sh, i % sw);
        let src = &x[ch * h * w..][..h * w];
        let (lo, hi) = valid_range(wp, b, left, sw, w);
        for (y, row) in plane.chunks_exact_mut(wp).enumerate() {
            let ih = ((y0 + y) * sh + a).wrapping_sub(top);
            if ih >= h || lo == hi {
                row.fill(0.0);
                continue;
            }
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
            let s = &src[ih * w + lo * sw + b - left..];
            if sw == 1 {
                copy_row(&mut row[lo..hi], s);
            } else {
                copy_strided(&mut row[lo..hi], s, sw);
            }
        }
    }
}

/// The `sw` column phases of a row with `left` zeros before
/// it and zeros after: `dst[b][x] = row[x sw + b - left]`, 0 outside the
/// row, for `x` in `0..wp` (`sw` 1 or 2; one vector of each phase per
/// iteration, stride 2 split by one `vpermt2ps` per phase).
///
/// # Safety
/// The CPU supports AVX-512F; `dst[b]` holds `wp` floats for `b < sw`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_row_avx512(row: &[f32], left: usize, sw: usize, wp: usize, dst: [&mut [f32]; 2]) {
    use std::arch::x86_64::*;
    debug_assert!(sw <= 2 && dst[..sw].iter().all(|d| d.len() >= wp));
    // Lanes of the window of 16 padded columns at `p0` that hold row values
    // (padded columns left..left + w).
    let w = row.len();
    let valid = |p0: usize| {
        let lo = left.saturating_sub(p0).min(16);
        let hi = (left + w).saturating_sub(p0).min(16);
        crate::strided::lanes(lo, hi.max(lo))
    };
    let base = row.as_ptr().wrapping_sub(left);
    let load = |p0: usize| {
        let m = valid(p0);
        // SAFETY: lanes in `m` read row values.
        unsafe {
            if m == 0xffff {
                _mm512_loadu_ps(base.wrapping_add(p0))
            } else {
                _mm512_maskz_loadu_ps(m, base.wrapping_add(p0))
            }
        }
    };
    let store = |d: &mut [f32], x0: usize, v: __m512| {
        // SAFETY: d holds at least wp floats.
        unsafe {
            if wp - x0 >= 16 {
                _mm512_storeu_ps(d.as_mut_ptr().add(x0), v);
            } else {
                let m = crate::strided::lanes(0, wp - x0);
                _mm512_mask_storeu_ps(d.as_mut_ptr().add(x0), m, v);
            }
        }
    };
    let [d0, d1] = dst;
    for x0 in (0..wp).step_by(16) {
        if sw == 1 {
            store(d0, x0, load(x0));
        } else {
            let (a, b) = (load(2 * x0), load(2 * x0 + 16));
            let evens =
                _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            store(d0, x0, _mm512_permutex2var_ps(a, evens, b));
            store(d1, x0, _mm512_permutex2var_ps(a, odds, b));
        }
    }
}
