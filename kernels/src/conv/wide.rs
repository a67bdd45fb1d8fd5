//! Forward products of convolutions with small output planes, vectorised
//! along the output channels (AVX-512): ResNet-50's last stages at batch 1.
//!
//! The column-matrix product `Y = W x cols` of `conv/mod.rs` runs the
//! SGEMM, whose micro-tiles hold runs of output pixels: a 7x7 plane (49
//! pixels) fills 49 of the 64 lanes its tiles hold, and a weight streamed
//! once from memory per image leaves the kernel waiting on it. Here the
//! weight is packed once ([`Panels`], in a
//! [`PackedWeights`](super::PackedWeights) kept by the caller across calls)
//! into panels of 32 output channels, `[group][panel][k][32]`, and a
//! micro-tile holds 32 channels (two zmm) for up to 12 pixels, each pixel's
//! column value broadcast. Every lane is used for any plane size; the
//! panels stream in order, prefetched ahead. The tile is transposed on its
//! way out (the output is NCHW), which is why this path needs deep products
//! (`k` from 128; see `WIDE_MIN_K`) to pay off.

use std::ops::Range;

use super::{Conv2d, ConvAlgo, ConvPlan, Tail};
use crate::error::Result;
use crate::pool::{self, SyncPtr};

/// Output channels per panel: two zmm.
pub(super) const PANEL: usize = 32;
/// Output pixels per micro-tile at most: 24 zmm accumulators.
const MAX_PIXELS: usize = 12;
/// The deepest block of `k` a tile runs before its sums go to the output.
const MAX_KC: usize = 1024;
/// Floats of the column matrix one block of pixels and `k` spans at most
/// (256 KiB: a quarter of Zen 5's L2), read by every panel in turn.
const COLUMN_BLOCK: usize = 64 << 10;
/// Floats of the panel prefetched ahead of the current `k` step (8 KiB,
/// 64 steps). Measured with weights that do not stay in cache, 2 threads
/// on Zen 5, 512 x 49 x 2048: none 311 GFLOP/s, 2 KiB 374, 8 KiB 433.
const PREFETCH: usize = 2048;

/// A weight packed for the wide path: `groups x ocg` rows of `k`.
#[derive(Clone)]
pub(super) struct Panels {
    /// Panels from `data[start]`, 64-byte aligned; channels past a group's
    /// last are zero.
    data: Vec<f32>,
    start: usize,
    ocg: usize,
    k: usize,
}

impl Panels {
    /// Packs `weight` (`groups x ocg` rows of `k`).
    pub(super) fn new(groups: usize, ocg: usize, k: usize, weight: &[f32]) -> Panels {
        assert_eq!(weight.len(), groups * ocg * k, "weight size");
        let panels = ocg.div_ceil(PANEL);
        let len = groups * panels * k * PANEL;
        let mut data = vec![0.0f32; len + 16];
        let start = data.as_ptr().align_offset(64);
        let packed = &mut data[start..][..len];
        for g in 0..groups {
            for o in 0..ocg {
                let (p, i) = (o / PANEL, o % PANEL);
                let panel = &mut packed[(g * panels + p) * k * PANEL..][..k * PANEL];
                let row = &weight[(g * ocg + o) * k..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * PANEL + i] = v;
                }
            }
        }
        Panels {
            data,
            start,
            ocg,
            k,
        }
    }

    /// Panels per group.
    pub(super) fn panels(&self) -> usize {
        self.ocg.div_ceil(PANEL)
    }

    fn panel(&self, g: usize, p: usize) -> &[f32] {
        let len = self.k * PANEL;
        &self.data[self.start + (g * self.panels() + p) * len..][..len]
    }
}

