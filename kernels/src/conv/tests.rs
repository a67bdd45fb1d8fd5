//! Unit tests of the plan's private choices and paths (the integration
//! tests check every default plan against references).

use super::*;
use crate::gemm::Backend;

/// One image on two threads runs as bands of output rows, with each
/// group's weight packed once where a band holds several blocks; its
/// forward and backward-data passes match the plan that unfolds the
/// image whole, to rounding (the integration tests check both against
/// references on the pool the machine has).
#[test]
fn row_bands_match_the_whole_image() {
    // A stem-like layer (one block per band); groups with a deep
    // weight, and an unpadded 5x5 (several blocks per band, weights the
    // GEMM would pack).
    let convs = [
        Conv2d::new(1, 3, (70, 69), 4, 7, 2, 3),
        Conv2d {
            groups: 2,
            ..Conv2d::new(1, 256, (90, 48), 6, 3, 2, 1)
        },
        Conv2d::new(1, 5, (67, 40), 3, 5, 1, 0),
    ];
    for (i, conv) in convs.into_iter().enumerate() {
        let base = conv.plan().unwrap();
        let bands = ConvPlan {
            tile_threads: 2,
            threads: 1,
            ..base
        };
        let whole = ConvPlan {
            tile_threads: 1,
            threads: 1,
            ..base
        };
        assert!(bands.rows_in_tasks() && !whole.rows_in_tasks(), "{conv:?}");
        let x = pattern(base.input_len(), 37, 23, 1.1);
        let w = pattern(base.weight_len(), 11, 13, 0.6);
        let b = pattern(conv.out_channels, 1, usize::MAX, 0.0);
        if i > 0 && Backend::from_env().unwrap() == Backend::Native {
            assert!(!bands.packed_weights(&w, false).unwrap().is_empty());
        }
        let run = |p: &ConvPlan| {
            let mut s = vec![0.0; p.scratch_len()];
            let mut y = vec![f32::NAN; p.output_len()];
            p.forward(&x, &w, Some(&b), &mut y, &mut s).unwrap();
            let mut gx = vec![f32::NAN; p.input_len()];
            p.backward_data(&y, &w, &mut gx, &mut s).unwrap();
            (y, gx)
        };
        let (got, want) = (run(&bands), run(&whole));
        for (u, v) in got.0.iter().chain(&got.1).zip(want.0.iter().chain(&want.1)) {
            assert!(
                (u - v).abs() <= 1e-4 * (1.0 + v.abs()),
                "{conv:?}: {u} vs {v}"
            );
        }
    }
}

/// The weight gradient without a column matrix matches an f64
/// reference on strides, dilations and asymmetric padding, with sides
/// off the 4 x 4 blocks, several chunks of images, and images split
/// over two threads.
#[test]
fn shifted_weight_grads_match_the_reference() {
    if cpu::isa() != Isa::Avx512 {
        return;
    }
    let convs = [
        // LeNet-5's conv2, over two chunks on one thread.
        Conv2d::new(70, 6, (12, 12), 12, 5, 1, 0),
        Conv2d {
            pad_top: 2,
            pad_bottom: 0,
            pad_left: 1,
            pad_right: 3,
            ..Conv2d::new(5, 3, (15, 14), 7, 3, 2, 0)
        },
        Conv2d {
            dilation_h: 2,
            dilation_w: 3,
            ..Conv2d::new(4, 2, (17, 19), 5, 3, 3, 1)
        },
        Conv2d {
            stride_w: 2,
            kernel_w: 4,
            ..Conv2d::new(3, 1, (9, 20), 40, 5, 1, 2)
        },
        // Bands of output rows: 3 of 40 rows, and 2 of 28 rows for 55
        // (stride 2, 64 channels like ResNet-50's stem; a short last band).
        Conv2d::new(2, 3, (120, 117), 4, 5, 1, 2),
        Conv2d {
            pad_bottom: 1,
            ..Conv2d::new(3, 3, (112, 29), 64, 7, 2, 3)
        },
    ];
    for conv in convs {
        let base = conv.plan().unwrap();
        let s = base.staging().unwrap();
        assert_eq!(s.bands > 1, conv.in_h > 100, "{conv:?}: {s:?}");
        for threads in [1, 2] {
            let plan = ConvPlan {
                threads,
                shifted_grad: true,
                ..base
            };
            let x = pattern(plan.input_len(), 37, 23, 1.1);
            let gy = pattern(plan.output_len(), 11, 17, 0.8);
            let (w, b) = (vec![0.0; plan.weight_len()], vec![0.0; conv.out_channels]);
            let [_, _, want] = naive_passes(&plan, &x, &w, &b, &gy);
            let mut s = vec![f32::NAN; plan.scratch_len()];
            let mut gw = vec![f32::NAN; plan.weight_len()];
            plan.backward_weights(&x, &gy, &mut gw, None, &mut s, false)
                .unwrap();
            for (i, (&got, &(want, abs))) in gw.iter().zip(&want).enumerate() {
                assert!(
                    (got as f64 - want).abs() <= 1e-5 * (1.0 + abs),
                    "{conv:?}, {threads} threads, entry {i}: {got} vs {want}"
                );
            }
        }
    }
}

