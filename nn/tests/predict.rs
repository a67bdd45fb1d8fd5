//! `Module::predict`: the values of `forward`, bit for bit, with the ReLUs and
//! residual additions that follow convolutions fused into them, and only
//! where fusing is exact; no backward pass after it.

use bigdl_nn::layers::{Linear, ReLU, Reshape, SpatialConvolution, SpatialMaxPooling, Tanh};
use bigdl_nn::{
    Activity, CAddTable, Concat, FusionRole, GraphBuilder, Module, Sequential, manual_seed,
};
use bigdl_tensor::{Generator, Tensor};

fn rand(sizes: &[usize], seed: u64) -> Tensor<f32> {
    Tensor::uniform(sizes, -1.0, 1.0, &mut Generator::new(seed)).unwrap()
}

fn conv(cin: usize, cout: usize, k: usize) -> SpatialConvolution {
    SpatialConvolution::new(cin, cout, (k, k))
        .unwrap()
        .pad(k / 2, k / 2)
}

fn bits(a: &Activity) -> Vec<Vec<u32>> {
    match a {
        Activity::Tensor(t) => vec![t.to_vec().iter().map(|v| v.to_bits()).collect()],
        Activity::Table(v) => v.iter().flat_map(bits).collect(),
    }
}

/// `predict` equals `forward` on `model` in both modes, twice in a row, and a
/// backward pass after `predict` is an error until the next `forward`.
fn check(model: &mut dyn Module, x: &Activity) {
    for training in [false, true] {
        model.set_training(training);
        let want = bits(&model.forward(x).unwrap());
        for _ in 0..2 {
            assert_eq!(
                bits(&model.predict(x).unwrap()),
                want,
                "training {training}"
            );
        }
        let y = model.predict(x).unwrap();
        assert!(model.backward(x, &y).is_err());
        let y = model.forward(x).unwrap();
        model.backward(x, &y).unwrap();
    }
}

#[test]
fn graph_predict_fuses_only_where_exact() {
    manual_seed(7);
    let mut g = GraphBuilder::new();
    let x = g.input();
    // conv -> relu: fused.
    let a = g.node(conv(3, 8, 3), &[x]).unwrap();
    let r1 = g.node(ReLU::new(), &[a]).unwrap();
    // conv -> add (the other input computed earlier) -> relu: fused.
    let b = g.node(conv(8, 8, 3), &[r1]).unwrap();
    let s = g.node(CAddTable::new(), &[b, r1]).unwrap();
    let r2 = g.node(ReLU::new(), &[s]).unwrap();
    // A convolution read twice (and a graph output): not fused.
    let c = g.node(conv(8, 8, 1), &[r2]).unwrap();
    let d = g.node(CAddTable::new(), &[c, r2]).unwrap();
    // The addition's other input is computed after e: e not fused with it;
    // f (computed after e) is, with the ReLU after the addition.
    let e = g.node(conv(8, 8, 3), &[d]).unwrap();
    let f = g.node(conv(8, 8, 1), &[d]).unwrap();
    let sum = g.node(CAddTable::new(), &[e, f]).unwrap();
    let h = g.node(ReLU::new(), &[sum]).unwrap();
    // An addition read twice: its convolution is fused with the addition,
    // not with the ReLU, whose input is also a graph output.
    let i = g.node(conv(8, 8, 3), &[h]).unwrap();
    let j = g.node(CAddTable::new(), &[i, h]).unwrap();
    let k = g.node(ReLU::new(), &[j]).unwrap();
    // A Tanh is not a ReLU.
    let l = g.node(conv(8, 4, 3), &[k]).unwrap();
    let t = g.node(Tanh::new(), &[l]).unwrap();
    let mut model = g.build(&[x], &[t, c, j]).unwrap();
    check(&mut model, &rand(&[2, 3, 9, 7], 1).into());
}

#[test]
fn sequential_and_concat_predict_match_forward() {
    manual_seed(11);
    let mut model = Sequential::new()
        .add(conv(3, 8, 5))
        .add(ReLU::new())
        .add(SpatialMaxPooling::new((2, 2), (2, 2)))
        .add(
            Concat::new(1)
                .add(Sequential::new().add(conv(8, 4, 1)).add(ReLU::new()))
                .add(conv(8, 4, 3)),
        )
        .add(ReLU::new())
        .add(Reshape::new(&[8 * 6 * 6]))
        .add(Linear::new(8 * 6 * 6, 5).unwrap())
        .add(ReLU::new());
    check(&mut model, &rand(&[3, 3, 12, 12], 2).into());
    // Max pooling predicts without recording the argmax.
    check(
        &mut SpatialMaxPooling::new((3, 3), (2, 2)).pad(1, 1).ceil(),
        &rand(&[2, 3, 11, 10], 5).into(),
    );
}

