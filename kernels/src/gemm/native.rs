//! The native BLIS-style SGEMM: cache-blocked loops around packed panels and a
//! register-blocked micro-kernel. One thread's share of the work; threading is
//! done by the caller over disjoint blocks of `C`.

use std::cell::RefCell;

use super::blocking::{Blocking, micro_tile};
use super::microkernel::{self, Tile};
use super::pack::{pack_a, pack_b};
use super::problem::{Epi, Problem};
use crate::cpu::Isa;

/// Alignment of packed panels, in floats (64 bytes: one cache line, one zmm).
const ALIGN: usize = 16;

/// `C = alpha * A * B + beta * C` on the calling thread.
///
/// # Safety
/// `p` must describe valid matrices (as built by `Gemm`) and the CPU must support
/// `isa`; `blocking` must be `Blocking::for_isa(isa)` or have the same micro-tile.
pub(crate) unsafe fn gemm(isa: Isa, blocking: &Blocking, p: &Problem) {
    // SAFETY: forwarded contract; the micro-tile constants match `isa`.
    unsafe {
        match isa {
            Isa::Avx512 => blocked::<{ micro_tile(Isa::Avx512).0 }, { micro_tile(Isa::Avx512).1 }>(
                isa, blocking, p,
            ),
            Isa::Avx2 => blocked::<{ micro_tile(Isa::Avx2).0 }, { micro_tile(Isa::Avx2).1 }>(
                isa, blocking, p,
            ),
            Isa::Scalar => blocked::<{ micro_tile(Isa::Scalar).0 }, { micro_tile(Isa::Scalar).1 }>(
                isa, blocking, p,
            ),
        }
    }
}

/// Largest `n` for which `A` is read in place (AVX-512): each packed `A` element
/// would be used only `n` times, too few to repay the copy. Measured on Zen 4:
/// in-place `A` wins up to n = 512 and loses 10-15% at n >= 1024.
const DIRECT_A_MAX_N: usize = 512;
/// Above `DIRECT_A_ALWAYS_N` columns, `A` is read in place only for `k` below
/// `DIRECT_A_MAX_K`: a micro-panel's rows then lie 4 KiB or more apart, one
/// page each, and packing wins (Zen 4, one thread: 256 x 392 x 1024 103 vs
/// 95 GFLOP/s, 512 x 294 x 2048 93 vs 86, ResNet-50's 1x1 layers on 14x14
/// and 7x7 planes 7-8% faster; at n <= 128 in place still wins, 512 x 49 x
/// 4608 83 vs 65).
const DIRECT_A_ALWAYS_N: usize = 128;
const DIRECT_A_MAX_K: usize = 1024;
/// Largest `m` for which `B` is always read in place (AVX-512): at most four `A`
/// micro-panels reuse each packed `B` element.
const DIRECT_B_MAX_M: usize = 48;

/// Whether a product of `n` columns and depth `k` whose `A` has column
/// stride `csa` reads `A` in place rather than packing it.
pub(crate) fn reads_a_in_place(isa: Isa, csa: isize, n: usize, k: usize) -> bool {
    microkernel::has_direct(isa)
        && csa == 1
        && n <= DIRECT_A_MAX_N
        && (n <= DIRECT_A_ALWAYS_N || k < DIRECT_A_MAX_K)
}

