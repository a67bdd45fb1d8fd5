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
            // SAFETY: AVX-512F is available (caller's contract).
            let sums = unsafe { sum_4x4(&acc) };
            for r in 0..R.min(m - i0) {
                for c in 0..R.min(n - j0) {
                    let s = p.alpha * sums[r * R + c];
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

/// The lane sums of a 4 x 4 block of accumulators, `[r * 4 + c]` for
/// `acc[r][c]`: a transposing tree of 45 shuffles and additions rather
/// than 16 separate reductions (about 110), which cost a third of a block's
/// work at `K = 256`.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn sum_4x4(acc: &[[std::arch::x86_64::__m512; 4]; 4]) -> [f32; 16] {
    use std::arch::x86_64::*;
    let v: [__m512; 16] = std::array::from_fn(|i| acc[i / 4][i % 4]);
    // Per 128-bit lane, [a0+a2, b0+b2, a1+a3, b1+b3] for each pair (a, b).
    let x: [__m512; 8] = std::array::from_fn(|i| {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
    });
    // Per 128-bit lane, the lane's partial sums of vectors 4i .. 4i+3.
    let y: [__m512; 4] = std::array::from_fn(|i| {
        let (a, b) = (_mm512_castps_pd(x[2 * i]), _mm512_castps_pd(x[2 * i + 1]));
        _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)),
        )
    });
    // Lanes [0 + 2, 1 + 3] of two such vectors, then the last pair.
    let pair = |a: __m512, b: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
        )
    };
    let (s01, s23) = (pair(y[0], y[1]), pair(y[2], y[3]));
    let out = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b10_00_10_00>(s01, s23),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(s01, s23),
    );
    let mut sums = [0.0f32; 16];
    // SAFETY: `sums` holds 16 floats.
    unsafe { _mm512_storeu_ps(sums.as_mut_ptr(), out) };
    sums
}
