//! Element-wise kernels against f64: a dense sweep of each transcendental
//! function at every ISA level (the documented ulp bounds), the special values,
//! tails of every length, reductions and softmax.

mod common;

use bigdl_kernels::cpu::Isa;
use bigdl_kernels::elementwise::{self as ew, Binary, PARALLEL_THRESHOLD, Unary};
use common::Rng;

fn reference(op: Unary, x: f64) -> f64 {
    match op {
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Tanh => x.tanh(),
        Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Unary::Relu => {
            if x.is_nan() {
                x
            } else {
                x.max(0.0)
            }
        }
        Unary::Abs => x.abs(),
        Unary::Sqrt => x.sqrt(),
        Unary::Neg => -x,
        Unary::Square => x * x,
    }
}

/// Error of `got` in units in the last place of the f32 nearest to `want`.
fn ulps(got: f32, want: f64) -> f64 {
    if got.is_nan() || want.is_nan() {
        return if got.is_nan() && want.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    if got as f64 == want || (got.is_infinite() && (want as f32) == got) {
        return 0.0;
    }
    let w = (want as f32).abs().max(f32::MIN_POSITIVE);
    let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
    (got as f64 - want).abs() / ulp
}

/// Whether `exp` or `sigmoid` may return 0 for a result this small (documented).
fn flushes(op: Unary, want: f64) -> bool {
    matches!(op, Unary::Exp | Unary::Sigmoid) && want.abs() < 2.0 * f32::MIN_POSITIVE as f64
}

/// (bound in ulp, sweep range) per transcendental function.
fn spec(op: Unary) -> Option<(f64, f64, f64)> {
    match op {
        Unary::Exp => Some((2.0, -104.0, 89.0)),
        Unary::Log => Some((2.0, 0.0, 1000.0)),
        Unary::Tanh => Some((3.0, -10.0, 10.0)),
        Unary::Sigmoid => Some((3.0, -104.0, 104.0)),
        _ => None,
    }
}

#[test]
fn transcendental_functions_within_documented_ulps() {
    for isa in Isa::supported() {
        for op in Unary::ALL {
            let Some((bound, lo, hi)) = spec(op) else {
                continue;
            };
            let steps = ((hi - lo) * 4096.0) as usize;
            let mut xs: Vec<f32> = (0..=steps)
                .map(|i| (lo + (hi - lo) * i as f64 / steps as f64) as f32)
                .collect();
            // Tiny and denormal arguments, around 1 and 0.625, the tails.
            xs.extend([
                1e-45,
                1e-40,
                1e-30,
                1e-10,
                1e-7,
                0.999_999_9,
                1.000_000_1,
                0.625,
                -0.625,
                0.624_999_94,
            ]);
            let mut ys = vec![0.0; xs.len()];
            ew::unary_isa(isa, op, &xs, &mut ys).unwrap();
            let mut worst = (0.0f64, 0.0f32);
            for (&x, &y) in xs.iter().zip(&ys) {
                let want = reference(op, x as f64);
                // exp, sigmoid: results at the bottom of the normal range may flush to 0.
                if flushes(op, want) {
                    let err = (y as f64 - want).abs();
                    assert!(
                        err <= f32::MIN_POSITIVE as f64,
                        "{isa} {}({x}) = {y}",
                        op.name()
                    );
                    continue;
                }
                if op == Unary::Log && x <= 0.0 {
                    continue; // special values below
                }
                let e = ulps(y, want);
                if e > worst.0 {
                    worst = (e, x);
                }
            }
            eprintln!(
                "{isa} {}: max error {:.2} ulp at x = {:e}",
                op.name(),
                worst.0,
                worst.1
            );
            assert!(
                worst.0 <= bound,
                "{isa} {}: {:.2} ulp at x = {:e} (bound {bound})",
                op.name(),
                worst.0,
                worst.1
            );
        }
    }
}

#[test]
fn special_values() {
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        1e-45,
        f32::MAX,
        -f32::MAX,
        88.8,
        -88.0,
    ];
    for isa in Isa::supported() {
        for op in Unary::ALL {
            let mut ys = vec![0.0; specials.len()];
            ew::unary_isa(isa, op, &specials, &mut ys).unwrap();
            for (&x, &y) in specials.iter().zip(&ys) {
                let want = reference(op, x as f64);
                let ok = if want.is_nan() {
                    y.is_nan()
                } else if want.is_infinite() || want.abs() > f32::MAX as f64 {
                    y as f64 == want || (y.is_infinite() && y.signum() as f64 == want.signum())
                } else if flushes(op, want) {
                    (y as f64 - want).abs() <= f32::MIN_POSITIVE as f64
                } else {
                    ulps(y, want) <= 3.0
                };
                assert!(ok, "{isa} {}({x:e}) = {y:e}, want {want:e}", op.name());
            }
        }
    }
}

