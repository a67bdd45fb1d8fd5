//! CPU feature detection, done once per process.
//!
//! [`isa()`] is the instruction-set level every hot kernel dispatches on. It is the
//! best level the CPU supports, capped by the environment variable
//! `BIGDL_MAX_ISA=avx512|avx2|scalar`, so tests and benchmarks can exercise every
//! kernel level on one machine. The result is cached in a `OnceLock`.

use std::fmt;
use std::sync::OnceLock;

/// An instruction-set level, ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, no explicit SIMD (the compiler may still use SSE2).
    Scalar,
    /// AVX2 with FMA3 (Haswell, Zen 1 and later).
    Avx2,
    /// AVX-512 Foundation and Vector Length extensions, with FMA (Skylake-SP,
    /// Zen 4 and later; not the Xeon Phi, which lacks VL).
    Avx512,
}

impl Isa {
    /// All levels, least capable first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// The name used by `BIGDL_MAX_ISA` and in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a level name as `BIGDL_MAX_ISA` accepts it.
    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "generic" | "none" => Some(Isa::Scalar),
            "avx2" | "fma" => Some(Isa::Avx2),
            "avx512" | "avx512f" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// Whether this CPU can run code for this level (ignores `BIGDL_MAX_ISA`).
    pub fn is_supported(self) -> bool {
        self <= detected()
    }

    /// The levels this CPU supports, least capable first (ignores `BIGDL_MAX_ISA`).
    pub fn supported() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.is_supported())
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The best level the hardware supports, ignoring `BIGDL_MAX_ISA`.
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(detect_hardware)
}

/// The level kernels dispatch on: [`detected()`] capped by `BIGDL_MAX_ISA`.
///
/// An unknown `BIGDL_MAX_ISA` value is reported once on stderr and ignored.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let hw = detected();
        match std::env::var("BIGDL_MAX_ISA") {
            Ok(v) if !v.trim().is_empty() => match Isa::parse(&v) {
                Some(cap) => hw.min(cap),
                None => {
                    eprintln!(
                        "bigdl: ignoring BIGDL_MAX_ISA={v:?} (expected avx512, avx2 or scalar)"
                    );
                    hw
                }
            },
            _ => hw,
        }
    })
}

#[cfg(target_arch = "x86_64")]
fn detect_hardware() -> Isa {
    if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("fma")
    {
        Isa::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Isa::Avx2
    } else {
        Isa::Scalar
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_hardware() -> Isa {
    Isa::Scalar
}

/// Data-cache sizes in bytes, per core for L1/L2 and per sharing group for L3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSizes {
    /// Level-1 data cache.
    pub l1d: usize,
    /// Level-2 cache.
    pub l2: usize,
    /// Level-3 cache (0 when there is none).
    pub l3: usize,
}

impl CacheSizes {
    /// Conservative sizes used when the OS does not say: 32 KiB, 512 KiB, 8 MiB.
    pub const FALLBACK: CacheSizes = CacheSizes {
        l1d: 32 << 10,
        l2: 512 << 10,
        l3: 8 << 20,
    };
}

/// The cache sizes of CPU 0, read once from Linux sysfs, with
/// [`CacheSizes::FALLBACK`] for any level the OS does not report.
pub fn cache_sizes() -> CacheSizes {
    static SIZES: OnceLock<CacheSizes> = OnceLock::new();
    *SIZES.get_or_init(|| read_sysfs_caches().unwrap_or(CacheSizes::FALLBACK))
}

fn read_sysfs_caches() -> Option<CacheSizes> {
    let mut sizes = CacheSizes::FALLBACK;
    let mut found = false;
    for index in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{index}");
        let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        let Some(bytes) = parse_cache_size(&size) else {
            continue;
        };
        match (level.trim(), kind.trim()) {
            ("1", "Data" | "Unified") => sizes.l1d = bytes,
            ("2", "Unified" | "Data") => sizes.l2 = bytes,
            ("3", "Unified" | "Data") => sizes.l3 = bytes,
            _ => continue,
        }
        found = true;
    }
    found.then_some(sizes)
}

/// Parses sysfs cache sizes such as `32K`, `1024K`, `32M` or `65536`.
fn parse_cache_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_isa_names() {
        assert_eq!(Isa::parse("AVX512"), Some(Isa::Avx512));
        assert_eq!(Isa::parse(" avx2 "), Some(Isa::Avx2));
        assert_eq!(Isa::parse("scalar"), Some(Isa::Scalar));
        assert_eq!(Isa::parse("sse9"), None);
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
    }

    #[test]
    fn dispatch_level_is_supported() {
        assert!(isa().is_supported());
        assert!(Isa::Scalar.is_supported());
        assert!(Isa::supported().any(|i| i == detected()));
    }

    #[test]
    fn parses_cache_sizes() {
        assert_eq!(parse_cache_size("32K\n"), Some(32 << 10));
        assert_eq!(parse_cache_size("32M"), Some(32 << 20));
        assert_eq!(parse_cache_size("4096"), Some(4096));
        assert_eq!(parse_cache_size("x"), None);
        assert_eq!(parse_cache_size(""), None);
        let c = cache_sizes();
        assert!(c.l1d >= 4096 && c.l2 >= c.l1d);
    }
}
