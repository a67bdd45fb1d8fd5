//! SGEMM against an f64 reference, on every ISA level of the native kernel and on
//! every compiled-in backend: all layouts and transposes, alpha/beta, leading
//! dimensions with NaN-poisoned padding, sizes around the micro-tile and cache
//! blocks, 1 and several threads.

mod common;

use bigdl_kernels::KernelError;
use bigdl_kernels::cpu::Isa;
use bigdl_kernels::gemm::{Backend, Epilogue, Gemm, Layout, Parallelism, Transpose};
use common::{Rng, check, operands, reference};

/// Something that runs a GEMM: a backend, or the native kernel at one ISA level.
#[derive(Clone, Copy, Debug)]
enum Engine {
    Backend(Backend),
    Native(Isa),
}

fn engines() -> Vec<Engine> {
    let mut e: Vec<Engine> = Isa::supported().map(Engine::Native).collect();
    e.extend(Backend::available().into_iter().map(Engine::Backend));
    e
}

fn run(e: Engine, g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<(), KernelError> {
    match e {
        Engine::Backend(be) => g.run_on(be, a, b, c),
        Engine::Native(isa) => g.run_native_isa(isa, a, b, c),
    }
}

fn run_with(
    e: Engine,
    g: &Gemm,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    epi: &Epilogue<'_>,
) -> Result<(), KernelError> {
    match e {
        Engine::Backend(be) => g.run_on_with(be, a, b, c, epi),
        Engine::Native(isa) => g.run_native_isa_with(isa, a, b, c, epi),
    }
}

fn all_variants(m: usize, n: usize, k: usize) -> Vec<Gemm> {
    let mut out = Vec::new();
    for layout in [Layout::RowMajor, Layout::ColMajor] {
        for ta in [false, true] {
            for tb in [false, true] {
                out.push(
                    Gemm::new(m, n, k)
                        .layout(layout)
                        .trans_a(Transpose::from_bool(ta))
                        .trans_b(Transpose::from_bool(tb)),
                );
            }
        }
    }
    out
}

/// Runs `g` on every engine with fresh data and checks the result.
fn check_all(g: Gemm, pad: usize, exact: bool, rng: &mut Rng) {
    for e in engines() {
        let mut fill = || if exact { rng.small_int() } else { rng.float() };
        let (a, b, mut c) = operands(&g, pad, &mut fill);
        if g.beta == 0.0 {
            // beta = 0 must not read C: poison the valid elements too.
            c.data.iter_mut().for_each(|x| *x = f32::NAN);
        }
        let (want, mag) = reference(&g, &a, &b, &c);
        let (lda, ldb, ldc) = (a.ld, b.ld, c.ld);
        let g = g.lda(lda).ldb(ldb).ldc(ldc);
        run(e, &g, &a.data, &b.data, &mut c.data)
            .unwrap_or_else(|err| panic!("{e:?} {g:?}: {err}"));
        check(&g, &c, &want, &mag, exact, &format!("{e:?} {g:?}"));
    }
}

#[test]
fn exact_on_integer_inputs() {
    let mut rng = Rng::from_env("exact_on_integer_inputs");
    // Integer inputs in -4..=4 and k <= 400: every partial sum is an integer below
    // 2^24, so any summation order is exact.
    for (m, n, k) in [
        (1, 1, 1),
        (3, 5, 7),
        (12, 32, 16),
        (13, 33, 17),
        (25, 47, 400),
        (37, 70, 3),
    ] {
        for g in all_variants(m, n, k) {
            for (alpha, beta) in [(1.0, 0.0), (2.0, 1.0), (-1.0, 0.5), (1.0, -3.0)] {
                check_all(g.alpha(alpha).beta(beta), 1, true, &mut rng);
            }
        }
    }
    // Vectors with tight leading dimensions (ld = 1 for a single row or column:
    // CBLAS libraries reject it where the line length is larger, so the BLAS
    // backends must pass a valid ld that is never used).
    for (m, n, k) in [
        (45, 1, 185),
        (1, 45, 185),
        (1, 1, 300),
        (7, 1, 1),
        (1, 9, 1),
    ] {
        for g in all_variants(m, n, k) {
            for beta in [0.0, 1.0] {
                check_all(g.beta(beta), 0, true, &mut rng);
            }
        }
    }
}

#[test]
fn small_c_long_k() {
    // The AVX-512 dot-product path (C of at most 128 x 128 with a side <= 32,
    // k >= 128; row-major A times B^T, or the same in column-major): partial
    // 4 x 4 blocks on both sides, k tails of 0..15 lanes; exact on integers.
    let mut rng = Rng::from_env("small_c_long_k");
    for (m, n, k) in [
        (1, 1, 128),
        (4, 4, 128),
        (5, 7, 143),
        (6, 25, 400),
        (16, 27, 399),
        (3, 130, 200),
        (32, 144, 256),
    ] {
        for g in all_variants(m, n, k) {
            for (alpha, beta) in [(1.0, 0.0), (2.0, 1.0), (-1.0, 0.5)] {
                check_all(g.alpha(alpha).beta(beta), 1, true, &mut rng);
            }
        }
    }
    for p in [Parallelism::Threads(1), Parallelism::Auto] {
        let g = Gemm::new(16, 27, 4100)
            .trans_b(Transpose::Yes)
            .beta(0.5)
            .parallelism(p);
        check_all(g, 3, false, &mut rng);
    }
}

#[test]
fn random_shapes_within_error_bound() {
    let mut rng = Rng::from_env("random_shapes_within_error_bound");
    for _ in 0..12 {
        let (m, n, k) = (rng.range(1, 70), rng.range(1, 90), rng.range(1, 700));
        let pad = rng.range(0, 3);
        for g in all_variants(m, n, k) {
            let beta = [0.0, 1.0, 0.25][rng.range(0, 2)];
            check_all(g.alpha(rng.float()).beta(beta), pad, false, &mut rng);
        }
    }
}

#[test]
fn large_blocks_and_threads() {
    let mut rng = Rng::from_env("large_blocks_and_threads");
    // Crosses kc (k > 336 on AVX-512, > 1024 nowhere), nc and several tiles, on one
    // and on all threads (split over rows and over columns).
    for (m, n, k) in [(200, 520, 700), (517, 45, 390), (40, 900, 1100)] {
        for p in [Parallelism::Threads(1), Parallelism::Auto] {
            let g = Gemm::new(m, n, k).beta(0.5).parallelism(p);
            check_all(g, 0, false, &mut rng);
            let g = g.layout(Layout::ColMajor).trans_a(Transpose::Yes);
            check_all(g, 2, false, &mut rng);
        }
    }
}

#[test]
fn small_blocks_cross_every_cache_loop() {
    // With blocking forced tiny (see the env overrides), every loop of the native
    // kernel runs several times even on small shapes; run in a child process so
    // the override does not leak into other tests.
    if std::env::var("BIGDL_GEMM_KC").is_err() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "small_blocks_cross_every_cache_loop",
                "--exact",
                "--nocapture",
            ])
            .env("BIGDL_GEMM_KC", "24")
            .env("BIGDL_GEMM_MC", "24")
            .env("BIGDL_GEMM_NC", "64")
            .status()
            .expect("spawn the test binary");
        assert!(status.success());
        return;
    }
    let mut rng = Rng::from_env("small_blocks_cross_every_cache_loop");
    for g in all_variants(61, 150, 77) {
        check_all(g.beta(1.0), 1, true, &mut rng);
        check_all(g, 0, false, &mut rng);
    }
}

