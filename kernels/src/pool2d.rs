//! 2-D max and average pooling in NCHW, forward and backward, with Torch7/Caffe
//! output sizes (floor or ceil mode), symmetric padding, both average-pooling
//! divisor conventions, and global pooling. Max pooling records the argmax of
//! each window (as `ih * W + iw` within its plane) for the backward pass.

use rayon::prelude::*;

use crate::cpu::{self, Isa};
use crate::error::{KernelError, Result, check_lens};
use crate::pool;

const OP: &str = "pool2d";

/// The geometry of a pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2d {
    /// Images per batch (N).
    pub batch: usize,
    /// Channels (C).
    pub channels: usize,
    /// Input height (H).
    pub in_h: usize,
    /// Input width (W).
    pub in_w: usize,
    /// Window height.
    pub kernel_h: usize,
    /// Window width.
    pub kernel_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero (or -inf for max) rows above and below.
    pub pad_h: usize,
    /// Zero (or -inf for max) columns left and right.
    pub pad_w: usize,
    /// Round the output size up (Caffe, BigDL `ceil()`), else down (Torch default).
    pub ceil_mode: bool,
    /// Average pooling divides by the window including padding (Caffe, Torch
    /// default) or only by the elements inside the image.
    pub count_include_pad: bool,
}

/// A validated pooling with its output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolPlan {
    /// The geometry.
    pub pool: Pool2d,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
}

