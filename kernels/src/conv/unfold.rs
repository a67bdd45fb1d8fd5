//! The column matrix of a convolution (im2col: row `(c, kh, kw)` holds the
//! input values tap `(kh, kw)` of channel `c` reads for every output
//! position) and its adjoint (col2im: each entry added back onto the input
//! position it came from).

use super::ConvPlan;
#[cfg(target_arch = "x86_64")]
use crate::cpu::{self, Isa};
#[cfg(target_arch = "x86_64")]
use crate::strided;

impl ConvPlan {
    /// Unfolds one image's group `x` into rows (c, kh, kw) of `cols`, row `r` at
    /// `r * ld + off` (`OH x OW` values each).
    pub(super) fn im2col(&self, x: &[f32], cols: &mut [f32], ld: usize, off: usize) {
        if self.same_width() {
            self.im2col_same_width(x, cols, ld, off);
        } else {
            self.im2col_rows(x, cols, ld, off, 0..self.out_h);
        }
    }

    /// [`ConvPlan::im2col`] for output rows `oh0..oh1` only: rows of
    /// `(oh1 - oh0) x OW` values.
    pub(super) fn im2col_rows(
        &self,
        x: &[f32],
        cols: &mut [f32],
        ld: usize,
        off: usize,
        std::ops::Range {
            start: oh0,
            end: oh1,
        }: std::ops::Range<usize>,
    ) {
        let c = &self.conv;
        let ow_n = self.out_w;
        let mut row = 0;
        for ch in 0..self.cg() {
            let plane = &x[ch * c.in_h * c.in_w..][..c.in_h * c.in_w];
            for kh in 0..c.kernel_h {
                for kw in 0..c.kernel_w {
                    let dst = &mut cols[row * ld + off..][..(oh1 - oh0) * ow_n];
                    let (lo, hi) =
                        valid_range(ow_n, kw * c.dilation_w, c.pad_left, c.stride_w, c.in_w);
                    let base = kw * c.dilation_w;
                    // Output rows reading inside the input form one range
                    // (ih grows with oh); the others are zero.
                    let ih_of =
                        |oh: usize| (oh * c.stride_h + kh * c.dilation_h).wrapping_sub(c.pad_top);
                    let oh_lo = (oh0..oh1).find(|&oh| ih_of(oh) < c.in_h).unwrap_or(oh1);
                    let oh_hi = (oh_lo..oh1).find(|&oh| ih_of(oh) >= c.in_h).unwrap_or(oh1);
                    dst[..(oh_lo - oh0) * ow_n].fill(0.0);
                    dst[(oh_hi - oh0) * ow_n..].fill(0.0);
                    for oh in oh_lo..oh_hi {
                        if oh + PREFETCH_ROWS < oh_hi {
                            crate::memory::prefetch(
                                &plane[ih_of(oh + PREFETCH_ROWS) * c.in_w..][..c.in_w],
                            );
                        }
                        let d = &mut dst[(oh - oh0) * ow_n..][..ow_n];
                        let src = &plane[ih_of(oh) * c.in_w..][..c.in_w];
                        if hi <= lo {
                            // No column of this row reads inside the image.
                        } else if c.stride_w == 1 {
                            let start = lo + base - c.pad_left;
                            copy_row(&mut d[lo..hi], &src[start..]);
                        } else {
                            let start = lo * c.stride_w + base - c.pad_left;
                            copy_strided(&mut d[lo..hi], &src[start..], c.stride_w);
                        }
                    }
                    // Edge columns by strided stores (per-row one-float
                    // slices would become memset calls).
                    zero_columns(dst, ow_n, oh_lo - oh0..oh_hi - oh0, (lo, hi));
                    row += 1;
                }
            }
        }
    }

    /// Stride 1 with the output as wide as the input: the unfolding of a
    /// tap is one shifted copy of the plane ([`ConvPlan::same_width_tap`]).
    pub(super) fn same_width(&self) -> bool {
        let c = &self.conv;
        c.stride_h == 1 && c.stride_w == 1 && self.out_w == c.in_w
    }

    /// Kernel tap `(kh, kw)` of a stride-1 convolution whose output is as
    /// wide as its input. For such a tap, output `q = oh * W + ow` reads input
    /// `q + delta`, so a whole row of the column matrix is one shifted copy of
    /// the plane except for the rows outside the input and the columns that
    /// wrap around a row edge.
    fn same_width_tap(&self, kh: usize, kw: usize) -> Tap {
        let c = &self.conv;
        let (oh_n, ow_n, w) = (self.out_h, self.out_w, c.in_w);
        let plane_len = (c.in_h * w) as isize;
        let shift_h = (kh * c.dilation_h) as isize - c.pad_top as isize;
        // Output rows reading inside the input: ih = oh + shift_h in 0..H.
        let oh_lo = (-shift_h).clamp(0, oh_n as isize) as usize;
        let oh_hi = (c.in_h as isize - shift_h).clamp(oh_lo as isize, oh_n as isize) as usize;
        let shift_w = (kw * c.dilation_w) as isize - c.pad_left as isize;
        let delta = shift_h * w as isize + shift_w;
        // The valid rows' range, clipped to the plane (what is clipped are
        // wrapped columns).
        let q0 = ((oh_lo * ow_n) as isize).max(-delta);
        let q1 = ((oh_hi * ow_n) as isize).min(plane_len - delta);
        Tap {
            rows: oh_lo..oh_hi,
            cols: valid_range(ow_n, kw * c.dilation_w, c.pad_left, 1, c.in_w),
            block: (q1 > q0).then(|| (q0 as usize, q1 as usize, (q0 + delta) as usize)),
        }
    }

