//! The MPI backend with real `mpirun` processes (feature `mpi`).
#![cfg(feature = "mpi")]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn mpirun(n: usize, args: &[&str]) -> Output {
    Command::new("mpirun")
        .args(["--oversubscribe", "-n", &n.to_string()])
        .arg(env!("CARGO_BIN_EXE_bigdl-mpi-selftest"))
        .args(args)
        // CI containers run as root; OpenMPI refuses that unless told.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun (install OpenMPI: ci/setup.sh)")
}

#[test]
fn collectives_at_2_and_4_ranks() {
    for n in [2, 4] {
        let out = mpirun(n, &["check"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{n} ranks: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for r in 0..n {
            assert!(
                stdout.contains(&format!("rank {r} of {n}: collectives ok")),
                "{stdout}"
            );
        }
    }
}

#[test]
fn a_stalled_rank_ends_the_job_with_its_name() {
    let t0 = Instant::now();
    let out = mpirun(3, &["stall", "1", "60"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(t0.elapsed() < Duration::from_secs(45), "{:?}", t0.elapsed());
    assert!(
        stderr.contains("timed out after 2.0 s waiting for rank(s) [1]"),
        "{stderr}"
    );
}