impl Pool2d {
    /// A `k x k` window with stride `s`, padding `p`, floor mode, padding counted.
    pub fn new(
        batch: usize,
        channels: usize,
        in_hw: (usize, usize),
        k: usize,
        s: usize,
        p: usize,
    ) -> Pool2d {
        Pool2d {
            batch,
            channels,
            in_h: in_hw.0,
            in_w: in_hw.1,
            kernel_h: k,
            kernel_w: k,
            stride_h: s,
            stride_w: s,
            pad_h: p,
            pad_w: p,
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// Global pooling: one window covering each whole plane.
    pub fn global(batch: usize, channels: usize, in_hw: (usize, usize)) -> Pool2d {
        Pool2d::new(batch, channels, in_hw, 1, 1, 0).with_kernel(in_hw.0, in_hw.1)
    }

    fn with_kernel(mut self, kh: usize, kw: usize) -> Pool2d {
        self.kernel_h = kh;
        self.kernel_w = kw;
        self
    }

    /// Validates the geometry and computes the output size.
    pub fn plan(&self) -> Result<PoolPlan> {
        let p = self;
        let bad = |what: String| KernelError::InvalidArgument { op: OP, what };
        if [p.kernel_h, p.kernel_w, p.stride_h, p.stride_w].contains(&0) {
            return Err(bad(format!("kernel and stride must be positive: {p:?}")));
        }
        if p.pad_h >= p.kernel_h || p.pad_w >= p.kernel_w {
            return Err(bad(format!(
                "padding {}x{} must be smaller than the window {}x{}",
                p.pad_h, p.pad_w, p.kernel_h, p.kernel_w
            )));
        }
        let out = |size: usize, k: usize, s: usize, pad: usize| -> Result<usize> {
            let padded = size.saturating_add(pad.saturating_mul(2));
            if padded < k || size == 0 {
                return Err(bad(format!(
                    "a window of {k} does not fit {size} padded by {pad}"
                )));
            }
            let steps = if p.ceil_mode {
                (padded - k).div_ceil(s)
            } else {
                (padded - k) / s
            };
            let mut o = steps + 1;
            // The last window must start inside the image or its left padding
            // (Torch and Caffe check this only when padded; unpadded ceil mode
            // with stride > kernel would otherwise get empty windows).
            if (o - 1).saturating_mul(s) >= size.saturating_add(pad) {
                o -= 1;
            }
            Ok(o)
        };
        let out_h = out(p.in_h, p.kernel_h, p.stride_h, p.pad_h)?;
        let out_w = out(p.in_w, p.kernel_w, p.stride_w, p.pad_w)?;
        // Buffer sizes must be representable, and argmax indices fit in u32.
        let elems = |s: [usize; 4]| s.iter().try_fold(1usize, |a, &x| a.checked_mul(x));
        let fits = [
            [p.batch, p.channels, p.in_h, p.in_w],
            [p.batch, p.channels, out_h, out_w],
        ]
        .into_iter()
        .all(|s| elems(s).is_some_and(|n| n <= isize::MAX as usize / 8))
            && p.in_h
                .checked_mul(p.in_w)
                .is_some_and(|n| n <= u32::MAX as usize);
        if !fits {
            return Err(bad(format!("sizes overflow: {p:?}")));
        }
        Ok(PoolPlan {
            pool: *p,
            out_h,
            out_w,
        })
    }
}

impl PoolPlan {
    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        let p = &self.pool;
        p.batch * p.channels * p.in_h * p.in_w
    }

    /// Elements of the output (and of the argmax indices).
    pub fn output_len(&self) -> usize {
        self.pool.batch * self.pool.channels * self.out_h * self.out_w
    }

    fn check(&self, bufs: &[(&'static str, usize, usize)]) -> Result<()> {
        check_lens(OP, bufs)
    }

    /// Rows `h0..h1` and columns `w0..w1` of the window of output (oh, ow), clipped
    /// to the image, and the window's size clipped only to the padded image.
    fn window(&self, oh: usize, ow: usize) -> (usize, usize, usize, usize, usize) {
        let p = &self.pool;
        let hs = (oh * p.stride_h) as isize - p.pad_h as isize;
        let ws = (ow * p.stride_w) as isize - p.pad_w as isize;
        let he = (hs + p.kernel_h as isize).min((p.in_h + p.pad_h) as isize);
        let we = (ws + p.kernel_w as isize).min((p.in_w + p.pad_w) as isize);
        let padded = ((he - hs) * (we - ws)) as usize;
        let (h0, w0) = (hs.max(0) as usize, ws.max(0) as usize);
        let (h1, w1) = ((he as usize).min(p.in_h), (we as usize).min(p.in_w));
        (h0, h1, w0, w1, padded)
    }

    /// Whether to split planes over the pool (large enough, not already inside
    /// a worker).
    fn parallel(&self) -> bool {
        self.output_len() >= 1 << 15 && pool::num_threads() > 1 && !pool::in_worker()
    }

    /// Calls `f(oh, ow, window)` for every output position of one plane.
    fn each(&self, mut f: impl FnMut(usize, usize, (usize, usize, usize, usize, usize))) {
        for oh in 0..self.out_h {
            for ow in 0..self.out_w {
                f(oh, ow, self.window(oh, ow));
            }
        }
    }

    /// Max pooling: `output` gets each window's maximum (NaN if the window holds
    /// one), `indices` its position `ih * W + iw` in the plane.
    pub fn max_forward(
        &self,
        input: &[f32],
        output: &mut [f32],
        indices: &mut [u32],
    ) -> Result<()> {
        self.check(&[
            ("input", input.len(), self.input_len()),
            ("output", output.len(), self.output_len()),
            ("indices", indices.len(), self.output_len()),
        ])?;
        let (hw, ohw) = (self.pool.in_h * self.pool.in_w, self.out_h * self.out_w);
        let plane = |x: &[f32], y: &mut [f32], idx: &mut [u32]| self.max_plane(x, y, idx);
        if self.parallel() {
            pool::install(|| {
                input
                    .par_chunks(hw)
                    .zip(output.par_chunks_mut(ohw).zip(indices.par_chunks_mut(ohw)))
                    .for_each(|(x, (y, i))| plane(x, y, i))
            });
        } else {
            input
                .chunks(hw)
                .zip(output.chunks_mut(ohw).zip(indices.chunks_mut(ohw)))
                .for_each(|(x, (y, i))| plane(x, y, i));
        }
        Ok(())
    }

    fn max_plane(&self, x: &[f32], y: &mut [f32], indices: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        if cpu::isa() == Isa::Avx512 && self.pool.stride_w <= 2 {
            // SAFETY: AVX-512F is available.
            unsafe { self.max_plane_rows(x, y, indices) };
            return;
        }
        let w = self.pool.in_w;
        self.each(|oh, ow, (h0, h1, w0, w1, _)| {
            let (mut best, mut at) = (f32::NEG_INFINITY, h0 * w + w0);
            'scan: for ih in h0..h1 {
                for (iw, &v) in x[ih * w + w0..ih * w + w1].iter().enumerate() {
                    if v > best || v.is_nan() {
                        (best, at) = (v, ih * w + w0 + iw);
                        if v.is_nan() {
                            break 'scan;
                        }
                    }
                }
            }
            y[oh * self.out_w + ow] = best;
            indices[oh * self.out_w + ow] = at as u32;
        });
    }

    /// [`PoolPlan::max_plane`] in vectors of 16 outputs, taking the taps of
    /// the windows (window rows, then columns: a window's scan order) one at
    /// a time, masked to the outputs whose window each lies in: rows of up
    /// to 16 outputs hold them in registers through every tap (LeNet-5's
    /// pool1 1.4x faster than a pass per tap), longer rows take a pass per
    /// tap over the row. As in the scan, the first maximum of a window wins
    /// ties and its first NaN wins over everything. 3x faster than the scan
    /// for ResNet-50's pool1.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; the stride across is 1 or 2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn max_plane_rows(&self, x: &[f32], y: &mut [f32], indices: &mut [u32]) {
        let p = &self.pool;
        let (w, s, ow_n) = (p.in_w, p.stride_w, self.out_w);
        let tap = |kw: usize| self.tap_outputs(kw);
        for oh in 0..self.out_h {
            let (h0, h1, ..) = self.window(oh, 0);
            let row = avx512::Row {
                x: &x[h0 * w..h1 * w],
                w,
                first_row: h0,
                s,
                pad: p.pad_w,
            };
            let (yrow, irow) = (
                &mut y[oh * ow_n..][..ow_n],
                &mut indices[oh * ow_n..][..ow_n],
            );
            if ow_n > 16 {
                // Longer rows: a pass per tap over the whole row keeps more
                // independent work in flight than a chain of taps per 16
                // outputs (ResNet-50's pool1: 13% faster).
                yrow.fill(f32::NEG_INFINITY);
                for (ow, i) in irow.iter_mut().enumerate() {
                    *i = (h0 * w + self.window(oh, ow).2) as u32;
                }
                for ih in h0..h1 {
                    let xrow = &x[ih * w..][..w];
                    for kw in 0..p.kernel_w {
                        let (lo, hi) = tap(kw);
                        if lo >= hi {
                            continue;
                        }
                        let first = lo * s + kw - p.pad_w;
                        let at = (ih * w + first) as u32;
                        // SAFETY: AVX-512F (caller); s is 1 or 2.
                        unsafe {
                            avx512::max_tap(
                                &mut yrow[lo..hi],
                                &mut irow[lo..hi],
                                &xrow[first..],
                                s,
                                at,
                            )
                        };
                    }
                }
                continue;
            }
            for o0 in (0..ow_n).step_by(16) {
                let len = (ow_n - o0).min(16);
                // SAFETY: AVX-512F (caller); s is 1 or 2; the chunk lies in
                // the output row.
                unsafe {
                    avx512::max_chunk(
                        &row,
                        p.kernel_w,
                        &tap,
                        o0,
                        &mut yrow[o0..][..len],
                        &mut irow[o0..][..len],
                    )
                };
            }
        }
    }

    /// Outputs of a row of windows whose tap `kw` lands inside the input
    /// row: `lo..hi` (empty when none does).
    fn tap_outputs(&self, kw: usize) -> (usize, usize) {
        let p = &self.pool;
        let lo = (p.pad_w.saturating_sub(kw)).div_ceil(p.stride_w);
        let hi = match (p.in_w + p.pad_w).checked_sub(kw + 1) {
            Some(last) => (last / p.stride_w + 1).min(self.out_w),
            None => 0,
        };
        (lo, hi)
    }

    /// Max pooling for inference: the values of [`PoolPlan::max_forward`]
    /// (a window's maximum, NaN if it holds one) without the argmax, which
    /// lets each row of windows take the column maxima of its input rows
    /// first (ResNet-50's pool1 at batch 32: 4x faster). Equal under `==`:
    /// where a window's maximum is both `0.0` and `-0.0`, or several NaNs,
    /// which one is kept can differ from the scan's.
    pub fn max_values(&self, input: &[f32], output: &mut [f32]) -> Result<()> {
        self.check(&[
            ("input", input.len(), self.input_len()),
            ("output", output.len(), self.output_len()),
        ])?;
        let (hw, ohw) = (self.pool.in_h * self.pool.in_w, self.out_h * self.out_w);
        // Planes in groups, each with one row of column maxima.
        let planes = |x: &[f32], y: &mut [f32]| {
            let (mut cols, mut idx) = (Vec::new(), Vec::new());
            for (x, y) in x.chunks(hw).zip(y.chunks_mut(ohw)) {
                self.max_plane_values(x, y, &mut cols, &mut idx);
            }
        };
        if self.parallel() {
            let per = (self.pool.batch * self.pool.channels).div_ceil(8 * pool::num_threads());
            pool::install(|| {
                input
                    .par_chunks(per * hw)
                    .zip(output.par_chunks_mut(per * ohw))
                    .for_each(|(x, y)| planes(x, y))
            });
        } else {
            planes(input, output);
        }
        Ok(())
    }

    /// One plane of [`PoolPlan::max_values`]; `cols` and `idx` are scratch
    /// (grown as needed): the vector path's column maxima, or the scan's
    /// positions where that path does not apply.
    fn max_plane_values(&self, x: &[f32], y: &mut [f32], cols: &mut Vec<f32>, idx: &mut Vec<u32>) {
        #[cfg(target_arch = "x86_64")]
        if cpu::isa() == Isa::Avx512 && self.pool.stride_w <= 2 {
            // SAFETY: AVX-512F is available.
            unsafe { self.max_plane_values_avx512(x, y, cols) };
            return;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = cols;
        idx.resize(y.len(), 0);
        self.max_plane(x, y, idx);
    }

    /// Rows of windows ahead whose input rows the vector max pooling
    /// prefetches.
    #[cfg(target_arch = "x86_64")]
    const PREFETCH_ROWS: usize = 2;

    /// [`PoolPlan::max_plane_values`] in vectors: per row of windows, the
    /// maxima of its input rows' columns in one pass, into a row padded
    /// with `-inf` on both sides (so every tap of every window lies inside
    /// it), then one pass across with all the taps of 16 windows at once
    /// (ResNet-50's pool1: one thread, in cache, 190 -> 160 us per image;
    /// batch 32 on 2 threads, from memory, 400 -> 117 us per image).
    ///
    /// # Safety
    /// The CPU supports AVX-512F; the stride across is 1 or 2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn max_plane_values_avx512(&self, x: &[f32], y: &mut [f32], cols: &mut Vec<f32>) {
        use std::arch::x86_64::*;
        let p = &self.pool;
        let (w, s, k, ow_n) = (p.in_w, p.stride_w, p.kernel_w, self.out_w);
        // Room past the last window for whole-vector loads (32 floats).
        let len = ((ow_n - 1) * s + k).max(p.pad_w + w) + 32;
        cols.clear();
        cols.resize(len, f32::NEG_INFINITY);
        for oh in 0..self.out_h {
            let (h0, h1, ..) = self.window(oh, 0);
            let yrow = &mut y[oh * ow_n..][..ow_n];
            if h0 >= h1 {
                yrow.fill(f32::NEG_INFINITY);
                continue;
            }
            // The input rows of the windows PREFETCH_ROWS rows ahead: at
            // batch 32 the planes come from memory, and the hardware's
            // prefetcher left this loop waiting on them (2.5x slower).
            if oh + Self::PREFETCH_ROWS < self.out_h {
                let (a, b, ..) = self.window(oh + Self::PREFETCH_ROWS, 0);
                crate::memory::prefetch(&x[a * w..b.max(a) * w]);
            }
            for i in (0..w).step_by(16) {
                let m = crate::strided::lanes(0, (w - i).min(16));
                // SAFETY: lanes of `m` are columns i.. < w of rows h0..h1 of
                // the plane, and of cols from pad_w (len > pad_w + w).
                unsafe {
                    let mut v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(h0 * w + i));
                    for ih in h0 + 1..h1 {
                        let r = _mm512_maskz_loadu_ps(m, x.as_ptr().add(ih * w + i));
                        v = avx512::max_keep_nan(v, r);
                    }
                    _mm512_mask_storeu_ps(cols.as_mut_ptr().add(p.pad_w + i), m, v);
                }
            }
            for o in (0..ow_n).step_by(16) {
                let n = (ow_n - o).min(16);
                // SAFETY: window o + j reads cols[(o + j) * s + kw], kw < k,
                // inside cols (len above); s is 1 or 2 (caller).
                unsafe {
                    let at = cols.as_ptr().add(o * s);
                    let mut v = crate::strided::load(at, s, 0, n);
                    for kw in 1..k {
                        v = avx512::max_keep_nan(v, crate::strided::load(at.add(kw), s, 0, n));
                    }
                    _mm512_mask_storeu_ps(yrow.as_mut_ptr().add(o), crate::strided::lanes(0, n), v);
                }
            }
        }
    }