#[test]
fn degenerate_sizes() {
    for e in engines() {
        // k = 0: C = beta * C, A and B untouched (and may be empty).
        let mut c = vec![2.0f32; 6];
        run(e, &Gemm::new(2, 3, 0).beta(0.5), &[], &[], &mut c).unwrap();
        assert_eq!(c, [1.0; 6], "{e:?}");
        let mut c = vec![f32::NAN; 6];
        run(e, &Gemm::new(2, 3, 0), &[], &[], &mut c).unwrap();
        assert_eq!(c, [0.0; 6], "{e:?}");
        // alpha = 0 with NaN inputs: C = beta * C.
        let mut c = vec![4.0f32; 4];
        let nan = [f32::NAN; 4];
        run(
            e,
            &Gemm::new(2, 2, 2).alpha(0.0).beta(0.25),
            &nan,
            &nan,
            &mut c,
        )
        .unwrap();
        assert_eq!(c, [1.0; 4], "{e:?}");
        // m = 0 or n = 0: nothing to do, empty buffers are fine.
        run(e, &Gemm::new(0, 5, 3), &[], &[0.0; 15], &mut []).unwrap();
        run(e, &Gemm::new(4, 0, 3), &[0.0; 12], &[], &mut []).unwrap();
    }
}

#[test]
fn bad_arguments_are_errors() {
    let g = Gemm::new(4, 5, 6);
    let (a, b, mut c) = (vec![0.0; 24], vec![0.0; 30], vec![0.0; 20]);
    for e in engines() {
        assert!(matches!(
            run(e, &g, &a[..23], &b, &mut c),
            Err(KernelError::BufferTooSmall {
                name: "a",
                len: 23,
                needed: 24,
                ..
            })
        ));
        assert!(matches!(
            run(e, &g, &a, &b[..29], &mut c),
            Err(KernelError::BufferTooSmall { name: "b", .. })
        ));
        assert!(matches!(
            run(e, &g, &a, &b, &mut c[..19]),
            Err(KernelError::BufferTooSmall { name: "c", .. })
        ));
        assert!(matches!(
            run(e, &g.lda(5), &a, &b, &mut c),
            Err(KernelError::InvalidArgument { .. })
        ));
        let huge = Gemm::new(usize::MAX / 2, 2, 2);
        assert!(run(e, &huge, &a, &b, &mut c).is_err());
    }
    let err = Backend::parse("cublas").unwrap_err();
    assert!(err.to_string().contains("unknown GEMM backend"), "{err}");
}

