//! The `bigdl` binary end to end: output on success, one clear line and a non-zero
//! exit on a user mistake, never a panic.

use std::process::{Command, Output};

fn bigdl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bigdl"))
        .args(args)
        .output()
        .expect("run bigdl")
}

#[test]
fn info_lists_the_native_backend() {
    let out = bigdl(&["info"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("gemm:     native: bigdl native sgemm"),
        "{text}"
    );
}

#[test]
fn bench_gemm_prints_gflops() {
    let out = bigdl(&[
        "bench", "gemm", "--m", "33", "--n", "20", "--k", "17", "--trans", "tn", "--min-ms", "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("native"))
        .expect("a native row");
    let gflops: f64 = row.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(gflops > 0.0, "{row}");
}

#[test]
fn user_mistakes_are_one_line_errors() {
    for args in [
        &["bench", "gemm", "--m", "3"][..],
        &["bench", "gemm", "--backend", "cublas"],
        &["bench", "gemm", "--trans", "xx"],
        &[
            "bench",
            "gemm",
            "--m",
            "1",
            "--n",
            "1",
            "--k",
            "1",
            "--threads",
            "999",
        ],
    ] {
        let out = bigdl(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("bigdl: error: ") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