impl ConvPlan {
    /// The forward pass on packed weights: images split over the threads,
    /// or, when the plan runs images in turn, each image unfolded by
    /// channels and multiplied by panels of output channels on all of them.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn forward_wide(
        &self,
        input: &[f32],
        w: &Panels,
        bias: Option<&[f32]>,
        tail: Tail<'_>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<()> {
        let (k, p, ocg, c) = (self.k(), self.p(), self.ocg(), &self.conv);
        let (in_img, out_img) = (c.in_channels * c.in_h * c.in_w, c.out_channels * p);
        let in_grp = self.cg() * c.in_h * c.in_w;
        let tasks = if self.threads > 1 {
            1
        } else {
            self.tile_threads.min(w.panels()).max(1)
        };
        self.par_images(input, in_img, output, out_img, scratch, |i0, x, y, s| {
            for n in 0..x.len() / in_img {
                for g in 0..c.groups {
                    let x = &x[n * in_img + g * in_grp..][..in_grp];
                    let at = n * out_img + g * ocg * p;
                    let cols = if self.algo == ConvAlgo::Direct1x1 {
                        x
                    } else {
                        self.unfold_on(tasks, x, &mut s[..k * p]);
                        &s[..k * p]
                    };
                    let product = Product {
                        w,
                        g,
                        x: cols,
                        n: p,
                        bias: bias.map(|b| &b[g * ocg..][..ocg]),
                        residual: tail.residual.map(|r| &r[i0 * out_img + at..][..ocg * p]),
                        relu: tail.relu,
                    };
                    let out = SyncPtr(y[at..][..ocg * p].as_mut_ptr());
                    pool::run_tasks(tasks, |t| {
                        let panels = t * w.panels() / tasks..(t + 1) * w.panels() / tasks;
                        // SAFETY: the plan is wide only on AVX-512; the
                        // group's output rows are borrowed from `y`, and the
                        // tasks write disjoint panels of them.
                        unsafe { run(&product, panels, out.get()) };
                    });
                }
            }
            Ok(())
        })
    }

    /// [`ConvPlan::im2col`] of one image's group `x` into `cols` (`k x p`)
    /// as `tasks` tasks of input channels (each a contiguous block of rows).
    fn unfold_on(&self, tasks: usize, x: &[f32], cols: &mut [f32]) {
        let (cg, plane) = (self.cg(), self.conv.in_h * self.conv.in_w);
        let rows = self.k() / cg * self.p();
        let per = cg.div_ceil(tasks);
        let parts: Vec<_> = x
            .chunks(per * plane)
            .zip(cols.chunks_mut(per * rows))
            .collect();
        let unfold = |(x, cols): (&[f32], &mut [f32])| {
            // The same geometry on this block of channels.
            let part = ConvPlan {
                conv: Conv2d {
                    in_channels: x.len() / plane,
                    groups: 1,
                    ..self.conv
                },
                ..*self
            };
            part.im2col(x, cols, self.p(), 0);
        };
        pool::for_each_part(parts, unfold);
    }
}

/// What one call of [`run`] computes: group `g`'s output channels in
/// `panels` (of [`PANEL`]) for all `n` pixels.
pub(super) struct Product<'a> {
    pub w: &'a Panels,
    pub g: usize,
    /// The group's column matrix, `k x n`.
    pub x: &'a [f32],
    pub n: usize,
    /// The group's bias (`ocg`).
    pub bias: Option<&'a [f32]>,
    /// Added to the output before the ReLU (`ocg x n`, like the output).
    pub residual: Option<&'a [f32]>,
    pub relu: bool,
}

