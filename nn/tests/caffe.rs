//! Caffe import: deploy prototxt + caffemodel (current and legacy V1
//! formats), written by `tests/caffe/make.py` with the outputs PyTorch
//! computes for the same networks under Caffe's semantics (ceil-mode pooling,
//! BatchNorm + Scale, LRN, Eltwise, InnerProduct flattening).

use std::path::Path;

use bigdl_nn::io::caffe::import;
use bigdl_tensor::Tensor;

fn check(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/caffe");
    let proto = std::fs::read_to_string(dir.join(format!("{name}.prototxt"))).unwrap();
    let weights = std::fs::read(dir.join(format!("{name}.caffemodel"))).unwrap();
    let mut m = import(&proto, &weights).unwrap_or_else(|e| panic!("{name}: {e}"));
    let x = Tensor::<f32>::read_npy(dir.join(format!("{name}.x.npy"))).unwrap();
    let want = Tensor::<f32>::read_npy(dir.join(format!("{name}.y.npy"))).unwrap();
    let y = m.forward(&x.into()).unwrap().into_tensor("t").unwrap();
    assert_eq!(y.sizes(), want.sizes(), "{name}");
    for (a, b) in y.to_vec().iter().zip(want.to_vec()) {
        assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{name}: {a} vs {b}");
    }
}

#[test]
fn current_format_network_matches_pytorch() {
    check("tiny");
}

#[test]
fn legacy_v1_network_matches_pytorch() {
    check("legacy");
}

#[test]
fn slice_max_concat_reshape_match_pytorch() {
    check("slice");
}

#[test]
fn bad_inputs_are_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/caffe");
    let proto = std::fs::read_to_string(dir.join("tiny.prototxt")).unwrap();
    let weights = std::fs::read(dir.join("tiny.caffemodel")).unwrap();
    // Truncated or damaged weights never panic; missing weights are named.
    for n in (0..weights.len()).step_by(7) {
        let _ = import(&proto, &weights[..n]);
    }
    let err = import(&proto, &[]).unwrap_err().to_string();
    assert!(err.contains("conv1"), "{err}");
    // Unbalanced braces, unknown layer types and shape mismatches are errors.
    assert!(import("layer { name: \"x\"", &weights).is_err());
    let odd = proto.replace("\"Softmax\"", "\"Frobnicate\"");
    assert!(
        import(&odd, &weights)
            .unwrap_err()
            .to_string()
            .contains("Frobnicate")
    );
    let wrong = proto.replace(
        "num_output: 4 kernel_size: 3",
        "num_output: 5 kernel_size: 3",
    );
    assert!(import(&wrong, &weights).is_err());
}