    /// [`ConvPlan::im2col`] for stride 1 with the output as wide as the input
    /// (3x3 with padding 1, ...): each row of `cols` is copied from the
    /// shifted plane in one piece, then the rows outside the input and the
    /// wrapped columns are zeroed. Small planes (ResNet-20's 8x8 .. 32x32)
    /// would otherwise pay a `memcpy` and two `memset` calls per 8..32-float
    /// output row.
    fn im2col_same_width(&self, x: &[f32], cols: &mut [f32], ld: usize, off: usize) {
        let c = &self.conv;
        let (oh_n, ow_n) = (self.out_h, self.out_w);
        let plane_len = c.in_h * c.in_w;
        let taps = || (0..c.kernel_h).flat_map(|kh| (0..c.kernel_w).map(move |kw| (kh, kw)));
        let mut row = 0;
        for ch in 0..self.cg() {
            let plane = &x[ch * plane_len..][..plane_len];
            for (kh, kw) in taps() {
                let tap = self.same_width_tap(kh, kw);
                let dst = &mut cols[row * ld + off..][..oh_n * ow_n];
                dst[..tap.rows.start * ow_n].fill(0.0);
                dst[tap.rows.end * ow_n..].fill(0.0);
                if let Some((q0, q1, s0)) = tap.block {
                    dst[q0..q1].copy_from_slice(&plane[s0..s0 + (q1 - q0)]);
                }
                zero_columns(dst, ow_n, tap.rows, tap.cols);
                row += 1;
            }
        }
    }

    /// Adds each column entry (rows laid out as in [`ConvPlan::im2col`]) back
    /// onto the input pixel it came from.
    /// `cols` is scratch: the stride-1 same-width path zeroes entries in it.
    pub(super) fn col2im(&self, cols: &mut [f32], gx: &mut [f32], ld: usize, off: usize) {
        let c = &self.conv;
        let (oh_n, ow_n) = (self.out_h, self.out_w);
        if self.same_width() {
            self.col2im_same_width(cols, gx, ld, off);
            return;
        }
        let mut row = 0;
        for ch in 0..self.cg() {
            let plane = &mut gx[ch * c.in_h * c.in_w..][..c.in_h * c.in_w];
            for kh in 0..c.kernel_h {
                for kw in 0..c.kernel_w {
                    let srcs = &cols[row * ld + off..][..oh_n * ow_n];
                    let (lo, hi) =
                        valid_range(ow_n, kw * c.dilation_w, c.pad_left, c.stride_w, c.in_w);
                    let base = kw * c.dilation_w;
                    for oh in 0..oh_n {
                        let ih = (oh * c.stride_h + kh * c.dilation_h).wrapping_sub(c.pad_top);
                        if ih >= c.in_h {
                            continue;
                        }
                        let dst = &mut plane[ih * c.in_w..][..c.in_w];
                        let s = &srcs[oh * ow_n..][lo..hi];
                        if hi <= lo {
                            // No column of this row reads inside the image.
                        } else if c.stride_w == 1 {
                            add_row(&mut dst[lo + base - c.pad_left..], s);
                        } else {
                            let dst = &mut dst[lo * c.stride_w + base - c.pad_left..];
                            for (i, &v) in s.iter().enumerate() {
                                dst[i * c.stride_w] += v;
                            }
                        }
                    }
                    row += 1;
                }
            }
        }
    }

    /// [`ConvPlan::col2im`] for stride 1 with the output as wide as the input
    /// (the adjoint of [`ConvPlan::im2col_same_width`]): the wrapped entries
    /// of `cols` are zeroed, then each row's block is added onto the shifted
    /// plane in one vectorisable loop.
    fn col2im_same_width(&self, cols: &mut [f32], gx: &mut [f32], ld: usize, off: usize) {
        let c = &self.conv;
        let (oh_n, ow_n) = (self.out_h, self.out_w);
        let plane_len = c.in_h * c.in_w;
        let taps = || (0..c.kernel_h).flat_map(|kh| (0..c.kernel_w).map(move |kw| (kh, kw)));
        let mut row = 0;
        for ch in 0..self.cg() {
            let plane = &mut gx[ch * plane_len..][..plane_len];
            for (kh, kw) in taps() {
                let tap = self.same_width_tap(kh, kw);
                let src = &mut cols[row * ld + off..][..oh_n * ow_n];
                zero_columns(src, ow_n, tap.rows.clone(), tap.cols);
                if let Some((q0, q1, d0)) = tap.block {
                    add_row(&mut plane[d0..], &src[q0..q1]);
                }
                row += 1;
            }
        }
    }
}