unsafe fn blocked<const MR: usize, const NR: usize>(isa: Isa, bl: &Blocking, p: &Problem) {
    assert_eq!(
        (bl.mr, bl.nr),
        (MR, NR),
        "blocking does not match the {isa} micro-kernel"
    );
    let p = p.c_row_major();
    if p.m == 0 || p.n == 0 || p.k == 0 {
        // SAFETY: C is a valid m x n matrix (caller's contract).
        unsafe {
            p.scale_c();
            p.apply_epi(0, p.m, 0, p.n);
        }
        return;
    }
    let direct = microkernel::has_direct(isa);
    let packed_a = !p.pa.is_null();
    let direct_a = !packed_a && reads_a_in_place(isa, p.csa, p.n, p.k);
    let mc_max = bl.mc.min(p.m.next_multiple_of(MR));
    let kc_max = bl.kc.min(p.k);
    // B in place also when its rows are close enough that the `kc` rows one
    // block reads span no more memory than a packed block (so it stays in L2).
    let direct_b = direct
        && p.csb == 1
        && (p.m <= DIRECT_B_MAX_M || kc_max * p.rsb.unsigned_abs() <= bl.kc * bl.nc);
    let nc_max = bl.nc.min(p.n.next_multiple_of(NR));
    let a_len = if direct_a || packed_a {
        0
    } else {
        (mc_max * kc_max).next_multiple_of(ALIGN)
    };
    let b_len = if direct_b { 0 } else { kc_max * nc_max };
    with_scratch(a_len + b_len, |buf| {
        let (abuf, bbuf) = (buf, buf.wrapping_add(a_len));
        for ic in (0..p.m).step_by(bl.mc) {
            let mc = bl.mc.min(p.m - ic);
            for pc in (0..p.k).step_by(bl.kc) {
                let kc = bl.kc.min(p.k - pc);
                let beta = if pc == 0 { p.beta } else { 1.0 };
                // Element (ic, pc) of A and row pc of B; in bounds as the loops stay
                // inside the m x k and k x n matrices.
                let a0 =
                    p.a.wrapping_offset(ic as isize * p.rsa + pc as isize * p.csa);
                let b0 = p.b.wrapping_offset(pc as isize * p.rsb);
                if !direct_a && !packed_a {
                    // SAFETY: rows ic..ic+mc and columns pc..pc+kc are inside A; the
                    // A buffer holds mc_max.next_multiple_of(MR) * kc_max floats.
                    unsafe { pack_a::<MR>(mc, kc, a0, p.rsa, p.csa, abuf) };
                }
                // The block's panels in a packed A: its blocks of k hold
                // `pa_rows` rows each, in the same blocking.
                let pa = p.pa.wrapping_add(p.pa_rows * pc + (p.pa_row + ic) * kc);
                for jc in (0..p.n).step_by(bl.nc) {
                    let nc = bl.nc.min(p.n - jc);
                    let b_block = b0.wrapping_offset(jc as isize * p.csb);
                    if !direct_b {
                        // SAFETY: rows pc..pc+kc and columns jc..jc+nc are inside B;
                        // the buffer holds nc_max * kc_max floats, nc_max a
                        // multiple of NR.
                        unsafe { pack_b::<NR>(kc, nc, b_block, p.rsb, p.csb, bbuf) };
                    }
                    for ir in (0..mc).step_by(MR) {
                        let mr = MR.min(mc - ir);
                        let a = if direct_a {
                            a0.wrapping_offset(ir as isize * p.rsa)
                        } else if packed_a {
                            pa.wrapping_add(ir * kc)
                        } else {
                            abuf.wrapping_add(ir * kc)
                        };
                        let kernel = |nr| microkernel::select(isa, mr, nr, direct_a);
                        // The epilogue, on the last block of k: in the kernel where
                        // it can, after it otherwise.
                        let last = pc + kc == p.k;
                        let in_kernel = last
                            && microkernel::fuse_epilogue(isa)
                            && p.csc == 1
                            && p.epi.bias_cs == 0;
                        let after = last && !in_kernel && !p.epi.is_none();
                        for jr in (0..nc).step_by(NR) {
                            let nr = NR.min(nc - jr);
                            let (b, b_ks) = if direct_b {
                                (b_block.wrapping_add(jr), p.rsb)
                            } else {
                                (bbuf.wrapping_add(jr * kc).cast_const(), NR as isize)
                            };
                            let tile = Tile {
                                k: kc,
                                alpha: p.alpha,
                                beta,
                                a,
                                a_rs: p.rsa,
                                b,
                                b_ks,
                                c: p.c.wrapping_offset(
                                    (ic + ir) as isize * p.rsc + (jc + jr) as isize * p.csc,
                                ),
                                rsc: p.rsc,
                                csc: p.csc,
                                m: mr,
                                n: nr,
                                epi: if in_kernel {
                                    // SAFETY: the tile lies inside C.
                                    unsafe { p.block(ic + ir, mr, jc + jr, nr) }.epi
                                } else {
                                    Epi::NONE
                                },
                            };
                            // SAFETY: packed panels were filled above for this (ir, jr)
                            // (or by `PackedA` for these rows, in this blocking), and B
                            // panels start at multiples of NR * kc floats from a 64-byte
                            // aligned base; direct operands have unit column stride
                            // (checked above) and the tile's rows and columns lie inside
                            // A and B; the C tile is inside C; the CPU supports `isa`.
                            unsafe { kernel(nr)(&tile) };
                            if after {
                                // SAFETY: the tile lies inside C.
                                unsafe { p.apply_epi(ic + ir, mr, jc + jr, nr) };
                            }
                        }
                    }
                }
            }
        }
    });
}

thread_local! {
    /// Per-thread packing buffer, grown on demand and kept for the next call, so
    /// steady-state GEMM calls do not allocate.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with a 64-byte aligned pointer to at least `len` writable floats.
fn with_scratch<R>(len: usize, f: impl FnOnce(*mut f32) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len + ALIGN {
            *buf = vec![0.0; len + ALIGN];
        }
        let offset = buf
            .as_ptr()
            .align_offset(ALIGN * std::mem::size_of::<f32>());
        debug_assert!(offset < ALIGN);
        f(buf[offset..].as_mut_ptr())
    })
}
