//! ONNX's backend node tests (rendered by `tests/onnx_node/make.py` from the
//! `onnx` package's own test-case definitions) for the operators the
//! importer covers: each model imported, run on its inputs and compared with
//! ONNX's expected outputs.

use std::path::Path;

use bigdl_nn::Activity;
use bigdl_nn::io::onnx::{OnnxTensor, import, parse_tensor};
use bigdl_tensor::Tensor;

fn read(path: &Path) -> OnnxTensor {
    parse_tensor(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn data_sets(dir: &Path) -> Vec<(Vec<OnnxTensor>, Vec<OnnxTensor>)> {
    let mut sets = Vec::new();
    for k in 0.. {
        let d = dir.join(format!("test_data_set_{k}"));
        if !d.is_dir() {
            break;
        }
        let files = |prefix: &str| -> Vec<OnnxTensor> {
            (0..)
                .map(|j| d.join(format!("{prefix}_{j}.pb")))
                .take_while(|p| p.exists())
                .map(|p| read(&p))
                .collect()
        };
        sets.push((files("input"), files("output")));
    }
    sets
}

#[test]
fn onnx_node_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_node");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 80,
        "{} node tests: run tests/onnx_node/make.py",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let model = std::fs::read(dir.join("model.onnx")).unwrap();
        for (inputs, outputs) in data_sets(dir) {
            // Operators that combine data take every input at run time;
            // recurrences with "_states" take their initial states and
            // sequence lengths at run time too; the others get their second
            // and later inputs (weights, statistics, bounds, the second
            // operand, other recurrences' lengths) as constants.
            let all_runtime = name.starts_with("test_concat")
                || name.starts_with("test_sum")
                || ["test_add", "test_mul", "test_mul_example"].contains(&name.as_str());
            let states = name.contains("_states");
            let (mut runtime, mut bound) = (Vec::new(), Vec::new());
            for (i, t) in inputs.iter().enumerate() {
                let state = t.name.starts_with("initial_") || t.name == "sequence_lens";
                if all_runtime || i == 0 || (states && state) {
                    runtime.push(t.clone());
                } else {
                    bound.push(t.clone());
                }
            }
            let result = (|| -> Result<Vec<Tensor<f32>>, String> {
                let mut m = import(&model, &bound).map_err(|e| e.to_string())?;
                let x: Activity = if runtime.len() == 1 {
                    runtime[0].tensor().map_err(|e| e.to_string())?.into()
                } else {
                    Activity::Table(
                        runtime
                            .iter()
                            .map(|t| Activity::from(t.tensor().unwrap()))
                            .collect(),
                    )
                };
                let y = m.forward(&x).map_err(|e| e.to_string())?;
                // Inference (`predict`, fused) gives forward's values exactly.
                let p = m.predict(&x).map_err(|e| e.to_string())?;
                if bits(&y) != bits(&p) {
                    return Err("predict differs from forward".into());
                }
                Ok(match y {
                    Activity::Tensor(t) => vec![t],
                    Activity::Table(v) => {
                        v.into_iter().map(|a| a.into_tensor("t").unwrap()).collect()
                    }
                })
            })();
            match result {
                Err(e) => failures.push(format!("{name}: {e}")),
                Ok(got) => {
                    for (g, want) in got.iter().zip(&outputs) {
                        if g.sizes() != want.dims.as_slice() {
                            failures.push(format!(
                                "{name}: shape {:?} vs {:?}",
                                g.sizes(),
                                want.dims
                            ));
                            continue;
                        }
                        let bad = g.to_vec().iter().zip(want.data.iter()).position(|(a, b)| {
                            !((a - b).abs() <= 1e-5 + 1e-4 * b.abs() || (a.is_nan() && b.is_nan()))
                        });
                        if let Some(i) = bad {
                            failures.push(format!(
                                "{name}: [{i}] {} vs {}",
                                g.to_vec()[i],
                                want.data[i]
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}

/// The model and first data set's inputs of node test `name`.
fn node_case(name: &str) -> (Vec<u8>, Vec<OnnxTensor>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/onnx_node")
        .join(name);
    let model = std::fs::read(root.join("model.onnx")).unwrap();
    (model, data_sets(&root).remove(0).0)
}

#[test]
fn damaged_onnx_files_are_errors() {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_node/test_basic_conv_with_padding");
    let model = std::fs::read(root.join("model.onnx")).unwrap();
    let w = read(&root.join("test_data_set_0/input_1.pb"));
    assert!(import(&model, std::slice::from_ref(&w)).is_ok());
    for n in 0..model.len() {
        let _ = import(&model[..n], std::slice::from_ref(&w)); // never panics
    }
    for i in 0..model.len() {
        let mut b = model.clone();
        b[i] ^= 0xff;
        let _ = import(&b, std::slice::from_ref(&w));
    }
    assert!(import(b"\x08\x07", &[]).is_err());
    // Weights given as runtime inputs are named in the error.
    let err = import(&model, &[]).unwrap_err().to_string();
    assert!(err.contains("Conv") && err.contains("constant"), "{err}");
}

/// A recurrence's initial state given as a constant (a `Constant` layer in
/// the graph) gives what the same state given at run time gives.
#[test]
fn constant_initial_states_equal_runtime_ones() {
    let (model, inputs) = node_case("test_bigdl_lstm_reverse_layout0_initial_h");
    let mut state = inputs.last().unwrap().clone();
    for (i, v) in std::sync::Arc::make_mut(&mut state.data)
        .iter_mut()
        .enumerate()
    {
        *v = (i as f32 * 0.37).sin();
    }
    let mut bound = inputs[1..].to_vec();
    *bound.last_mut().unwrap() = state.clone();
    let x = inputs[0].tensor().unwrap();
    let with_constant = import(&model, &bound)
        .unwrap()
        .forward(&x.clone().into())
        .unwrap();
    let mut at_run_time = import(&model, &inputs[1..inputs.len() - 1]).unwrap();
    let given = Activity::Table(vec![x.into(), state.tensor().unwrap().into()]);
    assert_eq!(
        bits(&with_constant),
        bits(&at_run_time.forward(&given).unwrap())
    );
}

/// Recurrence activations other than the defaults are refused by name (a
/// spelled-out default list imports: `test_bigdl_*_activations`).
#[test]
fn other_recurrence_activations_are_errors() {
    let (model, inputs) = node_case("test_bigdl_gru_bidirectional_layout0_activations");
    assert!(import(&model, &inputs[1..]).is_ok());
    // "Tanh" -> "Relu": same length, so still a well-formed file.
    let mut relu = model.clone();
    let at: Vec<usize> = (0..relu.len() - 4)
        .filter(|&i| &relu[i..i + 4] == b"Tanh")
        .collect();
    assert_eq!(at.len(), 2, "the two directions' Tanh");
    for i in at {
        relu[i..i + 4].copy_from_slice(b"Relu");
    }
    let err = import(&relu, &inputs[1..]).unwrap_err().to_string();
    assert!(err.contains("activations") && err.contains("Relu"), "{err}");
}

/// A CNN exported from PyTorch (`tests/onnx_models/make.py`: conv, batch
/// norm, grouped conv, residual add, max and average pooling, flatten,
/// linear, log-softmax) gives PyTorch's and ONNX Runtime's outputs.
#[test]
fn pytorch_exported_cnn_matches_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_models");
    let model = std::fs::read(dir.join("cnn.onnx")).unwrap();
    let mut m = import(&model, &[]).unwrap();
    let x = Tensor::<f32>::read_npy(dir.join("cnn.x.npy")).unwrap();
    let x = Activity::from(x);
    let y = m.forward(&x).unwrap();
    assert_eq!(bits(&y), bits(&m.predict(&x).unwrap()));
    let y = y.into_tensor("t").unwrap();
    for reference in ["cnn.y.npy", "cnn.ort.npy"] {
        let want = Tensor::<f32>::read_npy(dir.join(reference)).unwrap();
        assert_eq!(y.sizes(), want.sizes());
        for (a, b) in y.to_vec().iter().zip(want.to_vec()) {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                "{reference}: {a} vs {b}"
            );
        }
    }
}

/// The bits of every tensor of `a`, depth first.
fn bits(a: &Activity) -> Vec<Vec<u32>> {
    match a {
        Activity::Tensor(t) => vec![t.to_vec().iter().map(|v| v.to_bits()).collect()],
        Activity::Table(v) => v.iter().flat_map(bits).collect(),
    }
}
