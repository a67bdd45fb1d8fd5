//! The Java API (`bindings/java`) against this crate's library in a real
//! JVM: compiled with `javac`, run with `java` (Java 17; CI installs it).
//! `bigdlrs.SmokeTest`: training steps, save/load, bad input as exceptions,
//! two ranks as threads over a block store (like one process on the whole
//! batch) and over TCP with a save and restore half-way (bitwise like the
//! block store).

use std::path::{Path, PathBuf};
use std::process::Command;

fn java_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            java_sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "java") {
            out.push(p);
        }
    }
}

#[test]
fn java_smoke_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../java");
    // `cargo test` links the tests with the rlib; build the cdylib too
    // (target/debug/libbigdl_jni.so, next to target/debug/deps/java-*).
    let build = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "bigdl-jni"])
        .status()
        .unwrap();
    assert!(build.success(), "cargo build -p bigdl-jni");
    let exe = std::env::current_exe().unwrap();
    let lib = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libbigdl_jni.so");
    assert!(lib.exists(), "{} not built", lib.display());
    let classes = std::env::temp_dir().join(format!("bigdl-java-{}", std::process::id()));
    let mut sources = Vec::new();
    java_sources(&root.join("src"), &mut sources);
    java_sources(&root.join("test"), &mut sources);
    let javac = Command::new("javac")
        .arg("-Xlint:all")
        .arg("-Werror")
        .arg("-d")
        .arg(&classes)
        .args(&sources)
        .output()
        .expect("javac (Java 17: apt-get install openjdk-17-jdk-headless)");
    assert!(
        javac.status.success(),
        "{}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let run = Command::new("java")
        .arg(format!("-Dbigdl.native.lib={}", lib.display()))
        .arg("-cp")
        .arg(&classes)
        .arg("bigdlrs.SmokeTest")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("smoke test: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let _ = std::fs::remove_dir_all(&classes);
}
