//! Views and copies against a naive model: an explicit array of "which original
//! element sits here", transformed by index arithmetic that knows nothing of
//! strides.

use bigdl_tensor::{Tensor, TensorError};

/// SplitMix64, seeded from BIGDL_TEST_SEED or the clock (printed).
struct Rng(u64);
impl Rng {
    fn new(test: &str) -> Rng {
        let seed = std::env::var("BIGDL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(7, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: BIGDL_TEST_SEED={seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The model: sizes and, in row-major order, the original flat index of each element.
#[derive(Clone, Debug)]
struct Model {
    sizes: Vec<usize>,
    elems: Vec<usize>,
}

fn unravel(mut flat: usize, sizes: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; sizes.len()];
    for d in (0..sizes.len()).rev() {
        idx[d] = flat % sizes[d];
        flat /= sizes[d];
    }
    idx
}

fn ravel(idx: &[usize], sizes: &[usize]) -> usize {
    idx.iter().zip(sizes).fold(0, |acc, (&i, &s)| acc * s + i)
}

impl Model {
    fn new(sizes: &[usize]) -> Model {
        Model {
            sizes: sizes.to_vec(),
            elems: (0..sizes.iter().product()).collect(),
        }
    }
    /// A new model of `sizes` whose element at `idx` is the old one at `pick(idx)`.
    fn remap(&self, sizes: Vec<usize>, pick: impl Fn(&[usize]) -> Vec<usize>) -> Model {
        let n: usize = sizes.iter().product();
        let elems = (0..n)
            .map(|f| self.elems[ravel(&pick(&unravel(f, &sizes)), &self.sizes)])
            .collect();
        Model { sizes, elems }
    }
}

/// Applies one random view to both the tensor and the model.
fn random_view(rng: &mut Rng, t: &Tensor<f64>, m: &Model) -> Option<(Tensor<f64>, Model, String)> {
    let nd = m.sizes.len();
    if nd == 0 {
        return None;
    }
    let d = rng.below(nd);
    let size = m.sizes[d];
    Some(match rng.below(8) {
        0 if size > 0 => {
            let start = rng.below(size);
            let len = rng.below(size - start + 1);
            let mut s = m.sizes.clone();
            s[d] = len;
            let model = m.remap(s, |i| {
                let mut j = i.to_vec();
                j[d] += start;
                j
            });
            (
                t.narrow(d, start, len).unwrap(),
                model,
                format!("narrow({d},{start},{len})"),
            )
        }
        1 if size > 0 => {
            let k = rng.below(size);
            let mut s = m.sizes.clone();
            s.remove(d);
            let model = m.remap(s, |i| {
                let mut j = i.to_vec();
                j.insert(d, k);
                j
            });
            (t.select(d, k).unwrap(), model, format!("select({d},{k})"))
        }
        2 => {
            let e = rng.below(nd);
            let mut s = m.sizes.clone();
            s.swap(d, e);
            let model = m.remap(s, |i| {
                let mut j = i.to_vec();
                j.swap(d, e);
                j
            });
            (
                t.transpose(d, e).unwrap(),
                model,
                format!("transpose({d},{e})"),
            )
        }
        3 => {
            let mut perm: Vec<usize> = (0..nd).collect();
            for i in (1..nd).rev() {
                perm.swap(i, rng.below(i + 1));
            }
            let s = perm.iter().map(|&p| m.sizes[p]).collect();
            let model = m.remap(s, |i| {
                let mut j = vec![0; nd];
                for (k, &p) in perm.iter().enumerate() {
                    j[p] = i[k];
                }
                j
            });
            (
                t.permute(&perm).unwrap(),
                model,
                format!("permute({perm:?})"),
            )
        }
        4 if size > 0 => {
            let w = 1 + rng.below(size);
            let step = 1 + rng.below(3);
            let mut s = m.sizes.clone();
            s[d] = (size - w) / step + 1;
            s.push(w);
            let model = m.remap(s, |i| {
                let mut j = i[..nd].to_vec();
                j[d] = i[d] * step + i[nd];
                j
            });
            (
                t.unfold(d, w, step).unwrap(),
                model,
                format!("unfold({d},{w},{step})"),
            )
        }
        5 if nd < 5 => {
            let at = rng.below(nd + 1);
            let mut s = m.sizes.clone();
            s.insert(at, 1);
            let model = m.remap(s, |i| {
                let mut j = i.to_vec();
                j.remove(at);
                j
            });
            (t.unsqueeze(at).unwrap(), model, format!("unsqueeze({at})"))
        }
        6 if size == 1 => {
            let mut s = m.sizes.clone();
            s[d] = 1 + rng.below(3);
            let model = m.remap(s.clone(), |i| {
                let mut j = i.to_vec();
                j[d] = 0;
                j
            });
            (t.expand(&s).unwrap(), model, format!("expand({s:?})"))
        }
        _ => {
            // Reshape to a random regrouping of the same element count.
            let n: usize = m.sizes.iter().product();
            let s = if n > 1 && n.is_multiple_of(2) {
                vec![2, n / 2]
            } else {
                vec![n]
            };
            let model = Model {
                sizes: s.clone(),
                elems: m.elems.clone(),
            };
            let (r, _) = t.reshape(&s).unwrap();
            (r, model, format!("reshape({s:?})"))
        }
    })
}

#[test]
fn random_view_chains_match_the_model() {
    let mut rng = Rng::new("random_view_chains_match_the_model");
    for _ in 0..400 {
        let nd = 1 + rng.below(4);
        let sizes: Vec<usize> = (0..nd).map(|_| 1 + rng.below(5)).collect();
        let n: usize = sizes.iter().product();
        let base = Tensor::from_vec((0..n).map(|i| i as f64).collect(), &sizes).unwrap();
        let (mut t, mut m) = (base.clone(), Model::new(&sizes));
        let mut trace = Vec::new();
        for _ in 0..5 {
            let Some((t2, m2, op)) = random_view(&mut rng, &t, &m) else {
                break;
            };
            trace.push(op);
            assert_eq!(t2.sizes(), &m2.sizes[..], "{trace:?}");
            let want: Vec<f64> = m2.elems.iter().map(|&e| e as f64).collect();
            assert_eq!(t2.to_vec(), want, "{sizes:?} {trace:?}");
            assert_eq!(t2.contiguous().to_vec(), want, "{trace:?}");
            assert!(t2.contiguous().is_contiguous());
            // Element access agrees with the model too.
            if !want.is_empty() {
                let f = rng.below(want.len());
                assert_eq!(
                    t2.get(&unravel(f, &m2.sizes)).unwrap(),
                    want[f],
                    "{trace:?}"
                );
            }
            (t, m) = (t2, m2);
        }
    }
}

#[test]
fn views_share_storage_and_copies_do_not() {
    let t = Tensor::<f32>::zeros(&[3, 4]).unwrap();
    let row = t.select(0, 1).unwrap();
    row.fill(5.0);
    let col = t.narrow(1, 2, 1).unwrap();
    col.add_scalar_(1.0);
    assert_eq!(t.to_vec(), [0., 0., 1., 0., 5., 5., 6., 5., 0., 0., 1., 0.]);
    let copy = t.deep_clone();
    copy.zero();
    assert_eq!(t.get(&[1, 0]).unwrap(), 5.0);
    assert!(row.shares_storage(&t) && !copy.shares_storage(&t));
    // contiguous() of a contiguous tensor is a view; of a transpose, a copy.
    assert!(t.contiguous().shares_storage(&t));
    assert!(!t.t().unwrap().contiguous().shares_storage(&t));
}

#[test]
fn copy_between_layouts_and_overlapping_copies() {
    let a = Tensor::<f64>::arange(12).unwrap().view(&[3, 4]).unwrap();
    let b = Tensor::<f64>::zeros(&[4, 3]).unwrap();
    b.t().unwrap().copy_from(&a).unwrap();
    assert_eq!(b.t().unwrap().to_vec(), a.to_vec());
    // Overlapping: shift a row of the same storage by one.
    let v = Tensor::<f64>::arange(6).unwrap();
    v.narrow(0, 1, 5)
        .unwrap()
        .copy_from(&v.narrow(0, 0, 5).unwrap())
        .unwrap();
    assert_eq!(v.to_vec(), [0., 0., 1., 2., 3., 4.]);
    assert!(matches!(
        b.copy_from(&Tensor::zeros(&[5]).unwrap()),
        Err(TensorError::ShapeMismatch {
            op: "copy_from",
            ..
        })
    ));
}

#[test]
fn reshape_says_whether_it_copied() {
    let t = Tensor::<f32>::arange(24).unwrap().view(&[2, 3, 4]).unwrap();
    let (v, is_view) = t.reshape(&[6, 4]).unwrap();
    assert!(is_view && v.shares_storage(&t));
    let tt = t.transpose(1, 2).unwrap();
    assert!(tt.view(&[24]).is_err());
    let (c, is_view) = tt.reshape(&[24]).unwrap();
    assert!(!is_view && !c.shares_storage(&t));
    assert_eq!(c.to_vec(), tt.to_vec());
}

#[test]
fn bad_arguments_are_errors() {
    let t = Tensor::<f32>::zeros(&[2, 3]).unwrap();
    assert!(matches!(
        t.narrow(2, 0, 1),
        Err(TensorError::DimOutOfRange {
            dim: 2,
            rank: 2,
            ..
        })
    ));
    assert!(matches!(
        t.narrow(1, 2, 2),
        Err(TensorError::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        t.narrow(1, usize::MAX, 2),
        Err(TensorError::IndexOutOfRange { .. })
    ));
    assert!(t.select(0, 2).is_err());
    assert!(t.permute(&[0, 0]).is_err());
    assert!(t.view(&[4]).is_err());
    assert!(t.unfold(1, 4, 1).is_err() && t.unfold(1, 1, 0).is_err());
    assert!(t.expand(&[3]).is_err() && t.expand(&[2, 4]).is_err());
    assert!(t.get(&[2, 0]).is_err() && t.get(&[0]).is_err());
    assert!(Tensor::<f32>::zeros(&[usize::MAX, 4]).is_err());
    assert!(Tensor::from_vec(vec![1.0f32; 5], &[2, 3]).is_err());
    assert!(t.item().is_err());
    let e = t.view(&[4]).unwrap_err().to_string();
    assert!(e.starts_with("view: shape mismatch"), "{e}");
}

#[test]
fn slices_of_contiguous_tensors_and_aliasing_errors() {
    let t = Tensor::<f32>::from_vec((0..6).map(|i| i as f32).collect(), &[2, 3]).unwrap();
    let row = t.narrow(0, 1, 1).unwrap();
    assert_eq!(&*row.as_slice().unwrap(), &[3.0, 4.0, 5.0]);
    row.as_slice_mut().unwrap()[0] = 9.0;
    assert_eq!(t.get(&[1, 0]).unwrap(), 9.0);
    // Not contiguous: an error, not a copy.
    assert!(t.t().unwrap().as_slice().is_err());
    // Readers share; a writer on the same storage is refused, not deadlocked.
    let r1 = t.as_slice().unwrap();
    let r2 = row.as_slice().unwrap();
    assert!(matches!(row.as_slice_mut(), Err(TensorError::Busy { .. })));
    drop((r1, r2));
    let w = t.as_slice_mut().unwrap();
    assert!(row.as_slice().is_err());
    drop(w);
    assert!(row.as_slice().is_ok());
}

#[test]
fn disjoint_mutable_slices_of_one_storage() {
    let flat = Tensor::<f32>::zeros(&[10]).unwrap();
    let w = flat.narrow(0, 0, 6).unwrap().view(&[2, 3]).unwrap();
    let b = flat.narrow(0, 6, 2).unwrap();
    let other = Tensor::<f32>::zeros(&[3]).unwrap();
    Tensor::with_disjoint_mut(&[&b, &other, &w], |s| {
        s[0].fill(1.0);
        s[1].fill(2.0);
        s[2][5] = 3.0;
    })
    .unwrap();
    assert_eq!(flat.to_vec(), [0., 0., 0., 0., 0., 3., 1., 1., 0., 0.]);
    assert_eq!(other.to_vec(), [2.0; 3]);
    // Overlapping views are refused.
    let overlap = flat.narrow(0, 5, 3).unwrap();
    assert!(Tensor::with_disjoint_mut(&[&w, &overlap], |_| ()).is_err());
    // A storage read elsewhere is refused, not deadlocked.
    let r = flat.as_slice().unwrap();
    assert!(Tensor::with_disjoint_mut(&[&b], |_| ()).is_err());
    drop(r);
}

#[test]
fn cat_joins_along_a_dimension() {
    let a = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[2, 2]).unwrap();
    let b = Tensor::<f32>::from_vec(vec![5., 6.], &[2, 1]).unwrap();
    let c = Tensor::cat(&[&a, &b], 1).unwrap();
    assert_eq!(c.sizes(), &[2, 3]);
    assert_eq!(c.to_vec(), [1., 2., 5., 3., 4., 6.]);
    let r = Tensor::cat(&[&a, &a.t().unwrap()], 0).unwrap();
    assert_eq!(r.to_vec(), [1., 2., 3., 4., 1., 3., 2., 4.]);
    assert!(Tensor::cat(&[&a, &b], 0).is_err());
    assert!(Tensor::<f32>::cat(&[], 0).is_err());
    assert!(Tensor::cat(&[&a], 2).is_err());
}

/// Every way of writing bumps the storage's version, seen by every view;
/// reads and copies elsewhere do not.
#[test]
fn writes_change_the_version_of_every_view() {
    let t = Tensor::<f32>::zeros(&[3, 4]).unwrap();
    let row = t.select(0, 1).unwrap();
    let v0 = t.version().unwrap();
    assert_eq!(row.version(), Some(v0));
    let _ = t.to_vec();
    let _ = t.as_slice().unwrap()[0];
    let copy = t.deep_clone();
    copy.fill(1.0);
    assert_eq!(t.version(), Some(v0));
    let mut last = v0;
    let writes: [&dyn Fn(); 5] = [
        &|| row.fill(2.0),
        &|| t.set(&[0, 0], 1.0).unwrap(),
        &|| t.narrow(1, 2, 1).unwrap().add_scalar_(1.0),
        &|| t.copy_from(&copy).unwrap(),
        &|| t.as_slice_mut().unwrap()[3] = 4.0,
    ];
    for (i, write) in writes.iter().enumerate() {
        write();
        let v = t.version().unwrap();
        assert_ne!(v, last, "write {i}");
        assert_eq!(row.version(), Some(v));
        last = v;
    }
    // Unknown while a write is in progress.
    let slice = row.as_slice_mut().unwrap();
    assert_eq!(t.version(), None);
    drop(slice);
}