#[test]
fn every_tail_length_matches_the_vector_lanes() {
    let mut rng = Rng::from_env("every_tail_length_matches_the_vector_lanes");
    let data: Vec<f32> = (0..64).map(|_| rng.float() * 8.0).collect();
    for isa in Isa::supported() {
        for op in Unary::ALL {
            let x: Vec<f32> = data
                .iter()
                .map(|v| {
                    if op == Unary::Log || op == Unary::Sqrt {
                        v.abs()
                    } else {
                        *v
                    }
                })
                .collect();
            let mut full = vec![0.0; 64];
            ew::unary_isa(isa, op, &x, &mut full).unwrap();
            for n in 0..40 {
                let mut part = vec![f32::NAN; n];
                ew::unary_isa(isa, op, &x[..n], &mut part).unwrap();
                for i in 0..n {
                    assert_eq!(
                        part[i].to_bits(),
                        full[i].to_bits(),
                        "{isa} {} n={n} i={i}",
                        op.name()
                    );
                }
            }
        }
    }
}

#[test]
fn long_inputs_run_in_parallel_with_the_same_results() {
    let n = PARALLEL_THRESHOLD * 3 + 7;
    let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.01 - 5.0).collect();
    let mut y = vec![0.0; n];
    ew::unary(Unary::Tanh, &x, &mut y).unwrap();
    let mut z = x.clone();
    ew::unary_inplace(Unary::Tanh, &mut z);
    let mut small = vec![0.0; 1000];
    ew::unary(Unary::Tanh, &x[..1000], &mut small).unwrap();
    for i in 0..n {
        assert_eq!(y[i].to_bits(), small[i % 1000].to_bits());
        assert_eq!(z[i].to_bits(), y[i].to_bits());
    }
    let mut out = vec![0.0; n];
    ew::binary(Binary::Mul, &x, &y, &mut out).unwrap();
    assert!(
        out.iter()
            .zip(x.iter().zip(&y))
            .all(|(o, (a, b))| *o == a * b)
    );
}

#[test]
fn binary_axpy_and_bad_lengths() {
    let a: Vec<f32> = (0..37).map(|i| i as f32 - 18.0).collect();
    let b: Vec<f32> = (0..37).map(|i| (i % 5) as f32 + 1.0).collect();
    let mut out = vec![0.0; 37];
    for (op, f) in [
        (Binary::Add, (|x, y| x + y) as fn(f32, f32) -> f32),
        (Binary::Sub, |x, y| x - y),
        (Binary::Mul, |x, y| x * y),
        (Binary::Div, |x, y| x / y),
    ] {
        ew::binary(op, &a, &b, &mut out).unwrap();
        for i in 0..37 {
            assert_eq!(out[i], f(a[i], b[i]), "{op:?} {i}");
        }
    }
    let mut y = b.clone();
    ew::axpy(2.0, &a, &mut y).unwrap();
    for i in 0..37 {
        assert_eq!(y[i], 2.0 * a[i] + b[i]);
    }
    assert!(ew::axpy(1.0, &a, &mut y[..36]).is_err());
    assert!(ew::binary(Binary::Add, &a, &b[..5], &mut out).is_err());
    assert!(ew::unary(Unary::Exp, &a, &mut out[..3]).is_err());
    ew::scale(0.5, &mut y);
    assert_eq!(y[0], -17.5);
}