    /// Max pooling backward: each output gradient goes to its window's argmax
    /// (`grad_input` is overwritten).
    pub fn max_backward(
        &self,
        grad_output: &[f32],
        indices: &[u32],
        grad_input: &mut [f32],
    ) -> Result<()> {
        self.check(&[
            ("grad_output", grad_output.len(), self.output_len()),
            ("indices", indices.len(), self.output_len()),
            ("grad_input", grad_input.len(), self.input_len()),
        ])?;
        let (hw, ohw) = (self.pool.in_h * self.pool.in_w, self.out_h * self.out_w);
        // One pass: indices are checked as they are used, and the smallest
        // bad one is reported (`grad_input` is then partly written).
        let plane = |gy: &[f32], idx: &[u32], gx: &mut [f32]| -> Option<u32> {
            gx.fill(0.0);
            let mut bad = None;
            for (&g, &i) in gy.iter().zip(idx) {
                match gx.get_mut(i as usize) {
                    Some(v) => *v += g,
                    None => bad = bad.or(Some(i)),
                }
            }
            bad
        };
        let bad = if self.parallel() {
            pool::install(|| {
                grad_output
                    .par_chunks(ohw)
                    .zip(indices.par_chunks(ohw))
                    .zip(grad_input.par_chunks_mut(hw))
                    .filter_map(|((gy, i), gx)| plane(gy, i, gx))
                    .min()
            })
        } else {
            grad_output
                .chunks(ohw)
                .zip(indices.chunks(ohw))
                .zip(grad_input.chunks_mut(hw))
                .filter_map(|((gy, i), gx)| plane(gy, i, gx))
                .min()
        };
        match bad {
            Some(i) => Err(KernelError::InvalidArgument {
                op: OP,
                what: format!("argmax index {i} outside a plane of {hw}"),
            }),
            None => Ok(()),
        }
    }

