//! Convolution against naive f64 references (forward, grad-input, grad-weight,
//! grad-bias) on random geometries, plus finite-difference checks of the
//! backward passes and NaN-poisoned outputs.

mod common;

use bigdl_kernels::KernelError;
use bigdl_kernels::conv::{Conv2d, ConvAlgo, ConvPlan, Tail};
use bigdl_kernels::pool;
use common::Rng;

fn random_conv(rng: &mut Rng) -> Conv2d {
    let groups = [1, 1, 2, 3][rng.range(0, 3)];
    let k = rng.range(1, 4);
    let mut c = Conv2d {
        batch: rng.range(1, 3),
        in_channels: groups * rng.range(1, 3),
        in_h: rng.range(1, 11),
        in_w: rng.range(1, 11),
        out_channels: groups * rng.range(1, 3),
        kernel_h: k,
        kernel_w: rng.range(1, 4),
        stride_h: rng.range(1, 3),
        stride_w: rng.range(1, 4),
        pad_top: rng.range(0, 4),
        pad_bottom: rng.range(0, 2),
        pad_left: rng.range(0, 5),
        pad_right: rng.range(0, 2),
        dilation_h: rng.range(1, 2),
        dilation_w: rng.range(1, 3),
        groups,
    };
    if rng.range(0, 2) == 0 {
        // Stride 1 with the output as wide as the input: im2col's one-copy path.
        c.stride_h = 1;
        c.stride_w = 1;
        let span = c.dilation_w * (c.kernel_w - 1);
        c.pad_left = rng.range(0, span);
        c.pad_right = span - c.pad_left;
    }
    c
}

