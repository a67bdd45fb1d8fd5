//! Math against naive f64 references: broadcasting element-wise operations,
//! reductions, matrix products; random tensors; `.npy` files.

use bigdl_tensor::{Generator, Tensor, TensorError};

fn t64(data: &[f64], sizes: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(data.to_vec(), sizes).unwrap()
}

#[test]
fn broadcasting_binary_ops() {
    let a = t64(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let row = t64(&[10., 20., 30.], &[3]);
    let col = t64(&[100., 200.], &[2, 1]);
    assert_eq!(
        a.add(&row).unwrap().to_vec(),
        [11., 22., 33., 14., 25., 36.]
    );
    assert_eq!(
        a.cmul(&col).unwrap().to_vec(),
        [100., 200., 300., 800., 1000., 1200.]
    );
    let outer = col.sub(&row).unwrap();
    assert_eq!(outer.sizes(), &[2, 3]);
    assert_eq!(outer.to_vec(), [90., 80., 70., 190., 180., 170.]);
    assert_eq!(
        a.cdiv(&t64(&[2.], &[])).unwrap().to_vec(),
        [0.5, 1., 1.5, 2., 2.5, 3.]
    );
    // In place: other broadcasts to self; self may not grow.
    a.add_(&row).unwrap();
    assert_eq!(a.to_vec(), [11., 22., 33., 14., 25., 36.]);
    assert!(matches!(
        row.add_(&a),
        Err(TensorError::ShapeMismatch { op: "add_", .. })
    ));
    assert!(a.add(&t64(&[1., 2.], &[2])).is_err());
    // In place with an operand aliasing self (a transposed view of itself).
    let sq = t64(&[1., 2., 3., 4.], &[2, 2]);
    sq.add_(&sq.t().unwrap()).unwrap();
    assert_eq!(sq.to_vec(), [2., 5., 5., 8.]);
    // Through a strided view: only the view's elements change.
    let base = Tensor::<f64>::zeros(&[3, 3]).unwrap();
    base.narrow(1, 1, 2).unwrap().add_scalar_(1.0);
    assert_eq!(base.to_vec(), [0., 1., 1., 0., 1., 1., 0., 1., 1.]);
}

#[test]
fn unary_ops_match_std() {
    let xs = [-2.5f64, -1.0, -0.1, 0.0, 0.3, 1.0, 4.0];
    let t = t64(&xs, &[7]);
    let check = |got: Vec<f64>, f: fn(f64) -> f64| {
        for (g, &x) in got.iter().zip(&xs) {
            let w = f(x);
            assert!(g == &w || (g.is_nan() && w.is_nan()), "{x}: {g} vs {w}");
        }
    };
    check(t.exp().to_vec(), f64::exp);
    check(t.tanh().to_vec(), f64::tanh);
    check(t.abs().to_vec(), f64::abs);
    check(t.sqrt().to_vec(), f64::sqrt);
    check(t.log().to_vec(), f64::ln);
    check(t.sigmoid().to_vec(), |x| 1.0 / (1.0 + (-x).exp()));
    assert_eq!(
        t.clamp(-1.0, 1.0).to_vec(),
        [-1., -1., -0.1, 0., 0.3, 1., 1.]
    );
    assert_eq!(t.pow(2.0).to_vec()[0], 6.25);
    t.neg_();
    assert_eq!(t.get(&[0]).unwrap(), 2.5);
}

#[test]
fn reductions_along_dims() {
    // 2 x 3 x 2, values chosen so every dimension matters.
    let v: Vec<f64> = (0..12).map(|i| ((i * 7) % 12) as f64).collect();
    let t = t64(&v, &[2, 3, 2]);
    for dim in 0..3 {
        let s = t.sum(dim).unwrap();
        let (mx, imx) = t.max(dim).unwrap();
        let (mn, imn) = t.min(dim).unwrap();
        let mut expect_sizes = [2, 3, 2];
        expect_sizes[dim] = 1;
        assert_eq!(s.sizes(), &expect_sizes[..]);
        // Naive reference: walk every output position and scan along `dim`.
        let out_n: usize = expect_sizes.iter().product();
        for o in 0..out_n {
            let mut idx = vec![
                o / (expect_sizes[1] * expect_sizes[2]),
                (o / expect_sizes[2]) % expect_sizes[1],
                o % expect_sizes[2],
            ];
            let vals: Vec<f64> = (0..t.sizes()[dim])
                .map(|i| {
                    idx[dim] = i;
                    t.get(&idx).unwrap()
                })
                .collect();
            idx[dim] = 0;
            assert_eq!(s.get(&idx).unwrap(), vals.iter().sum::<f64>());
            let (ai, av) = vals
                .iter()
                .enumerate()
                .fold((0, f64::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b });
            assert_eq!(
                (imx.get(&idx).unwrap() as usize, mx.get(&idx).unwrap()),
                (ai, av)
            );
            let (ni, nv) = vals
                .iter()
                .enumerate()
                .fold((0, f64::MAX), |b, (i, &x)| if x < b.1 { (i, x) } else { b });
            assert_eq!(
                (imn.get(&idx).unwrap() as usize, mn.get(&idx).unwrap()),
                (ni, nv)
            );
        }
    }
    assert_eq!(t.sum_all(), 66.0);
    assert_eq!(t.mean(1).unwrap().sizes(), &[2, 1, 2]);
    assert_eq!(t.max_all().unwrap(), 11.0);
    // NaN propagates through max; empty dimensions are errors for max.
    let n = t64(&[1., f64::NAN, 3.], &[3]);
    assert!(n.max_all().unwrap().is_nan());
    assert_eq!(n.argmax(0).unwrap().to_vec(), [1]);
    assert!(Tensor::<f64>::zeros(&[0, 2]).unwrap().max(0).is_err());
    assert!(t.sum(3).is_err());
    // f32 sums accumulate in f64: 1e8 + many ones is not lost.
    let big = Tensor::<f32>::from_vec([vec![1e8f32], vec![1.0; 100]].concat(), &[101]).unwrap();
    assert_eq!(big.sum_all(), 100_000_100.0);
}

fn naive_mm(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

#[test]
fn matrix_products_f32_and_f64() {
    let (m, n, k) = (7, 5, 9);
    let a: Vec<f64> = (0..m * k).map(|i| ((i * 13) % 7) as f64 - 3.0).collect();
    let b: Vec<f64> = (0..k * n).map(|i| ((i * 5) % 11) as f64 - 5.0).collect();
    let want = naive_mm(&a, &b, m, n, k);
    // f64, and f32 through SGEMM: integer inputs, so exact.
    assert_eq!(
        t64(&a, &[m, k]).mm(&t64(&b, &[k, n])).unwrap().to_vec(),
        want
    );
    let af = Tensor::from_vec(a.iter().map(|&x| x as f32).collect(), &[m, k]).unwrap();
    let bf = Tensor::from_vec(b.iter().map(|&x| x as f32).collect(), &[k, n]).unwrap();
    let got: Vec<f64> = af
        .mm(&bf)
        .unwrap()
        .to_vec()
        .iter()
        .map(|&x| x as f64)
        .collect();
    assert_eq!(got, want);
    // Transposed and non-BLAS-strided operands.
    let at = af.t().unwrap().contiguous().t().unwrap(); // column-major view of A
    let got: Vec<f64> = at
        .mm(&bf)
        .unwrap()
        .to_vec()
        .iter()
        .map(|&x| x as f64)
        .collect();
    assert_eq!(got, want);
    let wide = Tensor::<f32>::zeros(&[k, 2 * n]).unwrap();
    let strided = wide.unfold(1, 1, 2).unwrap().select(2, 0).unwrap(); // k x n, stride 2
    strided.copy_from(&bf).unwrap();
    let got: Vec<f64> = af
        .mm(&strided)
        .unwrap()
        .to_vec()
        .iter()
        .map(|&x| x as f64)
        .collect();
    assert_eq!(got, want);
    // addmm_ with self aliasing an operand: c = 2c + a * c for square c.
    let c = t64(&[1., 2., 3., 4.], &[2, 2]);
    c.addmm_(2.0, 1.0, &c.clone(), &t64(&[1., 0., 0., 1.], &[2, 2]))
        .unwrap();
    assert_eq!(c.to_vec(), [3., 6., 9., 12.]);
    // mv, addmv_, bmm.
    let x = t64(&[1., 1., 1.], &[3]);
    let a23 = t64(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    assert_eq!(a23.mv(&x).unwrap().to_vec(), [6., 15.]);
    let y = t64(&[1., 1.], &[2]);
    y.addmv_(0.5, 2.0, &a23, &x).unwrap();
    assert_eq!(y.to_vec(), [12.5, 30.5]);
    let batch = t64(&[1., 2., 3., 4., 5., 6., 7., 8.], &[2, 2, 2]);
    assert_eq!(
        batch.bmm(&batch).unwrap().to_vec(),
        [7., 10., 15., 22., 67., 78., 91., 106.]
    );
    assert!(a23.mm(&a23).is_err());
    assert!(a23.mv(&y).is_err());
}

#[test]
fn random_tensors_are_reproducible_and_well_distributed() {
    let mut g = Generator::new(42);
    let u = Tensor::<f64>::uniform(&[20000], -1.0, 3.0, &mut g).unwrap();
    let n = Tensor::<f32>::normal(&[20000], 2.0, 0.5, &mut g).unwrap();
    let b = Tensor::<f32>::bernoulli(&[20000], 0.25, &mut g).unwrap();
    // Same seed, same draws in the same order: identical tensors.
    let mut g2 = Generator::new(42);
    assert_eq!(
        Tensor::<f64>::uniform(&[20000], -1.0, 3.0, &mut g2)
            .unwrap()
            .to_vec(),
        u.to_vec()
    );
    assert_eq!(
        Tensor::<f32>::normal(&[20000], 2.0, 0.5, &mut g2)
            .unwrap()
            .to_vec(),
        n.to_vec()
    );
    assert_eq!(g, {
        let _ = Tensor::<f32>::bernoulli(&[20000], 0.25, &mut g2).unwrap();
        g2
    });
    // Moments within ~5 standard errors.
    assert!(u.min_all().unwrap() >= -1.0 && u.max_all().unwrap() < 3.0);
    assert!((u.mean_all() - 1.0).abs() < 5.0 * (16.0f64 / 12.0 / 20000.0).sqrt());
    let nm = n.mean_all() as f64;
    assert!((nm - 2.0).abs() < 5.0 * 0.5 / 20000f64.sqrt(), "{nm}");
    let var = n.add_scalar(-nm as f32).pow(2.0).mean_all() as f64;
    assert!((var.sqrt() - 0.5).abs() < 0.02, "{var}");
    assert!((b.mean_all() as f64 - 0.25).abs() < 5.0 * (0.25f64 * 0.75 / 20000.0).sqrt());
    assert!(Tensor::<f32>::uniform(&[2], 1.0, 0.0, &mut g).is_err());
    assert!(Tensor::<f32>::bernoulli(&[2], 1.5, &mut g).is_err());
}

#[test]
fn npy_round_trip_and_hostile_files() {
    let dir = std::env::temp_dir().join(format!("bigdl-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Tensor::<f32>::arange(24)
        .unwrap()
        .view(&[2, 3, 4])
        .unwrap()
        .transpose(0, 2)
        .unwrap();
    let path = dir.join("t.npy");
    t.write_npy(&path).unwrap();
    let back = Tensor::<f32>::read_npy(&path).unwrap();
    assert_eq!(back.sizes(), t.sizes());
    assert_eq!(back.to_vec(), t.to_vec());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() % 4, 0);
    assert_eq!(
        (bytes.len() - 24 * 4) % 64,
        0,
        "data starts 64-byte aligned"
    );
    // i64 and 1-d and 0-d shapes.
    for shape in [&[5][..], &[]] {
        let ti =
            Tensor::<i64>::from_vec((0..shape.iter().product::<usize>() as i64).collect(), shape)
                .unwrap();
        assert_eq!(
            Tensor::<i64>::from_npy_bytes(&ti.to_npy_bytes())
                .unwrap()
                .to_vec(),
            ti.to_vec()
        );
    }
    // Wrong element type, truncated data, absurd shapes, bad magic: errors.
    assert!(matches!(
        Tensor::<f64>::from_npy_bytes(&bytes),
        Err(TensorError::Format { .. })
    ));
    assert!(Tensor::<f32>::from_npy_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(Tensor::<f32>::from_npy_bytes(b"\x93NUMPX\x01\x00\x00\x00").is_err());
    let huge = String::from_utf8_lossy(&bytes).replace("(4, 3, 2)", "(99999999999, 999999999999)");
    assert!(Tensor::<f32>::from_npy_bytes(huge.as_bytes()).is_err());
    let header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
    let mut f = b"\x93NUMPY\x01\x00".to_vec();
    f.extend_from_slice(&(header.len() as u16).to_le_bytes());
    f.extend_from_slice(header);
    f.extend_from_slice(&[0; 12]);
    assert_eq!(
        Tensor::<f32>::from_npy_bytes(&f).unwrap().to_vec(),
        [0.0; 3]
    );
    let mut long = f.clone();
    long[8] = 0xff; // header length past the end of the file
    assert!(Tensor::<f32>::from_npy_bytes(&long).is_err());
    // Fortran order: the data is column-major.
    let fh = b"{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }";
    let mut ff = b"\x93NUMPY\x01\x00".to_vec();
    ff.extend_from_slice(&(fh.len() as u16).to_le_bytes());
    ff.extend_from_slice(fh);
    for v in [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0] {
        ff.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(
        Tensor::<f64>::from_npy_bytes(&ff).unwrap().to_vec(),
        [1., 2., 3., 4., 5., 6.]
    );
    assert!(
        Tensor::<f32>::read_npy(dir.join("missing.npy"))
            .unwrap_err()
            .to_string()
            .contains("missing.npy")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `.npy` files exchanged with the real NumPy (installed by ci/setup.sh; required
/// when `CI` is set, skipped with a message otherwise).
#[test]
fn npy_interoperates_with_numpy() {
    let python = std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .output();
    if !python.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have numpy (ci/setup.sh installs it)"
        );
        eprintln!("numpy not installed: skipping the interoperability test");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bigdl-npy-numpy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = dir.join("ours.npy");
    let theirs = dir.join("theirs.npy");
    let t = Tensor::<f32>::arange(6)
        .unwrap()
        .view(&[2, 3])
        .unwrap()
        .t()
        .unwrap();
    t.write_npy(&ours).unwrap();
    let script = format!(
        "import numpy as np\n\
         a = np.load({ours:?})\n\
         assert a.dtype == np.float32 and a.shape == (3, 2), (a.dtype, a.shape)\n\
         assert (a == np.arange(6, dtype=np.float32).reshape(2, 3).T).all()\n\
         np.save({theirs:?}, np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4) * 0.5))\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = Tensor::<f64>::read_npy(&theirs).unwrap();
    assert_eq!(back.sizes(), &[3, 4]);
    assert_eq!(
        back.to_vec(),
        (0..12).map(|i| i as f64 * 0.5).collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn f32_kernel_paths_agree_with_the_generic_paths() {
    let x = Tensor::<f32>::from_vec((0..600).map(|i| i as f32 * 0.02 - 6.0).collect(), &[20, 30])
        .unwrap();
    let xt = x.t().unwrap(); // not contiguous: the generic path
    for (fast, slow) in [
        (x.exp(), xt.exp()),
        (x.tanh(), xt.tanh()),
        (x.sigmoid(), xt.sigmoid()),
        (x.relu(), xt.relu()),
    ] {
        let slow = slow.t().unwrap().to_vec();
        for (a, b) in fast.to_vec().iter().zip(&slow) {
            assert!(
                (a - b).abs() <= 4.0 * f32::EPSILON * b.abs().max(f32::MIN_POSITIVE),
                "{a} vs {b}"
            );
        }
    }
    let y = x.add_scalar(1.0);
    assert_eq!(
        x.cmul(&y).unwrap().to_vec(),
        xt.cmul(&y.t().unwrap()).unwrap().t().unwrap().to_vec()
    );
    let z = x.deep_clone();
    z.sub_(&y).unwrap();
    assert!(z.to_vec().iter().all(|&v| v == -1.0));
}

#[test]
fn concurrent_in_place_operations_do_not_deadlock() {
    let a = Tensor::<f32>::ones(&[256]).unwrap();
    let b = Tensor::<f32>::ones(&[256]).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (a, b) = (a.clone(), b.clone());
            s.spawn(move || {
                for _ in 0..2000 {
                    match t {
                        0 => a.add_(&b).unwrap(),
                        1 => b.add_(&a.mul_scalar(0.0)).unwrap(),
                        2 => drop(a.add(&b).unwrap()),
                        _ => b.mul_scalar_(1.0),
                    }
                }
            });
        }
    });
    assert_eq!(a.get(&[0]).unwrap(), 2001.0);
}

#[test]
fn binary_encoding_round_trips_bitwise_and_rejects_damage() {
    let odd = [
        f32::NAN,
        -0.0,
        f32::from_bits(0x7fc0_1234),
        f32::INFINITY,
        1e-45,
        3.5,
    ];
    let t = Tensor::<f32>::from_vec(odd.to_vec(), &[2, 3])
        .unwrap()
        .t()
        .unwrap();
    let mut buf = Vec::new();
    t.encode(&mut buf);
    Tensor::<i64>::arange(4).unwrap().encode(&mut buf);
    let (back, used) = Tensor::<f32>::decode(&buf).unwrap();
    assert_eq!(back.sizes(), &[3, 2]);
    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(back.to_vec()), bits(t.to_vec()));
    let (ints, used2) = Tensor::<i64>::decode(&buf[used..]).unwrap();
    assert_eq!((ints.to_vec(), used + used2), (vec![0, 1, 2, 3], buf.len()));
    // A flipped data bit, truncation, a wrong type, a future version, a huge shape.
    let mut flipped = buf.clone();
    flipped[used - 1] ^= 1;
    let e = Tensor::<f32>::decode(&flipped).unwrap_err().to_string();
    assert!(e.contains("checksum"), "{e}");
    assert!(Tensor::<f32>::decode(&buf[..used - 1]).is_err());
    assert!(Tensor::<f64>::decode(&buf).is_err());
    let mut v2 = buf.clone();
    v2[4] = 2;
    assert!(
        Tensor::<f32>::decode(&v2)
            .unwrap_err()
            .to_string()
            .contains("version 2")
    );
    let mut huge = buf.clone();
    huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Tensor::<f32>::decode(&huge).is_err());
    assert!(Tensor::<f32>::decode(b"BDLT").is_err());
}

/// Tensors over a memory-mapped file: read in place, copied on first write
/// (the file never changes), checked for bounds and alignment; the encoded
/// form decodes from a mapping with its checksum verified.
#[test]
fn mapped_tensors_read_in_place_and_copy_on_write() {
    use bigdl_tensor::Mapping;
    let dir = std::env::temp_dir().join(format!("bigdl-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.bin");
    let mut bytes = vec![0u8; 4];
    for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
        bytes.extend(v.to_le_bytes());
    }
    std::fs::write(&path, &bytes).unwrap();
    let map = Mapping::open(&path).unwrap();
    let t = Tensor::<f32>::from_mapping(map.clone(), 4, &[2, 3]).unwrap();
    assert!(t.is_mapped());
    assert_eq!(t.to_vec(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let row = t.select(0, 1).unwrap();
    assert_eq!(row.to_vec(), [4.0, 5.0, 6.0]);
    // A write copies first: every view sees it, the file does not.
    row.set(&[0], -4.0).unwrap();
    assert!(!t.is_mapped());
    assert_eq!(t.to_vec(), [1.0, 2.0, 3.0, -4.0, 5.0, 6.0]);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // Outside the file, misaligned: errors.
    assert!(Tensor::<f32>::from_mapping(map.clone(), 8, &[6]).is_err());
    assert!(Tensor::<f32>::from_mapping(map.clone(), 2, &[2]).is_err());
    assert!(Tensor::<f64>::from_mapping(map.clone(), 4, &[1]).is_err());
    // Encoded tensors: aligned data stays mapped, checksums are verified.
    let mut enc = Vec::new();
    let want = Tensor::from_vec(vec![0.5f32, -1.5, 2.5], &[3]).unwrap();
    want.encode(&mut enc);
    for lead in 0..4 {
        let mut file = vec![0u8; lead];
        file.extend(&enc);
        std::fs::write(&path, &file).unwrap();
        let map = Mapping::open(&path).unwrap();
        let (got, used) = Tensor::<f32>::decode_mapped(&map, lead).unwrap();
        assert_eq!((got.to_vec(), used), (want.to_vec(), enc.len()));
        // The data starts 20 bytes into the encoding.
        assert_eq!(got.is_mapped(), (lead + 20) % 4 == 0, "lead {lead}");
        *file.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &file).unwrap();
        let map = Mapping::open(&path).unwrap();
        assert!(Tensor::<f32>::decode_mapped(&map, lead).is_err());
        assert!(Tensor::<f32>::decode_mapped(&map, file.len() + 1).is_err());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Shared values: read in place; a write while others hold them copies
/// (they never see it), a write once no one else does takes them over.
#[test]
fn shared_tensors_copy_on_write_and_take_over() {
    use std::sync::Arc;
    let data = Arc::new(vec![1.0f32, 2.0, 3.0, 4.0]);
    let t = Tensor::from_shared(data.clone(), &[2, 2]).unwrap();
    assert_eq!(t.select(0, 1).unwrap().to_vec(), [3.0, 4.0]);
    t.select(0, 1).unwrap().set(&[0], -3.0).unwrap();
    assert_eq!(t.to_vec(), [1.0, 2.0, -3.0, 4.0]);
    assert_eq!(*data, [1.0, 2.0, 3.0, 4.0]);

    let at = data.as_ptr() as usize;
    let t = Tensor::from_shared(data, &[4]).unwrap();
    t.set(&[3], 8.0).unwrap();
    assert_eq!(t.to_vec(), [1.0, 2.0, 3.0, 8.0]);
    assert_eq!(t.as_slice().unwrap().as_ptr() as usize, at, "copied");

    assert!(Tensor::from_shared(Arc::new(vec![0.0f32; 3]), &[2, 2]).is_err());
}
