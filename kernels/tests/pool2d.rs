//! Pooling against naive f64 references, Caffe/Torch output sizes, gradients by
//! finite differences (max) and the adjoint identity (average).

mod common;

use bigdl_kernels::pool2d::{Pool2d, PoolPlan};
use common::Rng;

/// Window (rows, cols) of output (oh, ow), written independently of the kernel:
/// every padded position, then keep those inside the image.
fn window(p: &PoolPlan, oh: usize, ow: usize) -> (Vec<(usize, usize)>, usize) {
    let g = &p.pool;
    let mut inside = Vec::new();
    let mut padded = 0;
    for kh in 0..g.kernel_h {
        for kw in 0..g.kernel_w {
            let ih = (oh * g.stride_h + kh) as isize - g.pad_h as isize;
            let iw = (ow * g.stride_w + kw) as isize - g.pad_w as isize;
            if ih < (g.in_h + g.pad_h) as isize && iw < (g.in_w + g.pad_w) as isize {
                padded += 1;
            }
            if ih >= 0 && iw >= 0 && (ih as usize) < g.in_h && (iw as usize) < g.in_w {
                inside.push((ih as usize, iw as usize));
            }
        }
    }
    (inside, padded)
}

fn random_pool(rng: &mut Rng) -> Pool2d {
    let k = rng.range(1, 4);
    Pool2d {
        batch: rng.range(1, 2),
        channels: rng.range(1, 3),
        in_h: rng.range(1, 12),
        in_w: rng.range(1, 12),
        kernel_h: k,
        kernel_w: rng.range(1, 4),
        stride_h: rng.range(1, 4),
        stride_w: rng.range(1, 3),
        pad_h: rng.range(0, k - 1),
        pad_w: rng.range(0, 1),
        ceil_mode: rng.range(0, 1) == 1,
        count_include_pad: rng.range(0, 1) == 1,
    }
}

