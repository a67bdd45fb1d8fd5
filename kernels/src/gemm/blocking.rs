//! Register and cache blocking: one parameter table per ISA, cache blocks derived
//! from the cache sizes of the machine.

use std::sync::OnceLock;

use crate::cpu::{self, CacheSizes, Isa};

/// Blocking parameters of the native SGEMM (BLIS names).
///
/// Loop order (outermost first): `ic` over `m` by `mc` (packed `A` block, kept in
/// L3), `pc` over `k` by `kc`, `jc` over `n` by `nc` (packed `B` block, kept in
/// L2), `ir` over the block's rows by `mr` (one `A` micro-panel, kept in L1),
/// `jr` over the block's columns by `nr` (`B` micro-panels streamed from L2),
/// then the `mr x nr` micro-kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// Rows of the micro-tile (A values broadcast per `k` step).
    pub mr: usize,
    /// Columns of the micro-tile (the SIMD direction).
    pub nr: usize,
    /// Rows of a packed `A` block.
    pub mc: usize,
    /// Depth of packed blocks.
    pub kc: usize,
    /// Columns of a packed `B` block.
    pub nc: usize,
}

/// The micro-tile `(mr, nr)` of each ISA. AVX-512: 12 x 32 (24 zmm accumulators,
/// 2 for `B`, broadcasts folded into the FMAs); AVX2: 6 x 16 (12 of 16 ymm); the
/// portable kernel: 4 x 8, which the compiler maps onto SSE2.
pub(crate) const fn micro_tile(isa: Isa) -> (usize, usize) {
    match isa {
        Isa::Avx512 => (12, 32),
        Isa::Avx2 => (6, 16),
        Isa::Scalar => (4, 8),
    }
}

impl Blocking {
    /// The blocking used for `isa` on this machine, computed once. Each of
    /// `BIGDL_GEMM_MC`, `BIGDL_GEMM_KC`, `BIGDL_GEMM_NC` overrides the derived
    /// value (rounded to the micro-tile), for tuning.
    pub fn for_isa(isa: Isa) -> Blocking {
        static TABLE: OnceLock<[Blocking; 3]> = OnceLock::new();
        let table = TABLE.get_or_init(|| {
            Isa::ALL.map(|isa| {
                let (mr, nr) = micro_tile(isa);
                Blocking::derive(mr, nr, cpu::cache_sizes()).with_env_overrides()
            })
        });
        table[isa as usize]
    }

    /// Cache blocks for an `mr x nr` micro-kernel: an `mr x kc` A micro-panel in
    /// half of L1, a `kc x nc` B block in half of L2, an `mc x kc` A block in a
    /// quarter of L3 (shared by the cores).
    pub fn derive(mr: usize, nr: usize, caches: CacheSizes) -> Blocking {
        let f = std::mem::size_of::<f32>();
        let kc = (caches.l1d / 2 / (mr * f)).clamp(64, 1024) / 8 * 8;
        let nc = (caches.l2 / 2 / (kc * f)).max(nr) / nr * nr;
        let l3 = if caches.l3 == 0 {
            caches.l2 * 4
        } else {
            caches.l3
        };
        let mc = (l3 / 4 / (kc * f)).clamp(mr, 8192) / mr * mr;
        Blocking { mr, nr, mc, kc, nc }
    }

    fn with_env_overrides(mut self) -> Blocking {
        let read = |name: &str| -> Option<usize> {
            let v = std::env::var(name).ok()?;
            match v.trim().parse::<usize>() {
                Ok(x) if x > 0 => Some(x),
                _ => {
                    eprintln!("bigdl: ignoring {name}={v:?} (expected a positive integer)");
                    None
                }
            }
        };
        if let Some(mc) = read("BIGDL_GEMM_MC") {
            self.mc = mc.div_ceil(self.mr) * self.mr;
        }
        if let Some(kc) = read("BIGDL_GEMM_KC") {
            self.kc = kc;
        }
        if let Some(nc) = read("BIGDL_GEMM_NC") {
            self.nc = nc.div_ceil(self.nr) * self.nr;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zen4_blocking() {
        let zen4 = CacheSizes {
            l1d: 32 << 10,
            l2: 1 << 20,
            l3: 32 << 20,
        };
        let b = Blocking::derive(12, 32, zen4);
        assert_eq!((b.mr, b.nr, b.kc), (12, 32, 336));
        assert_eq!(b.nc % 32, 0);
        assert_eq!(b.mc % 12, 0);
        assert!(b.kc * b.nc * 4 <= 512 << 10);
    }

    #[test]
    fn tiny_caches_still_give_valid_blocks() {
        let tiny = CacheSizes {
            l1d: 1024,
            l2: 4096,
            l3: 0,
        };
        for isa in Isa::ALL {
            let (mr, nr) = micro_tile(isa);
            let b = Blocking::derive(mr, nr, tiny);
            assert!(b.kc >= 64 && b.nc >= nr && b.mc >= mr, "{b:?}");
            assert_eq!((b.nc % nr, b.mc % mr), (0, 0));
        }
    }
}