/// A kernel tap of a stride-1 same-width convolution (see
/// [`ConvPlan::same_width_tap`]).
struct Tap {
    /// Output rows that read inside the input.
    rows: std::ops::Range<usize>,
    /// Output columns `lo..hi` that read inside the input.
    cols: (usize, usize),
    /// `(q0, q1, s0)`: column-matrix entries `q0..q1` come from plane entries
    /// `s0..`; `None` if the tap reads nothing.
    block: Option<(usize, usize, usize)>,
}

/// Zeroes columns `..lo` and `hi..` of rows `rows` of a matrix with rows of
/// `width`, column by column: the strided stores compile to plain moves, where
/// per-row slices of one or two floats would each become a `memset` call.
fn zero_columns(
    m: &mut [f32],
    width: usize,
    rows: std::ops::Range<usize>,
    (lo, hi): (usize, usize),
) {
    for col in (0..lo).chain(hi..width) {
        for r in rows.clone() {
            m[r * width + col] = 0.0;
        }
    }
}

/// Output rows ahead whose input row an unfolding prefetches: with a
/// stride, the rows read are too far apart for the hardware's prefetcher
/// (ResNet-50's strided 1x1 layers at batch 32, whose input comes from
/// memory: the unfolding took a third of the layer's time).
const PREFETCH_ROWS: usize = 4;

/// `dst[i] = src[i]` for a row of a column matrix: rows of up to 64 floats
/// as fixed-size moves of 8 (the last one overlapping), not a `memcpy`
/// call per row (LeNet-5's conv2 unfolds 150 rows of 8 per output row).
#[inline]
pub(super) fn copy_row(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    let src = &src[..n];
    if n > 64 {
        dst.copy_from_slice(src);
    } else if n >= 8 {
        for i in (0..n - 8).step_by(8) {
            dst[i..i + 8].copy_from_slice(&src[i..i + 8]);
        }
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
    }
}

/// `dst[i] += src[i]`, in whole vectors of 8 then one by one.
#[inline]
fn add_row(dst: &mut [f32], src: &[f32]) {
    let dst = &mut dst[..src.len()];
    let mut d8 = dst.chunks_exact_mut(8);
    let mut s8 = src.chunks_exact(8);
    for (d, s) in (&mut d8).zip(&mut s8) {
        for j in 0..8 {
            d[j] += s[j];
        }
    }
    for (d, &s) in d8.into_remainder().iter_mut().zip(s8.remainder()) {
        *d += s;
    }
}

/// `dst[i] = src[i * stride]`: the columns of a strided convolution's
/// unfolding (stride 2 on AVX-512: 16 at a time, the even elements of 32).
pub(super) fn copy_strided(dst: &mut [f32], src: &[f32], stride: usize) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    let src = &src[..(n - 1) * stride + 1];
    #[cfg(target_arch = "x86_64")]
    if stride == 2 && cpu::isa() == Isa::Avx512 {
        // SAFETY: AVX-512F is available; `src` holds 2n - 1 elements.
        unsafe { copy_evens_avx512(dst, src) };
        return;
    }
    for (i, d) in dst.iter_mut().enumerate() {
        *d = src[i * stride];
    }
}

/// `dst[i] = src[2 i]`.
///
/// # Safety
/// The CPU supports AVX-512F; `src.len() >= 2 * dst.len() - 1`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn copy_evens_avx512(dst: &mut [f32], src: &[f32]) {
    use std::arch::x86_64::_mm512_mask_storeu_ps;
    let n = dst.len();
    debug_assert!(src.len() >= 2 * n - 1);
    for i in (0..n).step_by(16) {
        let len = (n - i).min(16);
        // SAFETY: lanes 0..len read src[2 i ..= 2 (i + len - 1)], inside
        // `src`, and write dst[i..i + len].
        unsafe {
            let v = strided::load(src.as_ptr().add(2 * i), 2, 0, len);
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), strided::lanes(0, len), v);
        }
    }
}

/// Output columns `lo..hi` whose input column `ow * stride + offset - pad` lies
/// in `0..size`.
pub(super) fn valid_range(
    out: usize,
    offset: usize,
    pad: usize,
    stride: usize,
    size: usize,
) -> (usize, usize) {
    // First ow with ow * stride + offset >= pad.
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    // Last ow with ow * stride + offset - pad < size.
    let hi = if size + pad > offset {
        (size + pad - offset).div_ceil(stride)
    } else {
        0
    };
    (lo.min(out), hi.min(out).max(lo.min(out)))
}