    fn divisor(&self, (h0, h1, w0, w1, padded): (usize, usize, usize, usize, usize)) -> f32 {
        if self.pool.count_include_pad {
            padded as f32
        } else {
            ((h1 - h0) * (w1 - w0)) as f32
        }
    }

    /// Runs `f(a_plane, b_plane)` over all planes, split over the pool when large.
    fn planes(
        &self,
        a: &[f32],
        a_plane: usize,
        b: &mut [f32],
        b_plane: usize,
        f: impl Fn(&[f32], &mut [f32]) + Sync,
    ) {
        if self.parallel() {
            pool::install(|| {
                a.par_chunks(a_plane)
                    .zip(b.par_chunks_mut(b_plane))
                    .for_each(|(a, b)| f(a, b))
            });
        } else {
            a.chunks(a_plane)
                .zip(b.chunks_mut(b_plane))
                .for_each(|(a, b)| f(a, b));
        }
    }

    /// Average pooling.
    pub fn avg_forward(&self, input: &[f32], output: &mut [f32]) -> Result<()> {
        self.check(&[
            ("input", input.len(), self.input_len()),
            ("output", output.len(), self.output_len()),
        ])?;
        let (w, hw, ohw) = (
            self.pool.in_w,
            self.pool.in_h * self.pool.in_w,
            self.out_h * self.out_w,
        );
        self.planes(input, hw, output, ohw, |x, y| {
            self.each(|oh, ow, win| {
                let (h0, h1, w0, w1, _) = win;
                let s: f32 = (h0..h1)
                    .map(|ih| x[ih * w + w0..ih * w + w1].iter().sum::<f32>())
                    .sum();
                y[oh * self.out_w + ow] = s / self.divisor(win);
            })
        });
        Ok(())
    }