/// `out = relu?(W_g x + bias + residual)` for the rows of `panels`
/// (the group's `ocg x n` output; `out` points at its first element).
/// Blocked like an SGEMM: `k` in blocks of at most [`MAX_KC`] (the
/// output rows keep the partial sums), the pixels in chunks whose column
/// block stays in L2 while the panels pass over it.
///
/// # Safety
/// `out` is valid for writes of `ocg x n` floats that nothing else accesses
/// in the rows of `panels`; the CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn run(p: &Product<'_>, panels: Range<usize>, out: *mut f32) {
    let (w, n, k) = (p.w, p.n, p.w.k);
    assert!(p.x.len() >= k * n && panels.end <= w.panels());
    assert!(p.bias.is_none_or(|b| b.len() == w.ocg));
    assert!(p.residual.is_none_or(|r| r.len() == w.ocg * n));
    let k_blocks = k.div_ceil(MAX_KC);
    let kc_max = k.div_ceil(k_blocks);
    let chunks = (kc_max * n).div_ceil(COLUMN_BLOCK);
    let mut tile = [[0.0f32; PANEL]; MAX_PIXELS];
    for kb in 0..k_blocks {
        // Blocks as even as they go: 49 pixels are 5 blocks of 9 or 10.
        let (k0, k1) = (kb * k / k_blocks, (kb + 1) * k / k_blocks);
        let (first, last) = (kb == 0, kb + 1 == k_blocks);
        for c in 0..chunks {
            let (c0, c1) = (c * n / chunks, (c + 1) * n / chunks);
            let blocks = (c1 - c0).div_ceil(MAX_PIXELS);
            for q in panels.clone() {
                let rows = PANEL.min(w.ocg - q * PANEL);
                let panel = &w.panel(p.g, q)[k0 * PANEL..k1 * PANEL];
                for b in 0..blocks {
                    let j0 = c0 + b * (c1 - c0) / blocks;
                    let j1 = c0 + (b + 1) * (c1 - c0) / blocks;
                    // SAFETY: the panel's block holds k1 - k0 steps of
                    // PANEL; the column matrix k rows of n >= j1 floats
                    // (asserted above).
                    unsafe {
                        let x = p.x.as_ptr().add(k0 * n + j0);
                        tile_fn(j1 - j0)(panel.as_ptr(), x, n, k1 - k0, &mut tile)
                    };
                    let store = Store {
                        o0: q * PANEL,
                        rows,
                        j0,
                        pixels: j1 - j0,
                        first,
                        last,
                    };
                    // SAFETY: the tile's rows and pixels are inside the
                    // group's output (caller), AVX-512F (caller).
                    unsafe { store.run(p, &tile, out) };
                }
            }
        }
    }
}

/// Where a tile's sums go: output channels `o0..o0 + rows`, pixels
/// `j0..j0 + pixels`; the first block of `k` overwrites, later ones add,
/// the last applies the epilogue.
struct Store {
    o0: usize,
    rows: usize,
    j0: usize,
    pixels: usize,
    first: bool,
    last: bool,
}

impl Store {
    /// Transposes the tile (pixels x channels) into output rows (channels
    /// x pixels), 16 channels at a time, with the epilogue in the order of
    /// separate passes (as the SGEMM's): bias, residual, then ReLU
    /// (`max(0, x)`, which keeps NaN and -0 as the ReLU kernels do).
    ///
    /// # Safety
    /// The channels and pixels lie inside the `ocg x n` output at `out`;
    /// the CPU supports AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self, p: &Product<'_>, tile: &[[f32; PANEL]; MAX_PIXELS], out: *mut f32) {
        use std::arch::x86_64::*;
        debug_assert!(self.pixels <= MAX_PIXELS && self.rows <= PANEL);
        let n = p.n;
        let mask: __mmask16 = (1u32 << self.pixels) as u16 - 1;
        for h in 0..PANEL / 16 {
            if h * 16 >= self.rows {
                break;
            }
            let rows: [__m512; 16] = std::array::from_fn(|j| {
                if j < self.pixels {
                    // SAFETY: row j < MAX_PIXELS of the tile holds PANEL
                    // floats.
                    unsafe { _mm512_loadu_ps(tile[j].as_ptr().add(h * 16)) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            let cols = transpose16(rows);
            for (c, &col) in cols.iter().enumerate().take(self.rows - h * 16) {
                let o = self.o0 + h * 16 + c;
                let at = o * n + self.j0;
                // SAFETY: output row o < ocg, pixels j0..j0 + pixels <= n
                // (contract); masked-off lanes are not accessed.
                unsafe {
                    let mut v = col;
                    if !self.first {
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, out.add(at)));
                    }
                    if self.last {
                        if let Some(b) = p.bias {
                            v = _mm512_add_ps(v, _mm512_set1_ps(b[o]));
                        }
                        if let Some(r) = p.residual {
                            let r = r[at..][..self.pixels].as_ptr();
                            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, r));
                        }
                        if p.relu {
                            v = _mm512_max_ps(_mm512_setzero_ps(), v);
                        }
                    }
                    _mm512_mask_storeu_ps(out.add(at), mask, v);
                }
            }
        }
    }
}

