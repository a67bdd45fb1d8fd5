//! The native model format: every layer and zoo model round-trips bitwise
//! (description, weights, state, outputs); damaged files are errors.

use bigdl_nn::io::{Spec, build, decode, encode, load, save};
use bigdl_nn::layers::*;
use bigdl_nn::*;
use bigdl_tensor::{Generator, Tensor};

fn rand(sizes: &[usize], seed: u64) -> Tensor<f32> {
    Tensor::uniform(sizes, -1.0, 1.0, &mut Generator::new(seed)).unwrap()
}

fn output(m: &mut dyn Module, x: &Activity) -> Vec<f32> {
    fn flat(a: &Activity) -> Vec<f32> {
        match a {
            Activity::Tensor(t) => t.to_vec(),
            Activity::Table(v) => v.iter().flat_map(flat).collect(),
        }
    }
    flat(&m.forward(x).unwrap())
}

/// Saves `m` (after one training-mode forward, so running statistics move),
/// loads it back and checks the description, weights, state and evaluation
/// output are identical.
fn round_trip(mut m: Box<dyn Module>, x: Activity) {
    let name = m.name().to_string();
    m.forward(&x).unwrap();
    m.evaluate();
    let want = output(m.as_mut(), &x);
    let bytes = encode(m.as_mut()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut back = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(back.spec(), m.spec(), "{name}: description");
    let w = |m: &mut dyn Module| {
        m.parameters()
            .iter()
            .flat_map(|(w, _)| w.to_vec())
            .collect::<Vec<f32>>()
    };
    assert_eq!(w(back.as_mut()), w(m.as_mut()), "{name}: weights");
    back.evaluate();
    let got = output(back.as_mut(), &x);
    assert_eq!(
        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "{name}: outputs"
    );
    // Encoding the loaded model gives the same bytes.
    assert_eq!(encode(back.as_mut()).unwrap(), bytes, "{name}: re-encoding");
}

#[test]
fn every_layer_round_trips() {
    manual_seed(81);
    let img = || -> Activity { rand(&[2, 4, 6, 6], 1).into() };
    let vec = || -> Activity { rand(&[3, 8], 2).into() };
    let pos = || -> Activity {
        Tensor::<f32>::uniform(&[3, 8], 0.5, 2.0, &mut Generator::new(3))
            .unwrap()
            .into()
    };
    let table =
        || -> Activity { Activity::Table(vec![rand(&[3, 8], 4).into(), rand(&[3, 8], 5).into()]) };
    let cases: Vec<(Box<dyn Module>, Activity)> = vec![
        (Box::new(Linear::new(8, 5).unwrap()), vec()),
        (Box::new(Linear::new(8, 5).unwrap().without_bias()), vec()),
        (
            Box::new(
                SpatialConvolution::with_groups(4, 6, (3, 2), 2)
                    .unwrap()
                    .stride(2, 1)
                    .pad(1, 0)
                    .dilation(1, 2),
            ),
            img(),
        ),
        (
            Box::new(
                SpatialFullConvolution::new(4, 2, (3, 3), 1)
                    .unwrap()
                    .stride(2, 2)
                    .adj(1, 0)
                    .without_bias(),
            ),
            img(),
        ),
        (
            Box::new(SpatialMaxPooling::new((3, 3), (2, 2)).pad(1, 1).ceil()),
            img(),
        ),
        (
            Box::new(SpatialAveragePooling::new((2, 3), (2, 1)).count_include_pad(false)),
            img(),
        ),
        (Box::new(SpatialAveragePooling::global()), img()),
        (Box::new(ReLU::new()), vec()),
        (Box::new(Tanh::new()), vec()),
        (Box::new(Sigmoid::new()), vec()),
        (Box::new(SoftMax::new()), vec()),
        (Box::new(SoftMin::new()), vec()),
        (Box::new(LogSoftMax::new()), vec()),
        (Box::new(ReLU6::new()), vec()),
        (Box::new(LeakyReLU::new(0.2)), vec()),
        (Box::new(ELU::new(0.7)), vec()),
        (Box::new(HardTanh::new(-0.3, 0.4)), vec()),
        (Box::new(SoftPlus::new(3.0)), vec()),
        (Box::new(Threshold::new(0.1, -1.0)), vec()),
        (Box::new(Abs::new()), vec()),
        (Box::new(Power::new(1.5, 0.5, 2.0)), pos()),
        (Box::new(Sqrt::new()), pos()),
        (Box::new(Square::new()), vec()),
        (Box::new(Exp::new()), vec()),
        (Box::new(Log::new()), pos()),
        (Box::new(MulConstant::new(-2.0)), vec()),
        (Box::new(AddConstant::new(0.25)), vec()),
        (Box::new(Reshape::new(&[4, 2])), vec()),
        (Box::new(Reshape::batched(&[2, 4])), vec()),
        (Box::new(View::new(&[Some(4), None])), vec()),
        (Box::new(Squeeze::new(None)), rand(&[3, 1, 8], 6).into()),
        (Box::new(Squeeze::new(Some(1))), rand(&[3, 1, 8], 6).into()),
        (Box::new(Unsqueeze::new(1)), vec()),
        (Box::new(Transpose::new(&[(0, 1)])), vec()),
        (Box::new(Narrow::new(1, 2, 3)), vec()),
        (Box::new(Narrow::signed(1, 2, -2)), vec()),
        (Box::new(Select::signed(1, -1)), vec()),
        (Box::new(Select::new(1, 7)), vec()),
        (Box::new(Contiguous::new()), vec()),
        (Box::new(SpatialZeroPadding::new(1, 0, 2, 1)), img()),
        (Box::new(Padding::new(0, 1, 2, -0.5)), vec()),
        (Box::new(Reverse::new(1)), vec()),
        (
            Box::new(SamePadding::new((3, 3), (2, 2), (1, 1), true, f32::NEG_INFINITY).unwrap()),
            img(),
        ),
        (Box::new(Sum::new(1)), vec()),
        (Box::new(Mean::new(0)), vec()),
        (Box::new(Max::new(1)), vec()),
        (Box::new(CMul::new(&[8]).unwrap()), vec()),
        (Box::new(CAdd::new(&[8]).unwrap()), vec()),
        (Box::new(Scale::new(&[1, 8]).unwrap()), vec()),
        (Box::new(PReLU::new(4).unwrap()), img()),
        (
            Box::new(BatchNormalization::new(8).unwrap().eps(1e-3).momentum(0.3)),
            vec(),
        ),
        (
            Box::new(BatchNormalization::spatial(4).unwrap().without_affine()),
            img(),
        ),
        (Box::new(SpatialCrossMapLRN::new(3, 0.1, 0.75, 1.5)), img()),
        (Box::new(Dropout::new(0.3).unwrap()), vec()),
        (
            Box::new(LookupTable::new(10, 3).unwrap()),
            Tensor::from_vec(vec![1.0f32, 9.0, 0.0], &[3])
                .unwrap()
                .into(),
        ),
        (
            Box::new(Recurrent::new(Cell::lstm(8, 3).unwrap())),
            rand(&[2, 3, 8], 7).into(),
        ),
        (
            Box::new(BiRecurrent::new(Cell::gru(8, 2).unwrap(), Cell::rnn(8, 2).unwrap()).unwrap()),
            rand(&[2, 3, 8], 8).into(),
        ),
        (
            Box::new(Recurrent::new(Cell::gru_with(8, 3, false).unwrap())),
            rand(&[2, 3, 8], 10).into(),
        ),
        (
            Box::new(
                Recurrent::new(Cell::lstm_peephole(8, 3).unwrap())
                    .reversed()
                    .with_lengths()
                    .with_final_states(),
            ),
            Activity::Table(vec![
                rand(&[2, 3, 8], 11).into(),
                Tensor::from_vec(vec![3.0f32, 1.0], &[2]).unwrap().into(),
                rand(&[2, 3], 12).into(),
                rand(&[2, 3], 13).into(),
            ]),
        ),
        (Box::new(Constant::new(&rand(&[2, 3], 14))), vec()),
        (
            Box::new(TimeDistributed::new(Linear::new(8, 2).unwrap())),
            rand(&[2, 3, 8], 9).into(),
        ),
        (
            Box::new(
                Sequential::new()
                    .add(Linear::new(8, 4).unwrap())
                    .add(Tanh::new()),
            ),
            vec(),
        ),
        (
            Box::new(
                ConcatTable::new()
                    .add(Linear::new(8, 2).unwrap())
                    .add(Identity::new()),
            ),
            vec(),
        ),
        (
            Box::new(
                ParallelTable::new()
                    .add(Linear::new(8, 2).unwrap())
                    .add(ReLU::new()),
            ),
            table(),
        ),
        (
            Box::new(
                Concat::new(1)
                    .add(Linear::new(8, 2).unwrap())
                    .add(Linear::new(8, 3).unwrap()),
            ),
            vec(),
        ),
        (Box::new(CAddTable::new()), table()),
        (Box::new(CMulTable::new()), table()),
        (Box::new(CMaxTable::new()), table()),
        (Box::new(JoinTable::new(1)), table()),
        (Box::new(SplitTable::new(1)), vec()),
        (Box::new(SelectTable::new(1)), table()),
        (Box::new(Identity::new()), table()),
    ];
    for (m, x) in cases {
        round_trip(m, x);
    }
    // A graph with two inputs and a node read twice.
    let mut g = GraphBuilder::new();
    let (a, b) = (g.input(), g.input());
    let la = g.node(Linear::new(8, 8).unwrap(), &[a]).unwrap();
    let t = g.node(Tanh::new(), &[la]).unwrap();
    let sum = g.node(CAddTable::new(), &[la, t, b]).unwrap();
    round_trip(Box::new(g.build(&[a, b], &[sum, t]).unwrap()), table());
}

#[test]
fn zoo_models_round_trip_through_files() {
    manual_seed(82);
    let dir = std::env::temp_dir().join(format!("bigdl-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: Vec<(Box<dyn Module>, Vec<usize>)> = vec![
        (Box::new(models::lenet5(10).unwrap()), vec![2, 1, 28, 28]),
        (
            Box::new(models::resnet_cifar(20, 10).unwrap()),
            vec![2, 3, 32, 32],
        ),
        (
            Box::new(models::vgg16_cifar(10).unwrap()),
            vec![2, 3, 32, 32],
        ),
        (Box::new(models::autoencoder().unwrap()), vec![2, 784]),
    ];
    for (k, (mut m, shape)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("m{k}.bdl"));
        let x: Activity = rand(&shape, k as u64).into();
        m.forward(&x).unwrap();
        m.evaluate();
        let want = output(m.as_mut(), &x);
        save(m.as_mut(), &path).unwrap();
        let mut back = load(&path).unwrap();
        back.evaluate();
        assert_eq!(output(back.as_mut(), &x), want, "{}", m.name());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Loaded files are memory-mapped: the weights stay the file's pages until
/// training writes them (copied first: the file never changes); version-1
/// files (no padding before the weights) still load.
#[test]
fn loaded_weights_are_mapped_until_written() {
    manual_seed(84);
    let dir = std::env::temp_dir().join(format!("bigdl-io-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.bdl");
    let mut m = models::lenet5(10).unwrap();
    let x: Activity = rand(&[2, 1, 28, 28], 9).into();
    m.evaluate();
    let want = output(&mut m, &x);
    save(&mut m, &path).unwrap();
    let file = std::fs::read(&path).unwrap();
    let mut back = load(&path).unwrap();
    back.evaluate();
    let mut mapped = Vec::new();
    back.visit_parameters(&mut |w, _| mapped.push(w.is_mapped()));
    assert!(
        !mapped.is_empty() && mapped.iter().all(|&b| b),
        "{mapped:?}"
    );
    assert_eq!(output(back.as_mut(), &x), want);
    // A training step writes the weights: copied, the file untouched.
    back.training();
    let y = back.forward(&x).unwrap();
    back.backward(&x, &y).unwrap();
    back.visit_parameters(&mut |w, g| w.sub_(&g.mul_scalar(0.1)).unwrap());
    back.visit_parameters(&mut |w, _| assert!(!w.is_mapped()));
    back.evaluate();
    assert_ne!(output(back.as_mut(), &x), want);
    assert_eq!(std::fs::read(&path).unwrap(), file);
    // Version 1: the same without the padding.
    let desc = u64::from_le_bytes(file[12..20].try_into().unwrap()) as usize;
    let mut v1 = file.clone();
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    let pad_at = 24 + desc;
    let pad = (64 - (pad_at + 20) % 64) % 64;
    assert!(v1[pad_at..pad_at + pad].iter().all(|&b| b == 0));
    v1.drain(pad_at..pad_at + pad);
    std::fs::write(&path, &v1).unwrap();
    let mut old = load(&path).unwrap();
    old.evaluate();
    assert_eq!(output(old.as_mut(), &x), want);
    // Damaged padding (version 2) is an error.
    if pad > 0 {
        let mut bad = file.clone();
        bad[pad_at] = 1;
        assert!(decode(&bad).is_err());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_files_are_errors() {
    manual_seed(83);
    let mut m = Sequential::new()
        .add(Linear::new(4, 3).unwrap())
        .add(BatchNormalization::new(3).unwrap())
        .add(LogSoftMax::new());
    let bytes = encode(&mut m).unwrap();
    assert!(decode(&bytes).is_ok());
    // Every truncation, and every single flipped byte, fails cleanly.
    for n in 0..bytes.len() {
        assert!(decode(&bytes[..n]).is_err(), "truncated to {n}");
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x40;
        // A flip in an f32 weight's payload is caught by the tensor checksum;
        // nothing may panic.
        let _ = decode(&b);
        if i < 24 + 40 {
            assert!(decode(&b).is_err(), "flipped byte {i}");
        }
    }
    // A description claiming a billion attributes allocates nothing.
    let mut huge = Vec::new();
    huge.extend(5u32.to_le_bytes());
    huge.extend(b"Dummy");
    huge.extend(u32::MAX.to_le_bytes());
    assert!(Spec::decode(&huge).is_err());
    // Unknown types and bad attributes name the problem.
    let err = build(&Spec::new("Frobnicate")).unwrap_err().to_string();
    assert!(err.contains("Frobnicate"), "{err}");
    let err = build(&Spec::new("Linear").int("in", 3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("out"), "{err}");
    // A module without a description cannot be saved, with a clear error.
    #[derive(Clone, Debug)]
    struct Custom;
    impl Module for Custom {
        fn name(&self) -> &str {
            "Custom"
        }
        fn forward(&mut self, input: &Activity) -> Result<Activity> {
            Ok(input.clone())
        }
        fn update_grad_input(&mut self, _: &Activity, g: &Activity) -> Result<Activity> {
            Ok(g.clone())
        }
        fn clone_module(&self) -> Box<dyn Module> {
            Box::new(self.clone())
        }
    }
    let mut with_custom = Sequential::new().add(Custom);
    assert!(encode(&mut with_custom).is_err());
}

#[test]
fn models_export_to_onnx_and_import_back() {
    use bigdl_nn::io::export_onnx;
    use bigdl_nn::io::onnx::import;
    manual_seed(84);
    let cases: Vec<(Box<dyn Module>, Vec<usize>)> = vec![
        (Box::new(models::lenet5(10).unwrap()), vec![3, 1, 28, 28]),
        (
            Box::new(models::resnet_cifar(20, 10).unwrap()),
            vec![2, 3, 32, 32],
        ),
        (
            Box::new(models::vgg16_cifar(10).unwrap()),
            vec![2, 3, 32, 32],
        ),
        (
            Box::new(
                Sequential::new()
                    .add(
                        SpatialFullConvolution::new(3, 4, (3, 3), 1)
                            .unwrap()
                            .stride(2, 2)
                            .adj(1, 1),
                    )
                    .add(SpatialCrossMapLRN::new(3, 0.1, 0.75, 1.0))
                    .add(SpatialAveragePooling::new((2, 2), (2, 2)).count_include_pad(false))
                    .add(ReLU6::new())
                    .add(Flatten::new())
                    .add(Linear::new(4 * 7 * 7, 5).unwrap())
                    .add(LeakyReLU::new(0.2))
                    .add(Scale::new(&[5]).unwrap())
                    .add(MulConstant::new(0.5))
                    .add(SoftMax::new()),
            ),
            vec![2, 3, 6, 6],
        ),
    ];
    for (mut m, shape) in cases {
        let name = m.name().to_string();
        let x: Activity = rand(&shape, 9).into();
        m.forward(&x).unwrap(); // move the batch-norm statistics
        m.evaluate();
        let want = output(m.as_mut(), &x);
        let bytes = export_onnx(m.as_mut(), &shape).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut back = import(&bytes, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = output(back.as_mut(), &x);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-5 + 1e-5 * b.abs(), "{name}: {a} vs {b}");
        }
    }
    // Layers without an ONNX mapping are named.
    let mut rnn = Sequential::new().add(Recurrent::new(Cell::lstm(3, 2).unwrap()));
    let err = export_onnx(&mut rnn, &[1, 4, 3]).unwrap_err().to_string();
    assert!(err.contains("Recurrent"), "{err}");
}
