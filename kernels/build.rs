//! Links Intel MKL statically when the `mkl` feature is on.
//!
//! MKL's three archives (LP64 interface, sequential threading, core) refer to each
//! other, so they must be searched as a group. Cargo cannot pass `--start-group`
//! to the final link of a dependent crate, so this script writes a one-line GNU ld
//! script, `libbigdl_mkl.so` containing `GROUP(...)`, and links it like a shared
//! library: the linker reads the script and resolves the group (glibc's `libc.so`
//! works the same way).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=MKLROOT");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_MKL").is_none() {
        return;
    }
    let root = mkl_root().unwrap_or_else(|tried| {
        panic!(
            "feature `mkl`: Intel MKL not found (looked in {tried}). Install it with \
             `ci/setup.sh` (PyPI wheels mkl-static + mkl-include), or set MKLROOT to a \
             directory whose lib/ holds libmkl_intel_lp64.a, libmkl_sequential.a and \
             libmkl_core.a"
        )
    });
    let lib = root.join("lib");
    let archives = [
        "libmkl_intel_lp64.a",
        "libmkl_sequential.a",
        "libmkl_core.a",
    ];
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = archives
        .iter()
        .map(|a| lib.join(a).display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(out.join("libbigdl_mkl.so"), format!("GROUP ( {script} )\n"))
        .expect("write the MKL link script");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=dylib=bigdl_mkl");
    for sys in ["pthread", "m", "dl"] {
        println!("cargo:rustc-link-lib=dylib={sys}");
    }
}

fn mkl_root() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    let candidates = std::env::var_os("MKLROOT")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/opt/bigdl-deps/mkl", "/opt/intel/oneapi/mkl/latest"].map(PathBuf::from));
    for root in candidates {
        if has_archives(&root.join("lib")) {
            return Ok(root);
        }
        tried.push(root.display().to_string());
    }
    Err(tried.join(", "))
}

fn has_archives(lib: &Path) -> bool {
    [
        "libmkl_intel_lp64.a",
        "libmkl_sequential.a",
        "libmkl_core.a",
    ]
    .iter()
    .all(|a| lib.join(a).is_file())
}