#[test]
fn every_backend_reports_what_runs() {
    for b in Backend::ALL {
        match b.check() {
            Ok(()) => {
                let d = b.describe().unwrap();
                let want = match b {
                    Backend::Native => "bigdl native",
                    Backend::Mkl => "Math Kernel Library",
                    Backend::OpenBlas => "OpenBLAS",
                };
                assert!(d.contains(want), "{b}: {d}");
                eprintln!("{b}: {d}");
            }
            Err(e) => {
                assert!(
                    !b.is_compiled() || b == Backend::OpenBlas,
                    "{b} compiled in but: {e}"
                );
                assert!(matches!(e, KernelError::Unsupported { .. }));
            }
        }
    }
    // Compiled-in backends must actually be usable in CI (feature builds).
    if cfg!(feature = "mkl") {
        assert!(Backend::Mkl.check().is_ok());
    }
    if cfg!(feature = "openblas") {
        Backend::OpenBlas.check().unwrap();
    }
}

/// The fused epilogue (row bias, residual, ReLU) gives what separate passes
/// over the product give, bit for bit, on every engine, layout and
/// transpose, for tiles on and off the micro-tile, several cache blocks of
/// `k`, `beta` 0 and not, and one or two threads; padding stays untouched.
#[test]
fn epilogue_equals_separate_passes() {
    let mut rng = Rng::from_env("epilogue_equals_separate_passes");
    for round in 0..24 {
        let (m, n) = (rng.range(1, 70), rng.range(1, 90));
        let k = if round % 4 == 0 {
            rng.range(300, 800)
        } else {
            rng.range(0, 40)
        };
        let threads = rng.range(1, 2);
        for g in all_variants(m, n, k) {
            let g = g
                .beta(if rng.range(0, 1) == 0 { 0.0 } else { 0.5 })
                .parallelism(Parallelism::Threads(threads));
            for e in engines() {
                let mut fill = || rng.float() * 4.0;
                let (a, b, c) = operands(&g, 2, &mut fill);
                let bias: Vec<f32> = (0..m).map(|_| fill()).collect();
                let residual: Vec<f32> = c
                    .data
                    .iter()
                    .map(|x| if x.is_nan() { *x } else { fill() })
                    .collect();
                let (use_bias, use_res, relu) = (
                    rng.range(0, 1) == 1,
                    rng.range(0, 1) == 1,
                    rng.range(0, 1) == 1,
                );
                let epi = Epilogue {
                    row_bias: use_bias.then_some(&bias[..]),
                    residual: use_res.then_some(&residual[..]),
                    relu,
                };
                let g = g.lda(a.ld).ldb(b.ld).ldc(c.ld);
                let mut want = c.data.clone();
                run(e, &g, &a.data, &b.data, &mut want).unwrap();
                for (i, &row_bias) in bias.iter().enumerate() {
                    for j in 0..n {
                        let at = match g.layout {
                            Layout::RowMajor => i * c.ld + j,
                            Layout::ColMajor => i + j * c.ld,
                        };
                        let mut v = want[at];
                        if use_bias {
                            v += row_bias;
                        }
                        if use_res {
                            v += residual[at];
                        }
                        want[at] = if relu && v < 0.0 { 0.0 } else { v };
                    }
                }
                let mut got = c.data.clone();
                run_with(e, &g, &a.data, &b.data, &mut got, &epi)
                    .unwrap_or_else(|err| panic!("{e:?} {g:?}: {err}"));
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()));
                assert!(
                    same,
                    "{e:?} {g:?} bias {use_bias} residual {use_res} relu {relu}"
                );
            }
        }
    }
    // Short operands are errors.
    let g = Gemm::new(3, 4, 2);
    let (a, b, mut c) = ([1.0; 6], [1.0; 8], [0.0; 12]);
    let short = [0.0; 2];
    for epi in [
        Epilogue {
            row_bias: Some(&short),
            ..Epilogue::default()
        },
        Epilogue {
            residual: Some(&short),
            ..Epilogue::default()
        },
    ] {
        assert!(matches!(
            g.run_with(&a, &b, &mut c, &epi),
            Err(KernelError::BufferTooSmall { .. })
        ));
    }
}