#[test]
fn sums_and_maxima() {
    let mut rng = Rng::from_env("sums_and_maxima");
    for n in [
        0,
        1,
        15,
        16,
        17,
        100,
        4095,
        4096,
        4097,
        70_001,
        PARALLEL_THRESHOLD * 2 + 3,
    ] {
        let x: Vec<f32> = (0..n).map(|_| rng.float() * 100.0).collect();
        let want: f64 = x.iter().map(|&v| v as f64).sum();
        let mag: f64 = x.iter().map(|&v| v.abs() as f64).sum();
        let got = ew::sum(&x) as f64;
        assert!(
            (got - want).abs() <= 100.0 * f32::EPSILON as f64 * mag + 1e-30,
            "n={n}: {got} vs {want}"
        );
        let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(ew::max(&x), m, "n={n}");
        if n > 0 {
            let mut with_nan = x.clone();
            with_nan[n / 2] = f32::NAN;
            assert!(ew::max(&with_nan).is_nan(), "n={n}");
        }
    }
}

#[test]
fn softmax_rows_against_f64() {
    let mut rng = Rng::from_env("softmax_rows_against_f64");
    for cols in [1, 3, 10, 16, 33, 1000] {
        let rows = 5;
        let x: Vec<f32> = (0..rows * cols).map(|_| rng.float() * 30.0).collect();
        let (mut s, mut l) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        ew::softmax(&x, &mut s, cols).unwrap();
        ew::log_softmax(&x, &mut l, cols).unwrap();
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
            let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
            for (j, &v) in row.iter().enumerate() {
                let p = (v as f64 - m).exp() / z;
                let got = s[r * cols + j] as f64;
                // exp's 2 ulp, plus the rounding of x - max (relative error
                // |x - max| eps in the result), plus the normalisation.
                let tol = (8.0 + (v as f64 - m).abs()) * f32::EPSILON as f64 * p + 1e-37;
                assert!((got - p).abs() <= tol, "softmax {cols}: {got} vs {p}");
                let lp = v as f64 - m - z.ln();
                let got = l[r * cols + j] as f64;
                assert!(
                    (got - lp).abs() <= 8.0 * f32::EPSILON as f64 * (lp.abs() + m.abs() + 1.0),
                    "log_softmax {cols}: {got} vs {lp}"
                );
            }
        }
    }
    let mut y = vec![0.0; 6];
    assert!(ew::softmax(&[0.0; 6], &mut y, 4).is_err());
    assert!(ew::softmax(&[0.0; 6], &mut y, 0).is_err());
    ew::softmax(&[1.0, f32::NAN, 0.0], &mut y[..3], 3).unwrap();
    assert!(y[..3].iter().all(|v| v.is_nan()));
}

#[test]
fn log_softmax_keeps_precision_for_large_inputs() {
    use bigdl_kernels::elementwise::log_softmax;
    // ONNX's test_logsoftmax_large_number: rows offset by 1e4 must give the
    // same result as the unshifted row (max + ln(sum) would round to 1e-3).
    for row in [
        vec![0.0f32, 1.0, 2.0, 3.0],
        vec![10000.0, 10001.0, 10002.0, 10003.0],
    ] {
        let mut y = vec![f32::NAN; 4];
        log_softmax(&row, &mut y, 4).unwrap();
        let m = 3.0f64;
        let lse = (0..4).map(|i| (i as f64 - m).exp()).sum::<f64>().ln();
        for (i, v) in y.iter().enumerate() {
            let want = i as f64 - m - lse;
            assert!(
                (*v as f64 - want).abs() < 1e-6,
                "{row:?}[{i}]: {v} vs {want}"
            );
        }
    }
}