#[test]
fn fused_layers_report_their_roles() {
    assert_eq!(conv(1, 1, 1).fusion_role(), FusionRole::Producer);
    assert_eq!(ReLU::new().fusion_role(), FusionRole::Relu);
    assert_eq!(CAddTable::new().fusion_role(), FusionRole::Add);
    assert_eq!(Tanh::new().fusion_role(), FusionRole::None);
    // The default `predict_with` (separate passes) of a module that does not
    // fuse: ReLU(Tanh(x) + r).
    let (x, r) = (rand(&[2, 5], 3), rand(&[2, 5], 4));
    let got = Tanh::new()
        .predict_with(&x.clone().into(), Some(&r), true)
        .unwrap();
    let tanh = Tanh::new().forward(&x.clone().into()).unwrap();
    let want: Vec<f32> = tanh
        .tensor("test")
        .unwrap()
        .to_vec()
        .iter()
        .zip(r.to_vec())
        .map(|(t, r)| (t + r).max(0.0))
        .collect();
    assert_eq!(got.tensor("test").unwrap().to_vec(), want);
    assert!(
        Tanh::new()
            .predict_with(&x.into(), Some(&rand(&[5, 2], 5)), false)
            .is_err()
    );
}

/// A layer whose forward pass runs on a packed weight keeps the packing
/// between calls and packs again after any write to the weight: through
/// the layer's tensor, a view of it, or the parameters an optimizer sees.
/// Two layers: ResNet-50's last 1x1 layers (smaller), on panels of output
/// channels (AVX-512), and a 3x3 layer whose batch sizes alternate between
/// one image (panels on AVX-512, else none) and eight (a Winograd
/// transform of the kernel), each packing kept for its batch size.
#[test]
fn packed_weights_follow_every_write() {
    manual_seed(5);
    type Make = fn() -> SpatialConvolution;
    let layers: [(Make, Vec<Activity>); 2] = [
        (
            || SpatialConvolution::new(400, 40, (1, 1)).unwrap(),
            vec![rand(&[1, 400, 7, 7], 1).into()],
        ),
        (
            || SpatialConvolution::new(16, 32, (3, 3)).unwrap().pad(1, 1),
            vec![
                rand(&[1, 16, 16, 16], 2).into(),
                rand(&[8, 16, 16, 16], 3).into(),
            ],
        ),
    ];
    let writes: [&dyn Fn(&mut SpatialConvolution); 3] = [
        &|a| a.weight().fill(0.25),
        &|a| a.weight().select(0, 31).unwrap().add_scalar_(1.0),
        &|a| {
            a.visit_parameters(&mut |w, _| {
                if w.dim() == 4 {
                    w.set(&[3, 5, 0, 0], -2.0).unwrap();
                }
            })
        },
    ];
    for (make, xs) in layers {
        let mut a = make();
        for x in &xs {
            check(&mut Sequential::new().add(a.clone()), x);
        }
        let fresh = |a: &SpatialConvolution, x: &Activity| {
            let mut b = make();
            b.weight().copy_from(a.weight()).unwrap();
            b.bias().unwrap().copy_from(a.bias().unwrap()).unwrap();
            bits(&b.predict(x).unwrap())
        };
        let mut last: Vec<_> = xs.iter().map(|x| bits(&a.predict(x).unwrap())).collect();
        for (i, write) in writes.iter().enumerate() {
            write(&mut a);
            // Twice through the batch sizes: packed, then kept.
            for round in 0..2 {
                for (x, last) in xs.iter().zip(&mut last) {
                    let y = bits(&a.predict(x).unwrap());
                    assert_eq!(y, fresh(&a, x), "write {i}");
                    assert_eq!(bits(&a.forward(x).unwrap()), y, "write {i}");
                    assert_eq!(y == *last, round == 1, "write {i}, round {round}");
                    *last = y;
                }
            }
        }
    }
}