    /// Average pooling backward (`grad_input` is overwritten).
    pub fn avg_backward(&self, grad_output: &[f32], grad_input: &mut [f32]) -> Result<()> {
        self.check(&[
            ("grad_output", grad_output.len(), self.output_len()),
            ("grad_input", grad_input.len(), self.input_len()),
        ])?;
        let (w, hw, ohw) = (
            self.pool.in_w,
            self.pool.in_h * self.pool.in_w,
            self.out_h * self.out_w,
        );
        self.planes(grad_output, ohw, grad_input, hw, |gy, gx| {
            gx.fill(0.0);
            self.each(|oh, ow, win| {
                let (h0, h1, w0, w1, _) = win;
                let g = gy[oh * self.out_w + ow] / self.divisor(win);
                for ih in h0..h1 {
                    gx[ih * w + w0..ih * w + w1]
                        .iter_mut()
                        .for_each(|v| *v += g);
                }
            })
        });
        Ok(())
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use crate::strided;

    /// The input rows of one row of windows.
    pub(super) struct Row<'a> {
        /// Rows `first_row..`, `w` floats each.
        pub x: &'a [f32],
        pub w: usize,
        pub first_row: usize,
        /// Stride across (1 or 2) and left padding.
        pub s: usize,
        pub pad: usize,
    }