/// Calls `f(n, oc, oh, ow, ci, kh, kw, ih, iw)` for every multiply of the
/// convolution (the naive loop nest every reference is built from).
fn for_each_tap(p: &ConvPlan, mut f: impl FnMut([usize; 9])) {
    let c = &p.conv;
    let (cg, ocg) = (c.in_channels / c.groups, c.out_channels / c.groups);
    for n in 0..c.batch {
        for oc in 0..c.out_channels {
            let g = oc / ocg;
            for oh in 0..p.out_h {
                for ow in 0..p.out_w {
                    for ci in 0..cg {
                        for kh in 0..c.kernel_h {
                            for kw in 0..c.kernel_w {
                                let ih = (oh * c.stride_h + kh * c.dilation_h) as isize
                                    - c.pad_top as isize;
                                let iw = (ow * c.stride_w + kw * c.dilation_w) as isize
                                    - c.pad_left as isize;
                                if ih >= 0
                                    && iw >= 0
                                    && (ih as usize) < c.in_h
                                    && (iw as usize) < c.in_w
                                {
                                    f([
                                        n,
                                        oc,
                                        oh,
                                        ow,
                                        g * cg + ci,
                                        kh,
                                        kw,
                                        ih as usize,
                                        iw as usize,
                                    ]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

struct Idx<'a>(&'a ConvPlan);
impl Idx<'_> {
    fn x(&self, n: usize, ch: usize, h: usize, w: usize) -> usize {
        let c = &self.0.conv;
        ((n * c.in_channels + ch) * c.in_h + h) * c.in_w + w
    }
    fn y(&self, n: usize, oc: usize, h: usize, w: usize) -> usize {
        ((n * self.0.conv.out_channels + oc) * self.0.out_h + h) * self.0.out_w + w
    }
    fn w(&self, oc: usize, ci_global: usize, kh: usize, kw: usize) -> usize {
        let c = &self.0.conv;
        let cg = c.in_channels / c.groups;
        ((oc * cg + ci_global % cg) * c.kernel_h + kh) * c.kernel_w + kw
    }
}

/// The im2col and direct paths' error bound, relative to the sum of the
/// absolute products.
const IM2COL_REL: f64 = 64.0 * f32::EPSILON as f64;
/// Winograd F(4x4, 3x3)'s bound: its transforms' constants cost precision.
const WINOGRAD_REL: f64 = 5e-5;

fn close(got: f32, want: f64, mag: f64, rel: f64, what: &str) {
    let tol = rel * mag + 1e-30;
    assert!(
        (got as f64 - want).abs() <= tol,
        "{what}: {got} vs {want} (tol {tol})"
    );
}

#[test]
fn forward_and_backward_match_naive_references() {
    let mut rng = Rng::from_env("forward_and_backward_match_naive_references");
    let mut tested = 0;
    while tested < 150 {
        let conv = random_conv(&mut rng);
        let Ok(p) = conv.plan() else { continue };
        tested += 1;
        let rel = if p.algo == ConvAlgo::Winograd {
            WINOGRAD_REL
        } else {
            IM2COL_REL
        };
        check_against_reference(&p, &mut rng, rel);
    }
    // Column matrices larger than a chunk: unfolded a few output rows at a
    // time when images run in parallel (a 7x7 stride-2 stem, and a strided
    // 3x3 with groups); one image with 512 output columns or more runs as
    // bands of output rows on the pool's threads (bands and chunks that do
    // not divide the rows, groups, an unpadded 5x5).
    for conv in [
        Conv2d::new(2, 3, (70, 69), 4, 7, 2, 3),
        Conv2d {
            groups: 2,
            ..Conv2d::new(2, 64, (81, 80), 6, 3, 2, 1)
        },
        Conv2d::new(1, 3, (70, 69), 4, 7, 2, 3),
        Conv2d {
            groups: 2,
            ..Conv2d::new(1, 64, (81, 80), 6, 3, 2, 1)
        },
        Conv2d::new(1, 5, (67, 40), 3, 5, 1, 0),
    ] {
        let p = conv.plan().unwrap();
        check_against_reference(&p, &mut rng, IM2COL_REL);
    }
}

/// Winograd, forced, on random eligible geometries: odd sizes, planes smaller
/// than a tile, every padding from 0 to 2, channel counts off the kernel's
/// block of 8, and batches whose tiles span blocks.
#[test]
fn winograd_matches_naive_references() {
    let mut rng = Rng::from_env("winograd_matches_naive_references");
    let mut tested = 0;
    while tested < 80 {
        // 3x3 (F(4x4, 3x3)) and 5x5 (F(2x2, 5x5)) kernels.
        let k = [3, 5][tested % 2];
        let mut conv = Conv2d::new(
            rng.range(1, 3),
            rng.range(1, 19),
            (rng.range(1, 18), rng.range(1, 18)),
            rng.range(1, 19),
            k,
            1,
            0,
        );
        conv.pad_top = rng.range(0, k - 1);
        conv.pad_bottom = rng.range(0, k - 1);
        conv.pad_left = rng.range(0, k - 1);
        conv.pad_right = rng.range(0, k - 1);
        let Ok(p) = conv.plan() else { continue };
        tested += 1;
        let p = p.with_algo(ConvAlgo::Winograd).unwrap();
        check_against_reference(&p, &mut rng, WINOGRAD_REL);
    }
    // An empty batch: on Winograd, and on the plan's own choice for a
    // layer with few channels (direct passes and shifted weight gradients
    // on AVX-512).
    for (conv, winograd) in [
        (Conv2d::new(0, 9, (8, 8), 11, 3, 1, 1), true),
        (Conv2d::new(0, 3, (12, 12), 6, 5, 1, 1), false),
    ] {
        let mut p = conv.plan().unwrap();
        if winograd {
            p = p.with_algo(ConvAlgo::Winograd).unwrap();
        }
        let mut s = vec![0.0; p.scratch_len()];
        p.forward(&[], &vec![0.0; p.weight_len()], None, &mut [], &mut s)
            .unwrap();
        p.backward_data(&[], &vec![0.0; p.weight_len()], &mut [], &mut s)
            .unwrap();
        let mut gw = vec![1.0; p.weight_len()];
        p.backward_weights(&[], &[], &mut gw, None, &mut s, false)
            .unwrap();
        assert!(gw.iter().all(|&v| v == 0.0));
    }
    // The plan's own choice for 48 tiles: Winograd forward and
    // backward-data, im2col weight gradients (too few tiles per thread; on
    // AVX-512 the shifted weight gradient). And LeNet-5's conv2 (6 -> 12
    // channels, 5x5): Winograd forward only, and on AVX-512 no Winograd
    // pass (direct forward and backward-data, shifted weight gradient).
    for conv in [
        Conv2d::new(3, 9, (16, 16), 11, 3, 1, 1),
        Conv2d::new(16, 6, (12, 12), 12, 5, 1, 0),
    ] {
        let p = conv.plan().unwrap();
        if bigdl_kernels::cpu::isa() >= bigdl_kernels::cpu::Isa::Avx2 {
            assert_eq!(p.algo, ConvAlgo::Winograd);
        }
        check_against_reference(&p, &mut rng, WINOGRAD_REL);
    }
    // Many tiles: several blocks per thread.
    for k in [3, 5] {
        let p = Conv2d::new(3, 9, (37, 45), 11, k, 1, k / 2).plan().unwrap();
        let p = p.with_algo(ConvAlgo::Winograd).unwrap();
        check_against_reference(&p, &mut rng, WINOGRAD_REL);
    }
}

/// Forward, backward-data and backward-weights (overwrite, then accumulate)
/// of `p` against f64 references, every output NaN-poisoned first.
///
/// Winograd's rounding errors spread over every element one transform
/// mixes, so its bound is relative to the largest magnitude in the element's
/// plane (forward, backward-data) or kernel (weight gradient); im2col's is
/// per element.
fn check_against_reference(p: &ConvPlan, rng: &mut Rng, rel: f64) {
    let conv = p.conv;
    let close = |got, want, mag, what: &str| close(got, want, mag, rel, what);
    let winograd = p.algo == ConvAlgo::Winograd;
    let scope = |mag: Vec<f64>, group: usize| -> Vec<f64> {
        if !winograd {
            return mag;
        }
        mag.chunks(group)
            .flat_map(|g| {
                let m = g.iter().fold(0.0f64, |a, &b| a.max(b));
                std::iter::repeat_n(m, g.len())
            })
            .collect()
    };
    {
        let ix = Idx(p);
        let x: Vec<f32> = (0..p.input_len()).map(|_| rng.float()).collect();
        let w: Vec<f32> = (0..p.weight_len()).map(|_| rng.float()).collect();
        let b: Vec<f32> = (0..conv.out_channels).map(|_| rng.float()).collect();
        let gy: Vec<f32> = (0..p.output_len()).map(|_| rng.float()).collect();
        let mut scratch = vec![f32::NAN; p.scratch_len()];
        // Forward, NaN-poisoned output.
        let mut y = vec![f32::NAN; p.output_len()];
        p.forward(&x, &w, Some(&b), &mut y, &mut scratch).unwrap();
        let (mut want, mut mag) = (vec![0.0f64; y.len()], vec![0.0f64; y.len()]);
        for n in 0..conv.batch {
            for oc in 0..conv.out_channels {
                for oh in 0..p.out_h {
                    for ow in 0..p.out_w {
                        want[ix.y(n, oc, oh, ow)] = b[oc] as f64;
                        mag[ix.y(n, oc, oh, ow)] = b[oc].abs() as f64;
                    }
                }
            }
        }
        let (mut gx_want, mut gx_mag) = (vec![0.0f64; x.len()], vec![0.0f64; x.len()]);
        let (mut gw_want, mut gw_mag) = (vec![0.0f64; w.len()], vec![0.0f64; w.len()]);
        for_each_tap(p, |[n, oc, oh, ow, ci, kh, kw, ih, iw]| {
            let (xi, yi, wi) = (
                ix.x(n, ci, ih, iw),
                ix.y(n, oc, oh, ow),
                ix.w(oc, ci, kh, kw),
            );
            want[yi] += x[xi] as f64 * w[wi] as f64;
            mag[yi] += (x[xi] as f64 * w[wi] as f64).abs();
            gx_want[xi] += gy[yi] as f64 * w[wi] as f64;
            gx_mag[xi] += (gy[yi] as f64 * w[wi] as f64).abs();
            gw_want[wi] += gy[yi] as f64 * x[xi] as f64;
            gw_mag[wi] += (gy[yi] as f64 * x[xi] as f64).abs();
        });
        let mag = scope(mag, p.out_h * p.out_w);
        let gx_mag = scope(gx_mag, conv.in_h * conv.in_w);
        let gw_mag = scope(gw_mag, conv.kernel_h * conv.kernel_w);
        for i in 0..y.len() {
            close(y[i], want[i], mag[i], &format!("forward {conv:?} [{i}]"));
        }
        // Backward data, NaN-poisoned.
        let mut gx = vec![f32::NAN; x.len()];
        p.backward_data(&gy, &w, &mut gx, &mut scratch).unwrap();
        for i in 0..gx.len() {
            close(
                gx[i],
                gx_want[i],
                gx_mag[i],
                &format!("grad input {conv:?} [{i}]"),
            );
        }
        // Backward weights: overwrite, then accumulate twice.
        let mut gw = vec![f32::NAN; w.len()];
        let mut gb = vec![f32::NAN; conv.out_channels];
        p.backward_weights(&x, &gy, &mut gw, Some(&mut gb), &mut scratch, false)
            .unwrap();
        for i in 0..gw.len() {
            close(
                gw[i],
                gw_want[i],
                gw_mag[i],
                &format!("grad weight {conv:?} [{i}]"),
            );
        }
        p.backward_weights(&x, &gy, &mut gw, Some(&mut gb), &mut scratch, true)
            .unwrap();
        for i in 0..gw.len() {
            close(
                gw[i],
                2.0 * gw_want[i],
                2.0 * gw_mag[i],
                &format!("accumulated grad weight [{i}]"),
            );
        }
        for (oc, &g) in gb.iter().enumerate() {
            let mut s = 0.0f64;
            for n in 0..conv.batch {
                for oh in 0..p.out_h {
                    for ow in 0..p.out_w {
                        s += gy[ix.y(n, oc, oh, ow)] as f64;
                    }
                }
            }
            assert!(
                (g as f64 - 2.0 * s).abs() <= 1e-4 * (1.0 + s.abs()),
                "grad bias {oc}"
            );
        }
    }
}

/// Central finite differences of L = sum(gy * conv(x, w)) against the analytic
/// gradients, at a few random coordinates, in f64 arithmetic over f32 outputs.
#[test]
fn finite_difference_gradients() {
    let mut rng = Rng::from_env("finite_difference_gradients");
    for conv in [
        Conv2d::new(2, 3, (7, 6), 4, 3, 2, 1),
        Conv2d {
            groups: 3,
            out_channels: 3,
            ..Conv2d::new(1, 3, (5, 5), 3, 3, 1, 2)
        },
        Conv2d::new(2, 4, (3, 3), 2, 1, 1, 0), // direct 1x1
    ] {
        let p = conv.plan().unwrap();
        let x: Vec<f32> = (0..p.input_len()).map(|_| rng.float()).collect();
        let w: Vec<f32> = (0..p.weight_len()).map(|_| rng.float()).collect();
        let gy: Vec<f32> = (0..p.output_len()).map(|_| rng.float()).collect();
        let mut scratch = vec![0.0; p.scratch_len()];
        let loss = |x: &[f32], w: &[f32], scratch: &mut Vec<f32>| {
            let mut y = vec![0.0; p.output_len()];
            p.forward(x, w, None, &mut y, scratch).unwrap();
            y.iter()
                .zip(&gy)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
        };
        let mut gx = vec![0.0; x.len()];
        p.backward_data(&gy, &w, &mut gx, &mut scratch).unwrap();
        let mut gw = vec![0.0; w.len()];
        p.backward_weights(&x, &gy, &mut gw, None, &mut scratch, false)
            .unwrap();
        let eps = 1e-2f32;
        for _ in 0..8 {
            let i = rng.range(0, x.len() - 1);
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += eps;
            xm[i] -= eps;
            let fd =
                (loss(&xp, &w, &mut scratch) - loss(&xm, &w, &mut scratch)) / (2.0 * eps as f64);
            assert!(
                (fd - gx[i] as f64).abs() <= 1e-3 * (1.0 + fd.abs()),
                "{conv:?} dx[{i}]: fd {fd} vs {}",
                gx[i]
            );
            let j = rng.range(0, w.len() - 1);
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[j] += eps;
            wm[j] -= eps;
            let fd =
                (loss(&x, &wp, &mut scratch) - loss(&x, &wm, &mut scratch)) / (2.0 * eps as f64);
            assert!(
                (fd - gw[j] as f64).abs() <= 1e-3 * (1.0 + fd.abs()),
                "{conv:?} dw[{j}]: fd {fd} vs {}",
                gw[j]
            );
        }
    }
}

#[test]
fn plans_pick_algorithms_and_reject_bad_geometry() {
    let p = Conv2d::new(1, 8, (4, 4), 16, 1, 1, 0).plan().unwrap();
    assert_eq!((p.algo, p.scratch_len()), (ConvAlgo::Direct1x1, 0));
    // im2col's column matrix, or less where every pass runs without one
    // (direct convolutions and the shifted weight gradient, on AVX-512).
    let p = Conv2d::new(1, 3, (32, 32), 8, 3, 1, 1).plan().unwrap();
    assert_eq!((p.algo, p.out_h), (ConvAlgo::Im2col, 32));
    assert!(p.scratch_len() <= 27 * 1024, "{}", p.scratch_len());
    assert_eq!(
        p.with_algo(ConvAlgo::Im2col).unwrap().scratch_len(),
        27 * 1024
    );
    // Winograd where it pays (and the CPU has vectors), im2col for few tiles.
    let p = Conv2d::new(8, 16, (32, 32), 16, 3, 1, 1).plan().unwrap();
    let fast = bigdl_kernels::cpu::isa() >= bigdl_kernels::cpu::Isa::Avx2;
    assert_eq!(p.algo == ConvAlgo::Winograd, fast);
    let p = Conv2d::new(8, 16, (28, 28), 32, 5, 1, 2).plan().unwrap();
    assert_eq!(p.algo == ConvAlgo::Winograd, fast);
    let p = Conv2d::new(1, 512, (7, 7), 512, 3, 1, 1).plan().unwrap();
    assert_eq!(p.algo, ConvAlgo::Im2col);
    assert!(p.with_algo(ConvAlgo::Winograd).is_ok());
    // Forcing an algorithm that does not apply is an error.
    let strided = Conv2d::new(8, 16, (32, 32), 16, 3, 2, 1).plan().unwrap();
    assert!(strided.with_algo(ConvAlgo::Winograd).is_err());
    assert!(strided.with_algo(ConvAlgo::Direct1x1).is_err());
    let padded = Conv2d::new(8, 16, (32, 32), 16, 3, 1, 3).plan().unwrap();
    assert_eq!(padded.algo, ConvAlgo::Im2col);
    assert!(padded.with_algo(ConvAlgo::Winograd).is_err());
    // Kernel larger than the padded input; zero stride; groups not dividing.
    assert!(Conv2d::new(1, 3, (2, 2), 8, 5, 1, 1).plan().is_err());
    assert!(Conv2d::new(1, 3, (8, 8), 8, 3, 0, 1).plan().is_err());
    assert!(
        Conv2d {
            groups: 2,
            ..Conv2d::new(1, 3, (8, 8), 8, 3, 1, 1)
        }
        .plan()
        .is_err()
    );
    assert!(
        Conv2d::new(usize::MAX / 2, 3, (8, 8), 8, 3, 1, 1)
            .plan()
            .is_err()
    );
    // Wrong buffer sizes are errors, never panics.
    let p = Conv2d::new(1, 1, (4, 4), 1, 3, 1, 0).plan().unwrap();
    let mut y = vec![0.0; 4];
    let mut s = vec![0.0; p.scratch_len() - 1];
    assert!(matches!(
        p.forward(&[0.0; 16], &[0.0; 9], None, &mut y, &mut s),
        Err(KernelError::BufferTooSmall {
            name: "scratch",
            ..
        })
    ));
    let mut s = vec![0.0; p.scratch_len()];
    assert!(
        p.forward(&[0.0; 15], &[0.0; 9], None, &mut y, &mut s)
            .is_err()
    );
    assert!(
        p.forward(&[0.0; 16], &[0.0; 9], Some(&[0.0; 2]), &mut y, &mut s)
            .is_err()
    );
}

/// A plan made outside the pool runs images in parallel; one made inside a
/// worker runs them in turn. Same results (the weight gradient up to the order
/// of the per-thread partial sums).
#[test]
fn image_parallel_plans_match_sequential_ones() {
    for (conv, algo) in [
        (Conv2d::new(5, 3, (9, 8), 4, 3, 1, 1), ConvAlgo::Im2col),
        (Conv2d::new(3, 9, (23, 30), 10, 3, 1, 1), ConvAlgo::Winograd),
    ] {
        let par = conv.plan().unwrap().with_algo(algo).unwrap();
        let seq = pool::pool().install(|| conv.plan().unwrap().with_algo(algo).unwrap());
        assert_eq!(seq.threads, 1);
        parallel_matches_sequential(&par, &seq);
    }
}

fn parallel_matches_sequential(par: &ConvPlan, seq: &ConvPlan) {
    let x: Vec<f32> = (0..par.input_len())
        .map(|i| ((i * 31) % 17) as f32 * 0.1 - 0.8)
        .collect();
    let w: Vec<f32> = (0..par.weight_len())
        .map(|i| ((i * 7) % 11) as f32 * 0.1 - 0.5)
        .collect();
    let gy: Vec<f32> = (0..par.output_len())
        .map(|i| ((i * 3) % 5) as f32 * 0.1)
        .collect();
    let run = |p: &ConvPlan| {
        let mut s = vec![0.0; p.scratch_len()];
        let (mut y, mut gx, mut gw, mut gb) = (
            vec![0.0; p.output_len()],
            vec![0.0; x.len()],
            vec![0.0; w.len()],
            vec![0.0; p.conv.out_channels],
        );
        p.forward(&x, &w, None, &mut y, &mut s).unwrap();
        p.backward_data(&gy, &w, &mut gx, &mut s).unwrap();
        p.backward_weights(&x, &gy, &mut gw, Some(&mut gb), &mut s, false)
            .unwrap();
        (y, gx, gw, gb)
    };
    let (a, b) = (run(par), pool::pool().install(|| run(seq)));
    assert_eq!((a.0, a.1), (b.0, b.1));
    // Partial sums in another order: the same up to rounding, relative to a
    // bound on each output channel's sum of absolute products.
    let (oc, p) = (par.conv.out_channels, par.out_h * par.out_w);
    let xmax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut mag = vec![0.0f32; oc];
    for (i, v) in gy.iter().enumerate() {
        mag[(i / p) % oc] += v.abs() * xmax;
    }
    let per = a.2.len() / oc;
    for (i, (u, v)) in
        a.2.iter()
            .chain(&a.3)
            .zip(b.2.iter().chain(&b.3))
            .enumerate()
    {
        let m = mag[if i < a.2.len() {
            i / per
        } else {
            i - a.2.len()
        }];
        assert!((u - v).abs() <= 1e-6 * m, "{u} vs {v} (scale {m})");
    }
}

/// `forward_with` (residual and ReLU fused into the output) gives what
/// `forward` followed by separate passes gives, bit for bit, on every
/// algorithm that applies (im2col per image and in blocks of images, 1x1,
/// Winograd), on one thread and on several.
#[test]
fn fused_tail_equals_separate_passes() {
    let mut rng = Rng::from_env("fused_tail_equals_separate_passes");
    let mut convs: Vec<Conv2d> = (0..40).map(|_| random_conv(&mut rng)).collect();
    convs.push(Conv2d::new(4, 9, (23, 30), 10, 3, 1, 1));
    convs.push(Conv2d::new(3, 8, (12, 12), 9, 5, 1, 2));
    convs.push(Conv2d::new(6, 16, (3, 3), 8, 1, 1, 0));
    convs.push(Conv2d::new(2, 3, (70, 69), 4, 7, 2, 3));
    convs.push(Conv2d::new(1, 3, (70, 69), 4, 7, 2, 3));
    for conv in convs {
        let Ok(plan) = conv.plan() else { continue };
        for algo in [ConvAlgo::Im2col, ConvAlgo::Direct1x1, ConvAlgo::Winograd] {
            let Ok(par) = plan.with_algo(algo) else {
                continue;
            };
            let seq = pool::pool().install(|| conv.plan().unwrap().with_algo(algo).unwrap());
            let x: Vec<f32> = (0..par.input_len()).map(|_| rng.float()).collect();
            let w: Vec<f32> = (0..par.weight_len()).map(|_| rng.float()).collect();
            let b: Vec<f32> = (0..conv.out_channels).map(|_| rng.float()).collect();
            let r: Vec<f32> = (0..par.output_len()).map(|_| rng.float()).collect();
            for p in [&par, &seq] {
                for (residual, relu) in [(true, true), (true, false), (false, true)] {
                    let run = || {
                        let mut s = vec![0.0; p.scratch_len()];
                        let mut want = vec![f32::NAN; p.output_len()];
                        p.forward(&x, &w, Some(&b), &mut want, &mut s).unwrap();
                        for (i, v) in want.iter_mut().enumerate() {
                            if residual {
                                *v += r[i];
                            }
                            if relu && *v < 0.0 {
                                *v = 0.0;
                            }
                        }
                        let tail = Tail {
                            residual: residual.then_some(&r[..]),
                            relu,
                        };
                        let mut got = vec![f32::NAN; p.output_len()];
                        p.forward_with(&x, &w, Some(&b), tail, &mut got, &mut s)
                            .unwrap();
                        (want, got)
                    };
                    let (want, got) = if p.threads == 1 {
                        pool::pool().install(run)
                    } else {
                        run()
                    };
                    let same = want
                        .iter()
                        .zip(&got)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{algo:?} {conv:?} residual {residual} relu {relu}");
                }
            }
        }
    }
    // A residual of the wrong length is an error.
    let p = Conv2d::new(1, 2, (4, 4), 2, 3, 1, 1).plan().unwrap();
    let mut s = vec![0.0; p.scratch_len()];
    let (x, w) = (vec![0.0; p.input_len()], vec![0.0; p.weight_len()]);
    let tail = Tail {
        residual: Some(&[0.0; 3]),
        relu: false,
    };
    let mut y = vec![0.0; p.output_len()];
    assert!(p.forward_with(&x, &w, None, tail, &mut y, &mut s).is_err());
}
