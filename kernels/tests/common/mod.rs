//! Test helpers: a seeded generator, an f64 reference GEMM, and buffers with
//! NaN-poisoned padding.
#![allow(dead_code)]

use bigdl_kernels::gemm::{Gemm, Layout, Transpose};

/// SplitMix64: small, seedable, good enough for test data.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `BIGDL_TEST_SEED` or the clock; prints the seed so
    /// a failure can be replayed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("BIGDL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: BIGDL_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Uniform in [-1, 1).
    pub fn float(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// An integer in -4..=4, as f32.
    pub fn small_int(&mut self) -> f32 {
        self.range(0, 8) as f32 - 4.0
    }
}

/// A stored operand: `rows x cols` as used, plus how it sits in memory.
pub struct Operand {
    pub data: Vec<f32>,
    pub ld: usize,
    rows: usize,
    cols: usize,
    trans: bool,
    layout: Layout,
}

/// Where element `(i, j)` of `op(X)` lives in the buffer.
fn index(layout: Layout, trans: bool, ld: usize, i: usize, j: usize) -> usize {
    let (r, c) = if trans { (j, i) } else { (i, j) };
    match layout {
        Layout::RowMajor => r * ld + c,
        Layout::ColMajor => r + c * ld,
    }
}

impl Operand {
    /// `op(X)` of `rows x cols`, stored with `pad` extra elements per line, every
    /// padding element NaN, values from `fill`. The buffer is exactly as long as
    /// the shape needs, so stray reads past the end are out of bounds.
    pub fn new(
        layout: Layout,
        trans: bool,
        rows: usize,
        cols: usize,
        pad: usize,
        fill: &mut dyn FnMut() -> f32,
    ) -> Operand {
        let (sr, sc) = if trans { (cols, rows) } else { (rows, cols) };
        let (lines, len) = match layout {
            Layout::RowMajor => (sr, sc),
            Layout::ColMajor => (sc, sr),
        };
        let ld = len.max(1) + pad;
        let total = if lines == 0 || len == 0 {
            0
        } else {
            (lines - 1) * ld + len
        };
        let mut data = vec![f32::NAN; total];
        for i in 0..rows {
            for j in 0..cols {
                data[index(layout, trans, ld, i, j)] = fill();
            }
        }
        Operand {
            data,
            ld,
            rows,
            cols,
            trans,
            layout,
        }
    }

    pub fn at(&self, i: usize, j: usize) -> f32 {
        assert!(i < self.rows && j < self.cols);
        self.data[index(self.layout, self.trans, self.ld, i, j)]
    }
}

/// The f64 reference `alpha * op(A) op(B) + beta * C` and, per element, the sum of
/// absolute values of its terms (for the error bound).
pub fn reference(g: &Gemm, a: &Operand, b: &Operand, c: &Operand) -> (Vec<f64>, Vec<f64>) {
    let (mut out, mut mag) = (vec![0.0; g.m * g.n], vec![0.0; g.m * g.n]);
    for i in 0..g.m {
        for j in 0..g.n {
            let (mut s, mut s_abs) = (0.0f64, 0.0f64);
            for p in 0..g.k {
                let t = a.at(i, p) as f64 * b.at(p, j) as f64;
                s += t;
                s_abs += t.abs();
            }
            let alpha = g.alpha as f64;
            let old = if g.beta == 0.0 {
                0.0
            } else {
                g.beta as f64 * c.at(i, j) as f64
            };
            out[i * g.n + j] = alpha * s + old;
            mag[i * g.n + j] = alpha.abs() * s_abs + old.abs();
        }
    }
    (out, mag)
}

/// Checks `c` against the reference: every element within `2 (k + 2) eps * mag`
/// (exact when `exact`), every padding element of `C` still NaN-poisoned.
pub fn check(g: &Gemm, c: &Operand, want: &[f64], mag: &[f64], exact: bool, what: &str) {
    let eps = f32::EPSILON as f64;
    for i in 0..g.m {
        for j in 0..g.n {
            let got = c.at(i, j) as f64;
            let (w, tol) = (
                want[i * g.n + j],
                2.0 * (g.k as f64 + 2.0) * eps * mag[i * g.n + j],
            );
            let ok = if exact {
                got == w
            } else {
                (got - w).abs() <= tol
            };
            assert!(
                ok,
                "{what}: C[{i},{j}] = {got}, want {w} (tol {tol}, exact {exact})"
            );
        }
    }
    let mut valid = vec![false; c.data.len()];
    for i in 0..g.m {
        for j in 0..g.n {
            valid[index(c.layout, false, c.ld, i, j)] = true;
        }
    }
    for (x, v) in c.data.iter().zip(valid) {
        assert!(
            v || x.is_nan(),
            "{what}: a padding element of C was written"
        );
    }
}

/// Builds operands for `g` with `pad` extra elements per line.
pub fn operands(
    g: &Gemm,
    pad: usize,
    fill: &mut dyn FnMut() -> f32,
) -> (Operand, Operand, Operand) {
    let ta = g.trans_a == Transpose::Yes;
    let tb = g.trans_b == Transpose::Yes;
    let a = Operand::new(g.layout, ta, g.m, g.k, pad, fill);
    let b = Operand::new(g.layout, tb, g.k, g.n, pad, fill);
    let c = Operand::new(g.layout, false, g.m, g.n, pad, fill);
    (a, b, c)
}