/// Test data: `len` values of a pattern with step `mul` modulo `m`.
fn pattern(len: usize, mul: usize, m: usize, offset: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * mul) % m) as f32 * 0.1 - offset)
        .collect()
}

/// `[y, gx, gw]` of a convolution in f64, each entry with the sum of
/// the absolute values of its terms: `y = conv(x, w) + bias`, `gx =
/// conv^T(gy, w)`, `gw` the weight gradient.
fn naive_passes(
    p: &ConvPlan,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    gy: &[f32],
) -> [Vec<(f64, f64)>; 3] {
    let c = &p.conv;
    let (cin, cout, (oh_n, ow_n)) = (c.in_channels, c.out_channels, (p.out_h, p.out_w));
    let mut y: Vec<(f64, f64)> = (0..p.output_len())
        .map(|i| bias[i / (oh_n * ow_n) % cout] as f64)
        .map(|b| (b, b.abs()))
        .collect();
    let mut gx = vec![(0.0, 0.0); p.input_len()];
    let mut gw = vec![(0.0, 0.0); p.weight_len()];
    let add = |e: &mut (f64, f64), v: f64| *e = (e.0 + v, e.1 + v.abs());
    for n in 0..c.batch {
        for o in 0..cout {
            for ch in 0..cin {
                for kh in 0..c.kernel_h {
                    for kw in 0..c.kernel_w {
                        let wi = ((o * cin + ch) * c.kernel_h + kh) * c.kernel_w + kw;
                        for oh in 0..oh_n {
                            let ih = (oh * c.stride_h + kh * c.dilation_h).wrapping_sub(c.pad_top);
                            for ow in 0..ow_n {
                                let iw =
                                    (ow * c.stride_w + kw * c.dilation_w).wrapping_sub(c.pad_left);
                                if ih < c.in_h && iw < c.in_w {
                                    let yi = ((n * cout + o) * oh_n + oh) * ow_n + ow;
                                    let xi = ((n * cin + ch) * c.in_h + ih) * c.in_w + iw;
                                    let (wv, xv, gv) = (w[wi] as f64, x[xi] as f64, gy[yi] as f64);
                                    add(&mut y[yi], wv * xv);
                                    add(&mut gx[xi], wv * gv);
                                    add(&mut gw[wi], gv * xv);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    [y, gx, gw]
}

/// Layers with few channels take the paths without a column matrix on
/// AVX-512; a forced algorithm runs all three passes.
#[test]
fn small_layers_skip_the_column_matrix() {
    let lenet_conv2 = Conv2d::new(128, 6, (12, 12), 12, 5, 1, 0).plan().unwrap();
    let p = &lenet_conv2;
    let avx512 = cpu::isa() == Isa::Avx512;
    assert_eq!(
        (p.direct_fwd, p.direct_data, p.shifted_grad),
        (avx512, avx512, avx512)
    );
    if avx512 {
        // No column matrix: the staged images of the weight gradient
        // are the largest area.
        assert_eq!(p.work_len(), p.shifted_len());
    }
    // One image on several threads stays on the GEMMs, which split it.
    let p = Conv2d::new(1, 6, (12, 12), 12, 5, 1, 0).plan().unwrap();
    assert_eq!(p.direct_fwd, avx512 && p.tile_threads == 1);
    let strided = Conv2d::new(128, 16, (32, 32), 32, 3, 2, 1).plan().unwrap();
    let p = &strided;
    assert_eq!(
        (p.direct_fwd, p.direct_data, p.shifted_grad),
        (avx512, false, avx512)
    );
    for p in [lenet_conv2, strided] {
        let p = p.with_algo(ConvAlgo::Im2col).unwrap();
        assert!(!p.direct_fwd && !p.direct_data && !p.shifted_grad);
    }
    // 1x1 layers keep reading the input in place.
    let p = Conv2d::new(8, 16, (14, 14), 8, 1, 1, 0).plan().unwrap();
    assert!(!p.direct_fwd && !p.direct_data && !p.shifted_grad);
}

/// The direct convolutions match an f64 reference: asymmetric padding,
/// dilation, strides, rows that are not whole runs, every channel
/// blocking, a fused residual and ReLU, one and two threads.
#[test]
fn direct_passes_match_the_reference() {
    if cpu::isa() != Isa::Avx512 {
        return;
    }
    let convs = [
        // LeNet-5's conv2 (backward: 12 -> 6 channels on 12-wide rows)
        // and conv1 (backward: 6 -> 1).
        Conv2d::new(3, 6, (12, 12), 12, 5, 1, 0),
        Conv2d::new(2, 1, (28, 28), 6, 5, 1, 0),
        // Backward: one channel, 40 runs (a partial block of 16).
        Conv2d::new(2, 1, (20, 12), 6, 5, 1, 0),
        Conv2d {
            pad_top: 2,
            pad_bottom: 1,
            pad_right: 2,
            dilation_h: 2,
            dilation_w: 2,
            ..Conv2d::new(2, 3, (11, 13), 5, 3, 1, 0)
        },
        Conv2d::new(3, 4, (9, 10), 2, 3, 1, 1),
        Conv2d {
            kernel_h: 1,
            kernel_w: 4,
            pad_left: 1,
            ..Conv2d::new(2, 2, (8, 17), 6, 2, 1, 0)
        },
        Conv2d::new(2, 9, (10, 8), 3, 3, 1, 2),
        // Strided (forward only): ResNet-20's downsampling layer, and
        // strides 3 x 2 with dilation and asymmetric padding.
        Conv2d::new(2, 3, (17, 18), 5, 3, 2, 1),
        Conv2d {
            stride_h: 3,
            dilation_w: 2,
            pad_left: 2,
            pad_right: 0,
            ..Conv2d::new(2, 2, (20, 25), 6, 3, 2, 1)
        },
        // Runs of 16: 16-wide rows, and 20-wide strided rows (runs at 0
        // and 4) with a partial block of channels.
        Conv2d::new(2, 2, (18, 18), 6, 3, 1, 0),
        Conv2d::new(2, 3, (34, 40), 7, 3, 2, 1),
    ];
    for conv in convs {
        let base = conv.plan().unwrap();
        let strided = (conv.stride_h, conv.stride_w) != (1, 1);
        assert!(base.direct_forward().is_some(), "{conv:?}");
        assert_eq!(base.direct_backward().is_some(), !strided, "{conv:?}");
        for threads in [1, 2] {
            let plan = ConvPlan {
                threads: threads.min(conv.batch),
                direct_fwd: true,
                direct_data: !strided,
                ..base
            };
            let x = pattern(plan.input_len(), 37, 23, 1.1);
            let w = pattern(plan.weight_len(), 11, 13, 0.6);
            let b = pattern(conv.out_channels, 1, usize::MAX, 0.2);
            let gy = pattern(plan.output_len(), 7, 19, 0.9);
            let [y, gx, _] = naive_passes(&plan, &x, &w, &b, &gy);
            let mut s = vec![f32::NAN; plan.scratch_len()];
            let mut got = vec![f32::NAN; plan.output_len()];
            let tail = Tail {
                residual: Some(&gy),
                relu: true,
            };
            plan.forward_with(&x, &w, Some(&b), tail, &mut got, &mut s)
                .unwrap();
            for (i, (&v, &(y, abs))) in got.iter().zip(&y).enumerate() {
                let want = (y + gy[i] as f64).max(0.0);
                assert!(
                    (v as f64 - want).abs() <= 1e-5 * (1.0 + abs + gy[i].abs() as f64),
                    "{conv:?}, {threads} threads, y[{i}]: {v} vs {want}"
                );
            }
            let mut got = vec![f32::NAN; plan.input_len()];
            plan.backward_data(&gy, &w, &mut got, &mut s).unwrap();
            for (i, (&v, &(want, abs))) in got.iter().zip(&gx).enumerate() {
                assert!(
                    (v as f64 - want).abs() <= 1e-5 * (1.0 + abs),
                    "{conv:?}, {threads} threads, gx[{i}]: {v} vs {want}"
                );
            }
        }
    }
}

/// The forward pass on packed weights (`conv/wide.rs`) matches an f64
/// reference: 1x1 layers read in place and strided ones unfolded, 3x3
/// with padding, planes of 1 to 130 pixels (blocks of 1 to 12), a partial
/// panel of channels, blocks of `k` and chunks of pixels, with and
/// without a bias, a fused residual and ReLU; one image on two threads
/// (panels split) and two images on one or two threads.
#[test]
fn packed_weight_passes_match_the_reference() {
    if cpu::isa() != Isa::Avx512 {
        return;
    }
    let convs = [
        // ResNet-50's res5 1x1 (smaller): 49 pixels, 40 channels (a
        // panel and 8 rows of the next).
        Conv2d::new(1, 400, (7, 7), 40, 1, 1, 0),
        // Strided 1x1 (unfolded): 4 x 4 = 16 pixels, blocks of 8.
        Conv2d::new(2, 400, (8, 7), 64, 1, 2, 0),
        // 3x3 with padding: 30 pixels (blocks of 10), and one pixel.
        Conv2d::new(2, 48, (5, 6), 33, 3, 1, 1),
        Conv2d::new(1, 48, (3, 3), 32, 3, 1, 0),
        // Two groups of 32 output channels.
        Conv2d {
            groups: 2,
            ..Conv2d::new(2, 96, (4, 5), 64, 3, 1, 1)
        },
        // One image unfolded as two blocks of channels (23 and 22) on two
        // threads, strided.
        Conv2d::new(1, 45, (6, 5), 64, 3, 2, 1),
        // The shallowest: k = 128, a 56 x 56 plane in chunks.
        Conv2d::new(1, 128, (56, 56), 32, 1, 1, 0),
        // Two blocks of k (550 each), and two chunks of pixels (65 each).
        Conv2d::new(1, 1100, (3, 3), 32, 1, 1, 0),
        Conv2d::new(1, 600, (10, 13), 32, 1, 1, 0),
    ];
    for conv in convs {
        let base = conv.plan().unwrap();
        // Deep products take the path on any pool; shallower ones with one
        // image on several threads.
        assert!(base.wide || base.k() < 384, "{conv:?}");
        for threads in [1, 2] {
            let plan = ConvPlan {
                threads: threads.min(conv.batch),
                tile_threads: threads,
                wide: true,
                ..base
            };
            let x = pattern(plan.input_len(), 37, 23, 1.1);
            let w = pattern(plan.weight_len(), 11, 13, 0.6);
            let b = pattern(conv.out_channels, 1, usize::MAX, 0.2);
            let mut r = pattern(plan.output_len(), 7, 19, 0.9);
            // A NaN passes the fused ReLU.
            r[plan.output_len() / 2] = f32::NAN;
            let packed = plan.pack_weights(&w).unwrap().unwrap();
            let mut s = vec![f32::NAN; plan.scratch_len()];
            for (bias, tail) in [
                (Some(&b[..]), Tail::default()),
                (
                    None,
                    Tail {
                        residual: Some(&r),
                        relu: true,
                    },
                ),
            ] {
                let zero = vec![0.0; conv.out_channels];
                let ref_bias = bias.unwrap_or(&zero);
                let want = if conv.groups == 1 {
                    let [y, _, _] = naive_passes(&plan, &x, &w, ref_bias, &r);
                    y
                } else {
                    // Groups: the unpacked pass (checked against references
                    // by the integration tests), in f64 terms.
                    let mut y = vec![0.0; plan.output_len()];
                    plan.forward(&x, &w, Some(ref_bias), &mut y, &mut s)
                        .unwrap();
                    y.iter().map(|&v| (v as f64, v.abs() as f64)).collect()
                };
                let mut got = vec![f32::NAN; plan.output_len()];
                plan.forward_packed(&x, &w, Some(&packed), bias, tail, &mut got, &mut s)
                    .unwrap();
                for (i, (&v, &(y, abs))) in got.iter().zip(&want).enumerate() {
                    if tail.residual.is_some() && r[i].is_nan() {
                        assert!(v.is_nan(), "{conv:?}, y[{i}]: {v}");
                        continue;
                    }
                    let (want, abs) = match tail.residual {
                        Some(r) => ((y + r[i] as f64).max(0.0), abs + r[i].abs() as f64),
                        None => (y, abs),
                    };
                    assert!(
                        (v as f64 - want).abs() <= 1e-5 * (1.0 + abs),
                        "{conv:?}, {threads} threads, y[{i}]: {v} vs {want}"
                    );
                }
            }
        }
    }
    // A packing of another layer is refused.
    let plan = convs[0].plan().unwrap();
    let other = convs[3].plan().unwrap();
    let w = vec![0.0; other.weight_len()];
    let packed = other.pack_weights(&w).unwrap().unwrap();
    let (x, mut y) = (vec![0.0; plan.input_len()], vec![0.0; plan.output_len()]);
    let mut s = vec![0.0; plan.scratch_len()];
    let wp = vec![0.0; plan.weight_len()];
    let err = plan
        .forward_packed(
            &x,
            &wp,
            Some(&packed),
            None,
            Tail::default(),
            &mut y,
            &mut s,
        )
        .unwrap_err();
    assert!(err.to_string().contains("not a packing"), "{err}");
}

/// A Winograd plan's forward pass on its transformed kernel (prepared once
/// by `pack_weights`) writes what the pass that transforms the kernel
/// itself writes, bit for bit, with a bias or a fused residual and ReLU;
/// the packing serves that plan and not the same layer's im2col plan, and
/// another layer's packing is refused.
#[test]
fn winograd_runs_on_its_transformed_kernel() {
    // (Chosen on AVX-512 and AVX2, not in scalar code.)
    let winograd = |c: Conv2d| c.plan().unwrap().with_algo(ConvAlgo::Winograd).unwrap();
    for conv in [
        Conv2d::new(3, 12, (15, 17), 20, 3, 1, 1),
        Conv2d::new(3, 8, (9, 9), 16, 5, 1, 2),
        Conv2d::new(4, 9, (16, 16), 8, 3, 1, 0),
    ] {
        let plan = winograd(conv);
        let x = pattern(plan.input_len(), 37, 23, 1.1);
        let w = pattern(plan.weight_len(), 11, 13, 0.6);
        let b = pattern(conv.out_channels, 1, usize::MAX, 0.2);
        let r = pattern(plan.output_len(), 7, 19, 0.9);
        let packed = plan.pack_weights(&w).unwrap().unwrap();
        assert!(format!("{packed:?}").contains("Winograd"), "{packed:?}");
        assert!(packed.serves(&plan));
        assert!(!packed.serves(&plan.with_algo(ConvAlgo::Im2col).unwrap()));
        let mut s = vec![f32::NAN; plan.scratch_len()];
        for tail in [
            Tail::default(),
            Tail {
                residual: Some(&r),
                relu: true,
            },
        ] {
            let mut want = vec![f32::NAN; plan.output_len()];
            plan.forward_with(&x, &w, Some(&b), tail, &mut want, &mut s)
                .unwrap();
            let mut got = vec![f32::NAN; plan.output_len()];
            plan.forward_packed(&x, &w, Some(&packed), Some(&b), tail, &mut got, &mut s)
                .unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{conv:?}");
        }
    }
    let plan = winograd(Conv2d::new(3, 12, (15, 17), 20, 3, 1, 1));
    let other = winograd(Conv2d::new(3, 13, (15, 17), 20, 3, 1, 1));
    let packed = other
        .pack_weights(&vec![0.0; other.weight_len()])
        .unwrap()
        .unwrap();
    assert!(!packed.serves(&plan));
    let mut y = vec![0.0; plan.output_len()];
    let err = plan
        .forward_packed(
            &vec![0.0; plan.input_len()],
            &vec![0.0; plan.weight_len()],
            Some(&packed),
            None,
            Tail::default(),
            &mut y,
            &mut vec![0.0; plan.scratch_len()],
        )
        .unwrap_err();
    assert!(err.to_string().contains("not a packing"), "{err}");
}

/// One image on two threads: the direct forward pass splits its output
/// channels (ResNet-50's stem, smaller; 36 channels as 20 + 16) and
/// matches an f64 reference, with a fused residual and ReLU, or a ReLU
/// alone (inside the kernel).
#[test]
fn direct_forward_splits_one_image() {
    if cpu::isa() != Isa::Avx512 {
        return;
    }
    for conv in [
        Conv2d::new(1, 3, (30, 30), 64, 7, 2, 3),
        Conv2d::new(1, 2, (20, 18), 36, 3, 1, 1),
    ] {
        let base = conv.plan().unwrap();
        let plan = ConvPlan {
            threads: 1,
            tile_threads: 2,
            direct_fwd: true,
            ..base
        };
        let x = pattern(plan.input_len(), 37, 23, 1.1);
        let w = pattern(plan.weight_len(), 11, 13, 0.6);
        let b = pattern(conv.out_channels, 1, usize::MAX, 0.2);
        let r = pattern(plan.output_len(), 7, 19, 0.9);
        let [y, _, _] = naive_passes(&plan, &x, &w, &b, &r);
        let mut s = vec![f32::NAN; plan.scratch_len()];
        // A residual and a ReLU after the kernel, and a ReLU in it.
        for residual in [Some(&r[..]), None] {
            let mut got = vec![f32::NAN; plan.output_len()];
            let tail = Tail {
                residual,
                relu: true,
            };
            plan.forward_with(&x, &w, Some(&b), tail, &mut got, &mut s)
                .unwrap();
            for (i, (&v, &(y, abs))) in got.iter().zip(&y).enumerate() {
                let r = residual.map_or(0.0, |r| r[i]);
                let want = (y + r as f64).max(0.0);
                assert!(
                    (v as f64 - want).abs() <= 1e-5 * (1.0 + abs + r.abs() as f64),
                    "{conv:?}, y[{i}]: {v} vs {want}"
                );
            }
        }
    }
}
