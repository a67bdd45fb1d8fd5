//! Small `C`, long `K`, both operands contiguous along `K`: `C = A B^T` as
//! dot products (AVX-512).
//!
//! Convolution weight gradients of layers with few input channels (LeNet-5's
//! conv1: 6 x 25 over 576 pixels; ResNet-20's conv1: 16 x 27 over 1024) are
//! this shape. The packed micro-kernel wastes most of its 12 x 32 tile there
//! and transposes both operands; here a 4 x 4 block of `C` keeps 16 vector
//! accumulators along `K`, loads 8 vectors per 16 FMAs, packs nothing and
//! reduces each accumulator once at the end.

use super::Problem;

/// Whether `p` takes this path (on AVX-512): `A` rows and `B` columns
/// contiguous along `K`, a small `C` and `K` long enough that the final
/// reductions are cheap.
pub(crate) fn suits(p: &Problem) -> bool {
    p.csa == 1 && p.rsb == 1 && p.k >= 128 && p.m * p.n <= 128 * 128 && p.m.min(p.n) <= 32
}

/// `C = alpha A B + beta C` for a problem that [`suits`].
///
/// # Safety
/// AVX-512F must be available; `p` must describe valid matrices with
/// `csa == 1` and `rsb == 1`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn gemm(p: &Problem) {
    use std::arch::x86_64::*;
    const R: usize = 4;
    let (m, n, k) = (p.m, p.n, p.k);
    let tail = (k % 16) as u16;
    let tail_mask: __mmask16 = (1u32 << tail).wrapping_sub(1) as u16;
    for i0 in (0..m).step_by(R) {
        // Rows past the end repeat the last row; their sums are not stored.
        // SAFETY: every row pointer addresses a valid row of `A` (rows < m).
        let a: [*const f32; R] =
            std::array::from_fn(|r| unsafe { p.a.offset((i0 + r).min(m - 1) as isize * p.rsa) });
        for j0 in (0..n).step_by(R) {
            // SAFETY: as for `a`, columns of `B`.
            let b: [*const f32; R] = std::array::from_fn(|c| unsafe {
                p.b.offset((j0 + c).min(n - 1) as isize * p.csb)
            });
            let mut acc = [[_mm512_setzero_ps(); R]; R];
            let mut kk = 0;
            // SAFETY: `kk + 16 <= k` inside the loop; the tail reads only the
            // lanes below `k` (masked). Rows of A and columns of B hold `k`
            // contiguous floats.
            unsafe {
                while kk + 16 <= k {
                    let bv: [__m512; R] = std::array::from_fn(|c| _mm512_loadu_ps(b[c].add(kk)));
                    for r in 0..R {
                        let av = _mm512_loadu_ps(a[r].add(kk));
                        for c in 0..R {
                            acc[r][c] = _mm512_fmadd_ps(av, bv[c], acc[r][c]);
                        }
                    }
                    kk += 16;
                }
                if tail != 0 {
                    let bv: [__m512; R] =
                        std::array::from_fn(|c| _mm512_maskz_loadu_ps(tail_mask, b[c].add(kk)));
                    for r in 0..R {
                        let av = _mm512_maskz_loadu_ps(tail_mask, a[r].add(kk));
                        for c in 0..R {
                            acc[r][c] = _mm512_fmadd_ps(av, bv[c], acc[r][c]);
                        }
                    }
                }
            }
            for (r, row) in acc.iter().enumerate().take(m - i0) {
                for (c, v) in row.iter().enumerate().take(n - j0) {
                    let s = p.alpha * _mm512_reduce_add_ps(*v);
                    // SAFETY: (i0 + r, j0 + c) is inside the m x n C.
                    unsafe {
                        let dst =
                            p.c.offset((i0 + r) as isize * p.rsc + (j0 + c) as isize * p.csc);
                        *dst = if p.beta == 0.0 { s } else { s + p.beta * *dst };
                    }
                }
            }
        }
    }
}