#[test]
fn forward_and_backward_match_references() {
    let mut rng = Rng::from_env("forward_and_backward_match_references");
    let mut tested = 0;
    while tested < 300 {
        let pool = random_pool(&mut rng);
        let Ok(p) = pool.plan() else { continue };
        tested += 1;
        let (hw, ohw) = (pool.in_h * pool.in_w, p.out_h * p.out_w);
        let x: Vec<f32> = (0..p.input_len()).map(|_| rng.float()).collect();
        let gy: Vec<f32> = (0..p.output_len()).map(|_| rng.float()).collect();
        let (mut ymax, mut idx, mut yavg) = (
            vec![f32::NAN; p.output_len()],
            vec![u32::MAX; p.output_len()],
            vec![f32::NAN; p.output_len()],
        );
        p.max_forward(&x, &mut ymax, &mut idx).unwrap();
        p.avg_forward(&x, &mut yavg).unwrap();
        let (mut gmax, mut gavg) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
        p.max_backward(&gy, &idx, &mut gmax).unwrap();
        p.avg_backward(&gy, &mut gavg).unwrap();
        let (mut gmax_want, mut gavg_want) = (vec![0.0f64; x.len()], vec![0.0f64; x.len()]);
        for plane in 0..pool.batch * pool.channels {
            for oh in 0..p.out_h {
                for ow in 0..p.out_w {
                    let o = plane * ohw + oh * p.out_w + ow;
                    let (cells, padded) = window(&p, oh, ow);
                    assert!(!cells.is_empty(), "{pool:?}: empty window at {oh},{ow}");
                    let vals: Vec<f64> = cells
                        .iter()
                        .map(|&(h, w)| x[plane * hw + h * pool.in_w + w] as f64)
                        .collect();
                    let (bi, bv) = vals
                        .iter()
                        .enumerate()
                        .fold((0, f64::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
                    assert_eq!(ymax[o] as f64, bv, "{pool:?} max");
                    let (bh, bw) = cells[bi];
                    assert_eq!(idx[o] as usize, bh * pool.in_w + bw, "{pool:?} argmax");
                    gmax_want[plane * hw + bh * pool.in_w + bw] += gy[o] as f64;
                    let div = if pool.count_include_pad {
                        padded
                    } else {
                        cells.len()
                    } as f64;
                    let avg = vals.iter().sum::<f64>() / div;
                    assert!(
                        (yavg[o] as f64 - avg).abs() <= 1e-6 * (1.0 + avg.abs()),
                        "{pool:?} avg"
                    );
                    for &(h, w) in &cells {
                        gavg_want[plane * hw + h * pool.in_w + w] += gy[o] as f64 / div;
                    }
                }
            }
        }
        for i in 0..x.len() {
            assert!(
                (gmax[i] as f64 - gmax_want[i]).abs() <= 1e-5 * (1.0 + gmax_want[i].abs()),
                "{pool:?} max grad"
            );
            assert!(
                (gavg[i] as f64 - gavg_want[i]).abs() <= 1e-5 * (1.0 + gavg_want[i].abs()),
                "{pool:?} avg grad"
            );
        }
    }
}

/// Max pooling on rows wide enough for whole vectors and their tails, with
/// ties (small integers) and NaNs: the value and argmax of a scan of each
/// window in row-major order, where the first maximum wins ties and the
/// first NaN wins over everything.
#[test]
fn max_ties_and_nans_follow_scan_order() {
    let mut rng = Rng::from_env("max_ties_and_nans_follow_scan_order");
    let mut tested = 0;
    while tested < 200 {
        let pool = Pool2d {
            in_w: rng.range(1, 70),
            ..random_pool(&mut rng)
        };
        let Ok(p) = pool.plan() else { continue };
        tested += 1;
        let nan_rate = rng.range(0, 2) * 16;
        let x: Vec<f32> = (0..p.input_len())
            .map(|_| {
                if nan_rate > 0 && rng.range(0, nan_rate) == 0 {
                    f32::NAN
                } else {
                    rng.small_int()
                }
            })
            .collect();
        let (mut y, mut idx) = (vec![0.5; p.output_len()], vec![u32::MAX; p.output_len()]);
        p.max_forward(&x, &mut y, &mut idx).unwrap();
        // The inference path: the same values (NaN where NaN), every one written.
        let mut values = vec![0.5; p.output_len()];
        p.max_values(&x, &mut values).unwrap();
        for (o, (&v, &want)) in values.iter().zip(&y).enumerate() {
            assert!(
                v == want || (v.is_nan() && want.is_nan()),
                "{pool:?} max_values at {o}: {v} vs {want}"
            );
        }
        let hw = pool.in_h * pool.in_w;
        for plane in 0..pool.batch * pool.channels {
            for oh in 0..p.out_h {
                for ow in 0..p.out_w {
                    let o = plane * p.out_h * p.out_w + oh * p.out_w + ow;
                    let (cells, _) = window(&p, oh, ow);
                    let mut best = (f32::NEG_INFINITY, cells[0]);
                    for &(h, w) in &cells {
                        let v = x[plane * hw + h * pool.in_w + w];
                        if v.is_nan() {
                            best = (v, (h, w));
                            break;
                        }
                        if v > best.0 {
                            best = (v, (h, w));
                        }
                    }
                    let at = best.1.0 * pool.in_w + best.1.1;
                    assert!(
                        y[o].to_bits() == best.0.to_bits() || (y[o].is_nan() && best.0.is_nan()),
                        "{pool:?} at {oh},{ow}: {} vs {}",
                        y[o],
                        best.0
                    );
                    assert_eq!(idx[o] as usize, at, "{pool:?} argmax at {oh},{ow}");
                }
            }
        }
    }
}

#[test]
fn finite_difference_gradients() {
    let mut rng = Rng::from_env("pool finite_difference_gradients");
    for pool in [
        Pool2d {
            ceil_mode: true,
            ..Pool2d::new(2, 2, (7, 7), 3, 2, 1)
        },
        Pool2d {
            count_include_pad: false,
            ..Pool2d::new(1, 3, (6, 5), 2, 2, 1)
        },
        Pool2d::global(2, 2, (4, 3)),
    ] {
        let p = pool.plan().unwrap();
        // Distinct values, so the max has no ties within a window.
        let x: Vec<f32> = (0..p.input_len())
            .map(|i| i as f32 * 0.01 + rng.float() * 1e-3)
            .collect();
        let gy: Vec<f32> = (0..p.output_len()).map(|_| rng.float()).collect();
        let loss = |x: &[f32], max: bool| {
            let mut y = vec![0.0; p.output_len()];
            let mut idx = vec![0; p.output_len()];
            if max {
                p.max_forward(x, &mut y, &mut idx).unwrap()
            } else {
                p.avg_forward(x, &mut y).unwrap()
            }
            y.iter()
                .zip(&gy)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
        };
        let (mut y, mut idx) = (vec![0.0; p.output_len()], vec![0; p.output_len()]);
        p.max_forward(&x, &mut y, &mut idx).unwrap();
        let (mut gmax, mut gavg) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        p.max_backward(&gy, &idx, &mut gmax).unwrap();
        p.avg_backward(&gy, &mut gavg).unwrap();
        let eps = 1e-4f32;
        for i in 0..x.len() {
            for (max, g) in [(true, &gmax), (false, &gavg)] {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += eps;
                xm[i] -= eps;
                let fd = (loss(&xp, max) - loss(&xm, max)) / (2.0 * eps as f64);
                assert!(
                    (fd - g[i] as f64).abs() <= 2e-2 * (1.0 + fd.abs()),
                    "{pool:?} max={max} [{i}]: {fd} vs {}",
                    g[i]
                );
            }
        }
    }
}

#[test]
fn output_sizes_nan_and_errors() {
    let size = |p: Pool2d| p.plan().map(|q| (q.out_h, q.out_w)).ok();
    // Caffe/BigDL ceil mode: GoogLeNet and ResNet pool1, 3x3 s2 on 112.
    assert_eq!(
        size(Pool2d {
            ceil_mode: true,
            ..Pool2d::new(1, 1, (112, 112), 3, 2, 0)
        }),
        Some((56, 56))
    );
    assert_eq!(size(Pool2d::new(1, 1, (112, 112), 3, 2, 0)), Some((55, 55)));
    // Torch: 3x3 s2 p1 on 112 gives 56 in floor mode, 57 in ceil mode (the
    // last window starts at row 111, inside the image).
    assert_eq!(size(Pool2d::new(1, 1, (112, 112), 3, 2, 1)), Some((56, 56)));
    assert_eq!(
        size(Pool2d {
            ceil_mode: true,
            ..Pool2d::new(1, 1, (112, 112), 3, 2, 1)
        }),
        Some((57, 57))
    );
    // The last window must start inside the image: 2x2 s2 p1 ceil on 4.
    assert_eq!(
        size(Pool2d {
            ceil_mode: true,
            ..Pool2d::new(1, 1, (4, 4), 2, 2, 1)
        }),
        Some((3, 3))
    );
    assert_eq!(size(Pool2d::global(1, 1, (7, 7))), Some((1, 1)));
    // Padding as large as the window, zero stride, window larger than the input.
    assert!(Pool2d::new(1, 1, (8, 8), 2, 2, 2).plan().is_err());
    assert!(Pool2d::new(1, 1, (8, 8), 2, 0, 0).plan().is_err());
    assert!(Pool2d::new(1, 1, (2, 2), 3, 1, 0).plan().is_err());
    assert!(
        Pool2d::new(
            usize::MAX,
            9,
            (usize::MAX, 3),
            usize::MAX,
            usize::MAX,
            usize::MAX - 1
        )
        .plan()
        .is_err()
    );
    assert!(
        Pool2d::new(usize::MAX, usize::MAX, (8, 8), 2, 2, 0)
            .plan()
            .is_err()
    );
    // NaN wins a max window; bad indices and sizes are errors.
    let p = Pool2d::new(1, 1, (2, 2), 2, 2, 0).plan().unwrap();
    let (mut y, mut idx) = ([0.0f32], [0u32]);
    p.max_forward(&[1.0, f32::NAN, 3.0, 2.0], &mut y, &mut idx)
        .unwrap();
    assert!(y[0].is_nan() && idx[0] == 1);
    let mut gx = [0.0f32; 4];
    assert!(p.max_backward(&[1.0], &[7], &mut gx).is_err());
    assert!(p.max_forward(&[0.0; 3], &mut y, &mut idx).is_err());
    assert!(p.max_values(&[0.0; 3], &mut y).is_err());
    assert!(p.max_values(&[0.0; 4], &mut []).is_err());
}

/// Large inputs split planes over the pool; inside a worker the same call runs
/// sequentially. Both must give bit-identical results.
#[test]
fn parallel_planes_match_sequential() {
    use bigdl_kernels::pool;
    let p = Pool2d {
        ceil_mode: true,
        ..Pool2d::new(4, 16, (64, 63), 3, 2, 1)
    }
    .plan()
    .unwrap();
    assert!(p.output_len() >= 1 << 15);
    let x: Vec<f32> = (0..p.input_len())
        .map(|i| ((i * 7919) % 1000) as f32 * 0.01)
        .collect();
    let gy: Vec<f32> = (0..p.output_len()).map(|i| (i % 13) as f32).collect();
    let run = || {
        let (mut y, mut idx, mut ya) = (
            vec![0.0; p.output_len()],
            vec![0; p.output_len()],
            vec![0.0; p.output_len()],
        );
        let (mut gx, mut gxa) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        p.max_forward(&x, &mut y, &mut idx).unwrap();
        p.max_backward(&gy, &idx, &mut gx).unwrap();
        p.avg_forward(&x, &mut ya).unwrap();
        p.avg_backward(&gy, &mut gxa).unwrap();
        let mut values = vec![f32::NAN; p.output_len()];
        p.max_values(&x, &mut values).unwrap();
        assert!(values == y);
        (y, idx, ya, gx, gxa)
    };
    let par = run();
    let seq = pool::pool().install(run);
    assert!(par == seq);
}