/// `A` packed once (`Gemm::pack_a`) and used by `run_packed_with`: exact on
/// integer inputs (so the same as the reference bit for bit), with `A` as
/// stored or transposed, `beta` and an epilogue, `k` crossing the cache
/// block, rows off the micro-tile, on one thread and split over rows; one
/// packing serves products with different `B` and `n`. Misused, an error.
#[test]
fn packed_a_matches_reference() {
    let mut rng = Rng::from_env("packed_a_matches_reference");
    // Blocks of k: several, the last one short.
    let kc = bigdl_kernels::gemm::Blocking::for_isa(bigdl_kernels::cpu::isa()).kc;
    for (m, k) in [(1, 1), (13, 5), (61, 2 * kc + 7), (200, 700), (517, kc + 1)] {
        for ta in [false, true] {
            let base = Gemm::new(m, 1, k).trans_a(Transpose::from_bool(ta));
            let (a, ..) = operands(&base, 1, &mut || rng.small_int());
            let Some(packed) = base.lda(a.ld).pack_a(&a.data).unwrap() else {
                return; // a BLAS library is the default backend
            };
            for (n, beta, threads) in [(1, 0.0, 1), (45, 1.0, 2), (300, 0.0, 2)] {
                let g = Gemm::new(m, n, k)
                    .trans_a(Transpose::from_bool(ta))
                    .beta(beta)
                    .parallelism(Parallelism::Threads(threads));
                let (_, b, mut c) = operands(&g, 1, &mut || rng.small_int());
                if beta == 0.0 {
                    c.data.iter_mut().for_each(|x| *x = f32::NAN);
                }
                let g = g.lda(a.ld).ldb(b.ld).ldc(c.ld);
                let (want, mag) = reference(&g, &a, &b, &c);
                g.run_packed_with(&packed, &b.data, &mut c.data, &Epilogue::default())
                    .unwrap_or_else(|err| panic!("{g:?}: {err}"));
                check(&g, &c, &want, &mag, true, &format!("packed {g:?}"));
                // With an epilogue: what the unpacked product gives.
                let bias: Vec<f32> = (0..m).map(|_| rng.small_int()).collect();
                let epi = Epilogue {
                    row_bias: Some(&bias),
                    residual: None,
                    relu: true,
                };
                let (mut x, mut y) = (c.data.clone(), c.data.clone());
                g.run_packed_with(&packed, &b.data, &mut x, &epi).unwrap();
                g.run_with(&a.data, &b.data, &mut y, &epi).unwrap();
                assert!(
                    x.iter()
                        .zip(&y)
                        .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())),
                    "packed {g:?} with an epilogue"
                );
            }
            // Another shape, or a column-major C: errors.
            let mut c = vec![0.0; m * 3];
            let b = vec![0.0; (k + 1) * 3];
            let e = Epilogue::default();
            assert!(
                Gemm::new(m, 3, k + 1)
                    .run_packed_with(&packed, &b, &mut c, &e)
                    .is_err()
            );
            assert!(
                Gemm::new(m, 3, k)
                    .layout(Layout::ColMajor)
                    .run_packed_with(&packed, &b, &mut c, &e)
                    .is_err()
            );
        }
    }
}
