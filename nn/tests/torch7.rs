//! Torch7 import: a .t7 file written by `tests/torch7/make.py` (checked there
//! with the independent `torchfile` reader) against PyTorch's output for the
//! same model; hostile files are errors.

use std::path::Path;

use bigdl_nn::io::torch7::import;
use bigdl_tensor::Tensor;

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torch7")
}

#[test]
fn t7_model_matches_pytorch() {
    check("net.t7");
}

/// The same model written by `torch.save(f, net, 'ascii')`'s format.
#[test]
fn ascii_t7_model_matches_pytorch() {
    let bytes = std::fs::read(dir().join("net_ascii.t7")).unwrap();
    assert!(bigdl_nn::io::torch7::is_ascii(&bytes));
    check("net_ascii.t7");
    for n in (0..bytes.len()).step_by(97) {
        assert!(import(&bytes[..n]).is_err(), "truncated to {n}");
    }
}

fn check(file: &str) {
    let bytes = std::fs::read(dir().join(file)).unwrap();
    let mut m = import(&bytes).unwrap();
    let x = Tensor::<f32>::read_npy(dir().join("net.x.npy")).unwrap();
    let want = Tensor::<f32>::read_npy(dir().join("net.y.npy")).unwrap();
    let y = m.forward(&x.into()).unwrap().into_tensor("t").unwrap();
    assert_eq!(y.sizes(), want.sizes());
    for (a, b) in y.to_vec().iter().zip(want.to_vec()) {
        assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{a} vs {b}");
    }
}

#[test]
fn hostile_t7_files_are_errors() {
    let f = std::fs::read(dir().join("function.t7")).unwrap();
    let err = import(&f).unwrap_err().to_string();
    assert!(
        err.contains("Lua function") && err.contains("never run"),
        "{err}"
    );
    let bytes = std::fs::read(dir().join("net.t7")).unwrap();
    for n in (0..bytes.len()).step_by(13) {
        assert!(import(&bytes[..n]).is_err(), "truncated to {n}");
    }
    for i in (0..bytes.len()).step_by(5) {
        let mut b = bytes.clone();
        b[i] ^= 0x7f;
        let _ = import(&b); // never panics
    }
    // A table claiming two billion entries allocates nothing.
    let mut huge = 3i32.to_le_bytes().to_vec();
    huge.extend(1i32.to_le_bytes());
    huge.extend(i32::MAX.to_le_bytes());
    assert!(import(&huge).is_err());
}