/// The transpose of a 16 x 16 block of rows: lane `j` of column `i` is
/// lane `i` of row `j`. Four rounds of 16 shuffles: 32-bit and 64-bit
/// interleaves give, in each 128-bit quarter `q` of `u[4k + c]`, column
/// `4q + c` of rows `4k..4k + 4`; two rounds of quarter shuffles gather
/// those quarters.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let (k, c) = (i / 4, i % 4);
        let (a, b) = (
            _mm512_castps_pd(t[4 * k + c / 2]),
            _mm512_castps_pd(t[4 * k + 2 + c / 2]),
        );
        _mm512_castpd_ps(if c % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    // x[c][0]: quarters 0, 1 of u[c] and u[4 + c]; x[c][1]: quarters 2, 3;
    // y likewise of u[8 + c] and u[12 + c].
    let x: [[__m512; 2]; 4] = std::array::from_fn(|c| {
        [
            _mm512_shuffle_f32x4::<0x44>(u[c], u[4 + c]),
            _mm512_shuffle_f32x4::<0xEE>(u[c], u[4 + c]),
        ]
    });
    let y: [[__m512; 2]; 4] = std::array::from_fn(|c| {
        [
            _mm512_shuffle_f32x4::<0x44>(u[8 + c], u[12 + c]),
            _mm512_shuffle_f32x4::<0xEE>(u[8 + c], u[12 + c]),
        ]
    });
    // Column 4q + c: quarter q of u[c], u[4 + c], u[8 + c], u[12 + c].
    std::array::from_fn(|i| {
        let (q, c) = (i / 4, i % 4);
        let (a, b) = (x[c][q / 2], y[c][q / 2]);
        if q % 2 == 0 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xDD>(a, b)
        }
    })
}

type TileFn = unsafe fn(*const f32, *const f32, usize, usize, &mut [[f32; PANEL]; MAX_PIXELS]);

#[cfg(target_arch = "x86_64")]
fn tile_fn(pixels: usize) -> TileFn {
    match pixels {
        1 => tile::<1>,
        2 => tile::<2>,
        3 => tile::<3>,
        4 => tile::<4>,
        5 => tile::<5>,
        6 => tile::<6>,
        7 => tile::<7>,
        8 => tile::<8>,
        9 => tile::<9>,
        10 => tile::<10>,
        11 => tile::<11>,
        _ => tile::<MAX_PIXELS>,
    }
}

/// Rows `0..R` of `tile` = the `R` pixels from `x` (row stride `n`) times
/// the panel at `w`, over `k` steps.
///
/// # Safety
/// `w` holds `k x PANEL` floats, `x` `k` rows of `R` (stride `n`); the CPU
/// supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(
    w: *const f32,
    x: *const f32,
    n: usize,
    k: usize,
    tile: &mut [[f32; PANEL]; MAX_PIXELS],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for kk in 0..k {
        // SAFETY: step kk < k of the panel and row kk of x (contract);
        // prefetches do not fault, so they may run past the panel.
        unsafe {
            let ahead = w.wrapping_add(kk * PANEL + PREFETCH) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(ahead);
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            let w0 = _mm512_loadu_ps(w.add(kk * PANEL));
            let w1 = _mm512_loadu_ps(w.add(kk * PANEL + 16));
            let xr = x.add(kk * n);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*xr.add(r));
                acc_r[0] = _mm512_fmadd_ps(b, w0, acc_r[0]);
                acc_r[1] = _mm512_fmadd_ps(b, w1, acc_r[1]);
            }
        }
    }
    for (t, a) in tile.iter_mut().zip(&acc) {
        // SAFETY: each row of the tile holds PANEL = 2 x 16 floats.
        unsafe {
            _mm512_storeu_ps(t.as_mut_ptr(), a[0]);
            _mm512_storeu_ps(t.as_mut_ptr().add(16), a[1]);
        }
    }
}
