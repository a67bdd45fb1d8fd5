//! The `bigdl` binary end to end: output on success, one clear line and a non-zero
//! exit on a user mistake, never a panic.

use std::process::{Command, Output};

fn bigdl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bigdl"))
        .args(args)
        .output()
        .expect("run bigdl")
}

/// `bigdl predict --model MODEL --input X --output OUT` succeeds and writes
/// the outputs in the `.npy` file `want`, to 1e-4 relative.
fn predicts(model: &str, x: &str, want: &str, out: &std::path::Path) {
    let o = bigdl(&[
        "predict",
        "--model",
        model,
        "--input",
        x,
        "--output",
        &out.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = bigdl_tensor::Tensor::<f32>::read_npy(want).unwrap();
    let got = bigdl_tensor::Tensor::<f32>::read_npy(out).unwrap();
    assert_eq!(got.sizes(), want.sizes(), "{model}");
    for (a, b) in got.to_vec().iter().zip(want.to_vec()) {
        assert!(
            (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
            "{model}: {a} vs {b}"
        );
    }
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

#[test]
fn train_errors_are_one_line() {
    let missing = bigdl(&["train", "--data-dir", "/nonexistent/mnist", "--epochs", "1"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("bigdl data mnist") && err.lines().count() == 1,
        "{err}"
    );
    for args in [
        &["train", "--lr", "-1"][..],
        &["train", "--schedule", "bogus"],
        &["train", "--epochs", "0"],
        &["train", "--model", "nope"],
        &["train", "--resume"],
        &["train", "--threads", "0"],
        &["eval", "--checkpoint", "/nonexistent/ck"],
        &["plot", "--summary", "/nonexistent/sm"],
        &["info", "--model", "/etc/hostname"],
        &[
            "predict",
            "--model",
            "/etc/hostname",
            "--input",
            "x.npy",
            "--output",
            "y.npy",
        ],
    ] {
        let out = bigdl(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// One epoch of LeNet-5 on the real MNIST when `BIGDL_MNIST_DIR` points at it
/// (CI fetches it with `bigdl data mnist`).
#[test]
fn train_lenet5_one_epoch_on_mnist() {
    let Some(dir) = std::env::var_os("BIGDL_MNIST_DIR") else {
        eprintln!("BIGDL_MNIST_DIR not set: skipping");
        return;
    };
    let ckpt = std::env::temp_dir().join(format!("bigdl-cli-ckpt-{}", std::process::id()));
    let dir = dir.to_string_lossy().into_owned();
    let ck = ckpt.to_string_lossy().into_owned();
    let sm = std::env::temp_dir().join(format!("bigdl-cli-summary-{}", std::process::id()));
    let smd = sm.to_string_lossy().into_owned();
    let out = bigdl(&[
        "train",
        "--data-dir",
        &dir,
        "--epochs",
        "1",
        "--checkpoint",
        &ck,
        "--summary",
        &smd,
        "--save",
        &format!("{smd}.bdl"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let acc: f64 = text
        .split("test accuracy: ")
        .nth(1)
        .and_then(|t| t.split('%').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(acc > 90.0, "{text}");
    assert!(std::fs::read_dir(&ckpt).unwrap().count() >= 1);
    // The checkpoint evaluates to the same accuracy.
    let ev = bigdl(&["eval", "--data-dir", &dir, "--checkpoint", &ck]);
    assert!(
        ev.status.success(),
        "{}",
        String::from_utf8_lossy(&ev.stderr)
    );
    let etext = String::from_utf8_lossy(&ev.stdout);
    assert!(
        etext.contains(&format!("top-1 {acc:.2}%")),
        "{etext} vs {text}"
    );
    // The summary plots to a PNG.
    let png = sm.join("curves.png");
    let pl = bigdl(&["plot", "--summary", &smd]);
    assert!(
        pl.status.success(),
        "{}",
        String::from_utf8_lossy(&pl.stderr)
    );
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
    // The saved model describes itself and predicts from a .npy file.
    let model = format!("{smd}.bdl");
    let inf = bigdl(&["info", "--model", &model]);
    assert!(String::from_utf8_lossy(&inf.stdout).contains("22278 parameters"));
    let xin = sm.join("x.npy");
    bigdl_tensor::Tensor::<f32>::zeros(&[3, 1, 28, 28])
        .unwrap()
        .write_npy(&xin)
        .unwrap();
    let yout = sm.join("y.npy");
    let pr = bigdl(&[
        "predict",
        "--model",
        &model,
        "--input",
        &xin.to_string_lossy(),
        "--output",
        &yout.to_string_lossy(),
        "--batch-size",
        "2",
    ]);
    assert!(
        pr.status.success(),
        "{}",
        String::from_utf8_lossy(&pr.stderr)
    );
    let y = bigdl_tensor::Tensor::<f32>::read_npy(&yout).unwrap();
    assert_eq!(y.sizes(), &[3, 10]);
    let _ = std::fs::remove_file(&model);
    let _ = std::fs::remove_dir_all(&ckpt);
    let _ = std::fs::remove_dir_all(&sm);
}

#[test]
fn convert_and_predict_an_onnx_model() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../nn/tests/onnx_models");
    let tmp = std::env::temp_dir().join(format!("bigdl-cli-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let native = tmp.join("cnn.bdl").to_string_lossy().into_owned();
    let onnx = format!("{dir}/cnn.onnx");
    let out = bigdl(&["convert", "--model", &onnx, "--output", &native]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for model in [&onnx, &native] {
        predicts(
            model,
            &format!("{dir}/cnn.x.npy"),
            &format!("{dir}/cnn.y.npy"),
            &tmp.join("y.npy"),
        );
    }
    let info = bigdl(&["info", "--model", &native]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("SpatialConvolution"));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn convert_a_caffe_model() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../nn/tests/caffe");
    let tmp = std::env::temp_dir().join(format!("bigdl-cli-caffe-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let native = tmp.join("tiny.bdl").to_string_lossy().into_owned();
    let out = bigdl(&[
        "convert",
        "--model",
        &format!("{dir}/tiny.prototxt"),
        "--weights",
        &format!("{dir}/tiny.caffemodel"),
        "--output",
        &native,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    predicts(
        &native,
        &format!("{dir}/tiny.x.npy"),
        &format!("{dir}/tiny.y.npy"),
        &tmp.join("y.npy"),
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn predict_with_a_torch7_model() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../nn/tests/torch7");
    let y = std::env::temp_dir().join(format!("bigdl-cli-t7-{}.npy", std::process::id()));
    predicts(
        &format!("{dir}/net.t7"),
        &format!("{dir}/net.x.npy"),
        &format!("{dir}/net.y.npy"),
        &y,
    );
    let _ = std::fs::remove_file(&y);
    let bad = bigdl(&["info", "--model", &format!("{dir}/function.t7")]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("never run"));
}
