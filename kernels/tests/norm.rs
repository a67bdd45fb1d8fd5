//! Batch normalisation, LRN and dropout against f64 references and finite
//! differences.

mod common;

use bigdl_kernels::norm::{BatchNorm, Lrn, dropout_forward};
use common::Rng;

fn rand_vec(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.float() * scale).collect()
}

#[test]
fn batchnorm_train_infer_and_gradients() {
    let mut rng = Rng::from_env("batchnorm_train_infer_and_gradients");
    for (batch, channels, spatial) in [(4, 3, 5), (8, 2, 1), (1, 2, 9), (3, 2, 37), (2, 3, 64)] {
        let bn = BatchNorm {
            batch,
            channels,
            spatial,
            eps: 1e-5,
            momentum: 0.1,
        };
        let len = batch * channels * spatial;
        let x: Vec<f32> = (0..len).map(|_| rng.float() * 3.0 + 1.5).collect();
        let gamma = rand_vec(&mut rng, channels, 1.0);
        let beta = rand_vec(&mut rng, channels, 1.0);
        let (mut rm, mut rv) = (vec![0.5f32; channels], vec![2.0f32; channels]);
        let mut y = vec![f32::NAN; len];
        let saved = bn
            .forward_train(&x, Some(&gamma), Some(&beta), &mut y, &mut rm, &mut rv)
            .unwrap();
        let m = (batch * spatial) as f64;
        for c in 0..channels {
            let vals: Vec<f64> = (0..batch)
                .flat_map(|n| (0..spatial).map(move |p| (n, p)))
                .map(|(n, p)| x[(n * channels + c) * spatial + p] as f64)
                .collect();
            let mean = vals.iter().sum::<f64>() / m;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
            for n in 0..batch {
                for p in 0..spatial {
                    let i = (n * channels + c) * spatial + p;
                    let want = (x[i] as f64 - mean) / (var + 1e-5).sqrt() * gamma[c] as f64
                        + beta[c] as f64;
                    assert!((y[i] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "y");
                }
            }
            let unbiased = if m > 1.0 { var * m / (m - 1.0) } else { var };
            assert!((rm[c] as f64 - (0.9 * 0.5 + 0.1 * mean)).abs() < 1e-6);
            assert!((rv[c] as f64 - (0.9 * 2.0 + 0.1 * unbiased)).abs() < 1e-5);
        }
        // Inference with the running statistics.
        let mut yi = vec![f32::NAN; len];
        bn.forward_infer(&x, Some(&gamma), Some(&beta), &rm, &rv, &mut yi)
            .unwrap();
        let i = len / 2;
        let c = (i / spatial) % channels;
        let want = (x[i] - rm[c]) / (rv[c] + 1e-5).sqrt() * gamma[c] + beta[c];
        assert!((yi[i] - want).abs() < 1e-5 * (1.0 + want.abs()));
        // Gradients against central differences of L = sum(gy * y).
        let gy = rand_vec(&mut rng, len, 1.0);
        let loss = |x: &[f32], g: &[f32], b: &[f32]| {
            let (mut rm, mut rv, mut y) =
                (vec![0.0; channels], vec![1.0; channels], vec![0.0; len]);
            bn.forward_train(x, Some(g), Some(b), &mut y, &mut rm, &mut rv)
                .unwrap();
            y.iter()
                .zip(&gy)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
        };
        let mut gx = vec![f32::NAN; len];
        let (mut gg, mut gb) = (vec![0.0; channels], vec![0.0; channels]);
        bn.backward(
            &x,
            &gy,
            Some(&gamma),
            &saved,
            &mut gx,
            Some(&mut gg),
            Some(&mut gb),
        )
        .unwrap();
        // Against the f64 formula: dbeta = Σ gy, dgamma = Σ gy xhat,
        // gx = g invstd / m (m gy - dbeta - xhat dgamma).
        let m = (bn.batch * bn.spatial) as f64;
        for c in 0..channels {
            let idx: Vec<usize> = (0..bn.batch)
                .flat_map(|n| (0..bn.spatial).map(move |s| (n * channels + c) * bn.spatial + s))
                .collect();
            let mean = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / m;
            let var = idx
                .iter()
                .map(|&i| (x[i] as f64 - mean).powi(2))
                .sum::<f64>()
                / m;
            let inv = 1.0 / (var + 1e-5).sqrt();
            let db: f64 = idx.iter().map(|&i| gy[i] as f64).sum();
            let dg: f64 = idx
                .iter()
                .map(|&i| gy[i] as f64 * (x[i] as f64 - mean) * inv)
                .sum();
            let mag: f64 = idx.iter().map(|&i| gy[i].abs() as f64).sum();
            assert!((gb[c] as f64 - db).abs() <= 1e-5 * mag, "dbeta {c}");
            assert!((gg[c] as f64 - dg).abs() <= 1e-4 * mag, "dgamma {c}");
            for &i in &idx {
                let xhat = (x[i] as f64 - mean) * inv;
                let want = gamma[c] as f64 * inv / m * (m * gy[i] as f64 - db - xhat * dg);
                let tol = 1e-4 * gamma[c].abs() as f64 * inv * (gy[i].abs() as f64 + mag / m);
                assert!(
                    (gx[i] as f64 - want).abs() <= tol,
                    "dx[{i}] {} vs {want}",
                    gx[i]
                );
            }
        }
        let eps = 1e-2f32;
        for i in 0..len.min(12) {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += eps;
            xm[i] -= eps;
            let fd = (loss(&xp, &gamma, &beta) - loss(&xm, &gamma, &beta)) / (2.0 * eps as f64);
            assert!(
                (fd - gx[i] as f64).abs() < 2e-2 * (1.0 + fd.abs()),
                "dx[{i}] {fd} vs {}",
                gx[i]
            );
        }
        for c in 0..channels {
            let (mut gp, mut gm) = (gamma.clone(), gamma.clone());
            gp[c] += eps;
            gm[c] -= eps;
            let fd = (loss(&x, &gp, &beta) - loss(&x, &gm, &beta)) / (2.0 * eps as f64);
            assert!(
                (fd - gg[c] as f64).abs() < 1e-2 * (1.0 + fd.abs()),
                "dgamma"
            );
            let (mut bp, mut bm) = (beta.clone(), beta.clone());
            bp[c] += eps;
            bm[c] -= eps;
            let fd = (loss(&x, &gamma, &bp) - loss(&x, &gamma, &bm)) / (2.0 * eps as f64);
            assert!((fd - gb[c] as f64).abs() < 1e-2 * (1.0 + fd.abs()), "dbeta");
        }
    }
    let bn = BatchNorm {
        batch: 2,
        channels: 2,
        spatial: 2,
        eps: 1e-5,
        momentum: 0.1,
    };
    let mut y = vec![0.0; 8];
    assert!(
        bn.forward_train(&[0.0; 7], None, None, &mut y, &mut [0.0; 2], &mut [1.0; 2])
            .is_err()
    );
    assert!(
        bn.forward_train(
            &[0.0; 8],
            Some(&[1.0; 3]),
            None,
            &mut y,
            &mut [0.0; 2],
            &mut [1.0; 2]
        )
        .is_err()
    );
}

#[test]
fn lrn_forward_and_gradient() {
    let mut rng = Rng::from_env("lrn_forward_and_gradient");
    // (batch, channels, spatial): a tiny case, vector bodies with tails, and one
    // large enough (>= 65536 elements) to run in parallel over images.
    for (nb, ch, sp) in [(2, 6, 4), (3, 7, 37), (4, 16, 1031)] {
        for size in [1, 3, 4, 5] {
            let lrn = Lrn {
                batch: nb,
                channels: ch,
                spatial: sp,
                size,
                alpha: 1e-1,
                beta: 0.75,
                k: 2.0,
            };
            let len = nb * ch * sp;
            let x = rand_vec(&mut rng, len, 2.0);
            let (mut y, mut scale) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            lrn.forward(&x, &mut y, &mut scale).unwrap();
            for n in 0..nb {
                for c in 0..ch {
                    for p in 0..sp {
                        let lo = c.saturating_sub((size - 1) / 2);
                        let hi = (c + size / 2 + 1).min(ch);
                        let sq: f64 = (lo..hi)
                            .map(|cc| (x[(n * ch + cc) * sp + p] as f64).powi(2))
                            .sum();
                        let i = (n * ch + c) * sp + p;
                        let want = x[i] as f64 / (2.0 + 0.1 / size as f64 * sq).powf(0.75);
                        assert!(
                            (y[i] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                            "lrn {nb}x{ch}x{sp} size {size} y[{i}]: {} vs {want}",
                            y[i]
                        );
                    }
                }
            }
            let gy = rand_vec(&mut rng, len, 1.0);
            let mut gx = vec![f32::NAN; len];
            lrn.backward(&x, &y, &scale, &gy, &mut gx).unwrap();
            let loss = |x: &[f32]| {
                let (mut y, mut s) = (vec![0.0; len], vec![0.0; len]);
                lrn.forward(x, &mut y, &mut s).unwrap();
                y.iter()
                    .zip(&gy)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
            };
            // Every element of the small cases, about 40 of the large one.
            for i in (0..len).step_by((len / 40).max(1)) {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += 1e-2;
                xm[i] -= 1e-2;
                let fd = (loss(&xp) - loss(&xm)) / 2e-2;
                assert!(
                    (fd - gx[i] as f64).abs() < 1e-2 * (1.0 + fd.abs()),
                    "lrn {nb}x{ch}x{sp} size {size} dx[{i}]: {fd} vs {}",
                    gx[i]
                );
            }
        }
    }
}

#[test]
fn lrn_rejects_an_empty_window() {
    let lrn = Lrn {
        batch: 1,
        channels: 2,
        spatial: 1,
        size: 0,
        alpha: 1e-4,
        beta: 0.75,
        k: 2.0,
    };
    let (mut y, mut s, mut gx) = ([0.0f32; 2], [0.0f32; 2], [0.0f32; 2]);
    assert!(lrn.forward(&[1.0; 2], &mut y, &mut s).is_err());
    assert!(
        lrn.backward(&[1.0; 2], &[1.0; 2], &[2.0; 2], &[1.0; 2], &mut gx)
            .is_err()
    );
}

#[test]
fn dropout_is_seeded_unbiased_and_its_mask_is_the_gradient() {
    let n = 100_000;
    let x = vec![1.0f32; n];
    let (mut y, mut mask) = (vec![0.0; n], vec![0.0; n]);
    dropout_forward(&x, &mut y, &mut mask, 0.3, 7, 0).unwrap();
    let kept = mask.iter().filter(|&&m| m > 0.0).count() as f64 / n as f64;
    assert!((kept - 0.7).abs() < 0.01, "{kept}");
    let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    assert!((mean - 1.0).abs() < 0.02, "{mean}");
    // Same seed and offset: same mask; a chunk at an offset reproduces the tail.
    let (mut y2, mut m2) = (vec![0.0; n], vec![0.0; n]);
    dropout_forward(&x, &mut y2, &mut m2, 0.3, 7, 0).unwrap();
    assert_eq!(mask, m2);
    let (mut y3, mut m3) = (vec![0.0; 10], vec![0.0; 10]);
    dropout_forward(&x[..10], &mut y3, &mut m3, 0.3, 7, 500).unwrap();
    assert_eq!(&m3[..], &mask[500..510]);
    assert!(dropout_forward(&x, &mut y, &mut mask, 1.0, 7, 0).is_err());
    assert!(dropout_forward(&x[..5], &mut y, &mut mask, 0.5, 7, 0).is_err());
}

/// Large inputs split channels and runs over the pool; inside a worker the same
/// call runs sequentially. Both must agree bit for bit.
#[test]
fn batchnorm_parallel_matches_sequential() {
    use bigdl_kernels::pool;
    let bn = BatchNorm {
        batch: 8,
        channels: 16,
        spatial: 1024,
        eps: 1e-5,
        momentum: 0.1,
    };
    let len = 8 * 16 * 1024;
    let x: Vec<f32> = (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 * 0.003 - 1.0)
        .collect();
    let gy: Vec<f32> = (0..len).map(|i| ((i * 31) % 17) as f32 * 0.1).collect();
    let g: Vec<f32> = (0..16).map(|c| 0.5 + c as f32 * 0.1).collect();
    let run = || {
        let (mut rm, mut rv, mut y, mut gx) =
            (vec![0.0; 16], vec![1.0; 16], vec![0.0; len], vec![0.0; len]);
        let (mut gg, mut gb) = (vec![0.0; 16], vec![0.0; 16]);
        let saved = bn
            .forward_train(&x, Some(&g), None, &mut y, &mut rm, &mut rv)
            .unwrap();
        bn.backward(
            &x,
            &gy,
            Some(&g),
            &saved,
            &mut gx,
            Some(&mut gg),
            Some(&mut gb),
        )
        .unwrap();
        (y, gx, gg, gb, rm, rv)
    };
    assert!(run() == pool::pool().install(run));
}