    /// The lanes where candidate `v` replaces the running maximum `cur`
    /// (within `m`): a larger value, or a NaN over anything but a NaN.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn take(v: __m512, cur: __m512, m: __mmask16) -> __mmask16 {
        let nan_v = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        let nan_cur = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(cur, cur);
        (_mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, cur) | nan_v) & !(nan_v & nan_cur) & m
    }

    /// Max pooling of outputs `o0 .. o0 + y.len()` (at most 16) of a row of
    /// windows `kw_n` wide: every tap of `row` (`tap(kw)`: the outputs it
    /// lies in), in scan order; `y` and `idx` (plane positions) written.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `row.s` is 1 or 2; `tap` gives ranges
    /// inside the output row, for which the tap's elements lie inside the
    /// input row.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn max_chunk(
        row: &Row<'_>,
        kw_n: usize,
        tap: &impl Fn(usize) -> (usize, usize),
        o0: usize,
        y: &mut [f32],
        idx: &mut [u32],
    ) {
        let (n, s, w) = (y.len(), row.s, row.w);
        debug_assert!((1..=16).contains(&n) && idx.len() == n && (s == 1 || s == 2));
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let step = _mm512_mullo_epi32(lane, _mm512_set1_epi32(s as i32));
        // Before any tap: -inf at the window's first element (plane
        // positions as u32 bit patterns in i32 lanes).
        let start = _mm512_max_epi32(
            _mm512_sub_epi32(
                _mm512_add_epi32(_mm512_set1_epi32((o0 * s) as i32), step),
                _mm512_set1_epi32(row.pad as i32),
            ),
            _mm512_setzero_si512(),
        );
        let mut bi = _mm512_add_epi32(_mm512_set1_epi32((row.first_row * w) as i32), start);
        let mut bv = _mm512_set1_ps(f32::NEG_INFINITY);
        for (r, xr) in row.x.chunks_exact(w).enumerate() {
            for kw in 0..kw_n {
                let (lo, hi) = tap(kw);
                let (lo, hi) = (lo.max(o0), hi.min(o0 + n));
                if lo >= hi {
                    continue;
                }
                // Element of lane 0 (before the row when the left lanes
                // are padding: those lanes are masked off, never read).
                let first = (o0 * s + kw) as isize - row.pad as isize;
                let p = xr.as_ptr().wrapping_offset(first);
                // SAFETY: the lanes lo - o0 .. hi - o0 read inside `xr`
                // (caller's contract).
                let v = unsafe { strided::load(p, s, lo - o0, hi - o0) };
                let at = ((row.first_row + r) * w) as isize + first;
                let pos = _mm512_add_epi32(_mm512_set1_epi32(at as i32), step);
                let t = take(v, bv, strided::lanes(lo - o0, hi - o0));
                bv = _mm512_mask_mov_ps(bv, t, v);
                bi = _mm512_mask_mov_epi32(bi, t, pos);
            }
        }
        let m = strided::lanes(0, n);
        // SAFETY: lanes of `m` are y[..n] and idx[..n].
        unsafe {
            _mm512_mask_storeu_ps(y.as_mut_ptr(), m, bv);
            _mm512_mask_storeu_epi32(idx.as_mut_ptr().cast(), m, bi);
        }
    }

    /// One tap of max pooling, 16 outputs a vector: `y[o] = max(y[o],
    /// x[o * s])`, where `x[o * s]` is the plane's element `at + o * s`,
    /// whose position replaces `idx[o]` with the value. A later candidate
    /// replaces only a larger value, and a NaN anything but a NaN.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `s` is 1 or 2.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn max_tap(y: &mut [f32], idx: &mut [u32], x: &[f32], s: usize, at: u32) {
        debug_assert!(s == 1 || s == 2);
        let n = y.len();
        // The tap reads x[..(n - 1) * s + 1].
        assert!(n >= 1 && x.len() > (n - 1) * s && idx.len() == n);
        let step = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(s as i32),
        );
        let mut o = 0;
        while o < n {
            let len = (n - o).min(16);
            let m = strided::lanes(0, len);
            // SAFETY: lanes 0..len are outputs o..n, whose inputs lie in
            // x[..(n - 1) * s + 1].
            let v = unsafe { strided::load(x.as_ptr().add(o * s), s, 0, len) };
            let yp = y.as_mut_ptr().wrapping_add(o);
            // SAFETY: lanes of `m` are y[o..n].
            let cur = unsafe { _mm512_maskz_loadu_ps(m, yp) };
            let t = take(v, cur, m);
            // Plane positions: u32 bit patterns in i32 lanes.
            let pos = _mm512_add_epi32(_mm512_set1_epi32((at as usize + o * s) as i32), step);
            // SAFETY: lanes of `t` (within `m`) are y[o..n] and idx[o..n].
            unsafe {
                _mm512_mask_storeu_ps(yp, t, v);
                _mm512_mask_storeu_epi32(idx.as_mut_ptr().wrapping_add(o).cast(), t, pos);
            }
            o += 16;
        }
    }

    /// `NaN`-keeping maximum: `v` where it is larger or a NaN, else `cur`
    /// (a NaN `cur` too: `max_ps` returns its second operand when either is
    /// a NaN).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn max_keep_nan(cur: __m512, v: __m512) -> __m512 {
        let m = _mm512_max_ps(v, cur);
        _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v), v)
    }
}
