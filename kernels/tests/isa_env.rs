//! `BIGDL_MAX_ISA` caps dispatch: CI runs the kernel tests once per level, and this
//! test proves the cap took effect in each of those runs.

use bigdl_kernels::cpu::{self, Isa};
use bigdl_kernels::gemm::Backend;

#[test]
fn max_isa_caps_dispatch() {
    let want = match std::env::var("BIGDL_MAX_ISA") {
        Ok(v) if !v.is_empty() => Isa::parse(&v)
            .expect("CI sets a valid BIGDL_MAX_ISA")
            .min(cpu::detected()),
        _ => cpu::detected(),
    };
    assert_eq!(cpu::isa(), want);
    let d = Backend::Native.describe().unwrap();
    assert!(d.contains(&format!("{want} micro-kernel")), "{d}");
    eprintln!("dispatching on {want}: {d}");
}
