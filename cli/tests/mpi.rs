//! `bigdl train --comm mpi` under real `mpirun` processes on the real MNIST
//! (when `BIGDL_MNIST_DIR` points at it; CI fetches it): the same result as
//! one process with the same global batch, and a killed rank ends the job
//! with a non-zero exit, after which `--resume` continues from the last
//! checkpoint.
#![cfg(feature = "mpi")]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn mnist() -> Option<String> {
    let dir = std::env::var_os("BIGDL_MNIST_DIR");
    if dir.is_none() {
        eprintln!("BIGDL_MNIST_DIR not set: skipping");
    }
    Some(dir?.to_string_lossy().into_owned())
}

fn mpirun(n: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-n", &n.to_string()])
        .arg(env!("CARGO_BIN_EXE_bigdl"))
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

fn accuracy_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("test accuracy:"))
        .unwrap_or_else(|| panic!("no accuracy in {text}"));
    // Drop the timing: "..., N iterations in ...".
    line.split(" in ").next().unwrap().to_string()
}

#[test]
fn two_ranks_train_like_one_process_with_two_replicas() {
    let Some(dir) = mnist() else { return };
    let common = [
        "train",
        "--data-dir",
        &dir,
        "--max-iterations",
        "40",
        "--momentum",
        "0.9",
        "--weight-decay",
        "5e-4",
        "--threads",
        "1",
    ];
    let ranks = mpirun(2, &common).args(["--comm", "mpi"]).output().unwrap();
    // One process with two replicas on two threads: the same arithmetic.
    let mut one: Vec<&str> = common.to_vec();
    *one.last_mut().unwrap() = "2";
    let single = Command::new(env!("CARGO_BIN_EXE_bigdl"))
        .args(&one)
        .output()
        .unwrap();
    assert_eq!(accuracy_line(&ranks), accuracy_line(&single));
}

fn checkpoints(dir: &PathBuf) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".bdl"))
            .count()
    })
}

#[test]
fn a_killed_rank_ends_the_job_and_resume_continues() {
    let Some(dir) = mnist() else { return };
    let ck = std::env::temp_dir().join(format!("bigdl-mpi-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ck);
    let ckp = ck.to_string_lossy().into_owned();
    let args = [
        "train",
        "--data-dir",
        &dir,
        "--epochs",
        "2",
        "--threads",
        "1",
        "--comm",
        "mpi",
        "--checkpoint",
        &ckp,
    ];
    let mut job = mpirun(2, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first epoch's checkpoint, then kill one rank.
    let t0 = Instant::now();
    while checkpoints(&ck) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(300), "no checkpoint");
        assert!(job.try_wait().unwrap().is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ranks = Command::new("pgrep")
        .args(["-P", &job.id().to_string()])
        .output()
        .unwrap();
    let pids = String::from_utf8_lossy(&ranks.stdout);
    let victim = pids
        .lines()
        .last()
        .expect("rank processes")
        .trim()
        .to_string();
    Command::new("kill").args(["-9", &victim]).status().unwrap();
    let killed = Instant::now();
    let out = job.wait_with_output().unwrap();
    assert!(!out.status.success(), "the job survived a killed rank");
    assert!(killed.elapsed() < Duration::from_secs(60));
    // Resume: continues from the epoch-1 checkpoint and finishes epoch 2.
    let out = mpirun(2, &args).arg("--resume").output().unwrap();
    let line = accuracy_line(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resumed from"), "{err}");
    assert!(line.contains("2 epochs"), "{line}");
    let acc: f64 = line
        .split("test accuracy: ")
        .nth(1)
        .and_then(|t| t.split('%').next())
        .and_then(|t| t.parse().ok())
        .unwrap();
    assert!(acc > 95.0, "{line}");
    let _ = std::fs::remove_dir_all(&ck);
}
