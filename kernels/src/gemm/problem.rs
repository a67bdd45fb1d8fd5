//! A validated GEMM call as raw strided matrices, and its split over threads.

/// `C (m x n) = alpha * A (m x k) * B (k x n) + beta * C`, where element `(i, j)`
/// of `X` lives at `x + i * rsx + j * csx`.
///
/// Built only by [`super::Gemm`] after checking every element lies inside the
/// caller's slices, and only ever narrowed from there; `c` is exclusively
/// borrowed for the duration of the call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Problem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub beta: f32,
    pub a: *const f32,
    pub rsa: isize,
    pub csa: isize,
    pub b: *const f32,
    pub rsb: isize,
    pub csb: isize,
    pub c: *mut f32,
    pub rsc: isize,
    pub csc: isize,
    /// Element-wise work on the finished `C`.
    pub epi: Epi,
    /// `A` already packed ([`super::PackedA`]), or null: the panels of
    /// row `pa_row` on, in blocks of `k` of `pa_rows` rows each.
    pub pa: *const f32,
    pub pa_rows: usize,
    pub pa_row: usize,
}

/// The raw form of [`super::Epilogue`]: element `(i, j)` of `C` gets
/// `bias[i * bias_rs + j * bias_cs]` (unless `bias` is null) and
/// `res[i * rsc + j * csc]` (unless `res` is null, strides of `C`) added,
/// then `max(·, 0)` if `relu`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epi {
    pub bias: *const f32,
    pub bias_rs: isize,
    pub bias_cs: isize,
    pub res: *const f32,
    pub relu: bool,
}

impl Epi {
    /// Nothing to do.
    pub const NONE: Epi = Epi {
        bias: std::ptr::null(),
        bias_rs: 0,
        bias_cs: 0,
        res: std::ptr::null(),
        relu: false,
    };

    pub fn is_none(&self) -> bool {
        self.bias.is_null() && self.res.is_null() && !self.relu
    }
}

// SAFETY: a `Problem` is a view of memory borrowed for the call: slices (`&`,
// `&mut`), a packed `A`, or a `C` whose elements the caller gives it alone
// (`Gemm::run_with_raw`). It is shared across pool threads only as disjoint
// blocks of `C` (see `blocks`), and `A`/`B` are only read.
unsafe impl Send for Problem {}
// SAFETY: as above.
unsafe impl Sync for Problem {}

/// Flop-equivalents charged per packed element when choosing a thread grid: a
/// packed element costs about one cycle, in which a core does 32 FLOP.
const PACK_WEIGHT: usize = 32;

/// Below this many FLOP per thread (about 40 us of work), waking another thread
/// costs more than it saves: on this VM a 4.7 MFLOP product called between
/// serial work ran 2x slower on two threads than on one (`--example
/// caller_overhead`).
const MIN_FLOPS_PER_THREAD: usize = 1 << 22;

impl Problem {
    /// The same product with `C` transposed (`C^T = B^T A^T`), so that a
    /// column-major `C` becomes row-major.
    pub fn transposed(&self) -> Problem {
        debug_assert!(
            self.pa.is_null(),
            "a packed A is only used with a row-major C"
        );
        Problem {
            m: self.n,
            n: self.m,
            a: self.b,
            rsa: self.csb,
            csa: self.rsb,
            b: self.a,
            rsb: self.csa,
            csb: self.rsa,
            rsc: self.csc,
            csc: self.rsc,
            epi: Epi {
                bias_rs: self.epi.bias_cs,
                bias_cs: self.epi.bias_rs,
                ..self.epi
            },
            ..*self
        }
    }

    /// Oriented so that `C` has unit column stride where it can be.
    pub fn c_row_major(&self) -> Problem {
        if self.csc != 1 && self.rsc == 1 {
            self.transposed()
        } else {
            *self
        }
    }

    /// Rows `i0..i0+m` and columns `j0..j0+n` of `C`, with the matching rows of `A`
    /// and columns of `B`.
    ///
    /// # Safety
    /// The block must lie inside the problem (`i0 + m <= self.m`, `j0 + n <= self.n`).
    pub unsafe fn block(&self, i0: usize, m: usize, j0: usize, n: usize) -> Problem {
        debug_assert!(i0 + m <= self.m && j0 + n <= self.n);
        let (i0, j0) = (i0 as isize, j0 as isize);
        // SAFETY: the offsets address elements inside the validated matrices
        // (caller's contract); for empty blocks they are at most one past a row.
        unsafe {
            Problem {
                m,
                n,
                a: offset(self.a, i0 * self.rsa),
                b: self.b.offset(j0 * self.csb),
                c: self.c.offset(i0 * self.rsc + j0 * self.csc),
                pa_row: self.pa_row + i0 as usize,
                epi: Epi {
                    bias: offset(self.epi.bias, i0 * self.epi.bias_rs + j0 * self.epi.bias_cs),
                    res: offset(self.epi.res, i0 * self.rsc + j0 * self.csc),
                    ..self.epi
                },
                ..*self
            }
        }
    }

    /// Applies the epilogue to rows `i0..i0+m` and columns `j0..j0+n` of `C`.
    ///
    /// # Safety
    /// The block must lie inside the problem, whose `C` (and epilogue
    /// operands) describe valid matrices.
    pub unsafe fn apply_epi(&self, i0: usize, m: usize, j0: usize, n: usize) {
        let e = &self.epi;
        if e.is_none() {
            return;
        }
        for i in i0..i0 + m {
            let (i, j0) = (i as isize, j0 as isize);
            // SAFETY: (i, j0..j0+n) is inside C and the epilogue operands
            // (caller's contract); unit-stride rows are slices of them.
            unsafe {
                if self.csc == 1 && e.bias_cs == 0 {
                    let c = std::slice::from_raw_parts_mut(self.c.offset(i * self.rsc + j0), n);
                    let bias = if e.bias.is_null() {
                        0.0
                    } else {
                        *e.bias.offset(i * e.bias_rs)
                    };
                    let res = (!e.res.is_null())
                        .then(|| std::slice::from_raw_parts(e.res.offset(i * self.rsc + j0), n));
                    epi_row(c, bias, res, e.relu);
                    continue;
                }
                for j in j0..j0 + n as isize {
                    let at = i * self.rsc + j * self.csc;
                    let mut v = *self.c.offset(at);
                    if !e.bias.is_null() {
                        v += *e.bias.offset(i * e.bias_rs + j * e.bias_cs);
                    }
                    if !e.res.is_null() {
                        v += *e.res.offset(at);
                    }
                    *self.c.offset(at) = if e.relu { relu_f32(v) } else { v };
                }
            }
        }
    }

    /// `C = beta * C` (writes zeros without reading when `beta == 0`).
    ///
    /// # Safety
    /// `c`, `rsc`, `csc` must describe a writable `m x n` matrix.
    pub unsafe fn scale_c(&self) {
        if self.beta == 1.0 {
            return;
        }
        for i in 0..self.m {
            for j in 0..self.n {
                // SAFETY: (i, j) is inside the m x n matrix (caller's contract).
                unsafe {
                    let c = self.c.offset(i as isize * self.rsc + j as isize * self.csc);
                    *c = if self.beta == 0.0 {
                        0.0
                    } else {
                        self.beta * *c
                    };
                }
            }
        }
    }

    /// The thread grid `(tm, tn)` with `tm * tn <= max_threads` that minimises the
    /// per-thread cost (compute on tiles of `gm x gn`, plus packing of its own `A`
    /// rows and `B` columns); fewer threads for small products.
    pub fn thread_grid(&self, max_threads: usize, gm: usize, gn: usize) -> (usize, usize) {
        // Work: the FLOPs, or for thin products (a matrix-vector product)
        // the operands streamed through memory, whichever costs more.
        let work = (2 * self.m * self.n * self.k)
            .max(PACK_WEIGHT * self.k * (self.m + self.n))
            .max(1);
        let max = max_threads.min(work / MIN_FLOPS_PER_THREAD).max(1);
        let mut best = ((1, 1), usize::MAX);
        for tm in 1..=max {
            for tn in 1..=max / tm {
                let mb = round_up(self.m.div_ceil(tm), gm).min(round_up(self.m, gm));
                let nb = round_up(self.n.div_ceil(tn), gn).min(round_up(self.n, gn));
                let cost = 2 * mb * nb * self.k + PACK_WEIGHT * self.k * (mb + nb);
                // Strictly better only, so that ties keep fewer threads.
                if cost < best.1 {
                    best = ((tm, tn), cost);
                }
            }
        }
        best.0
    }

    /// Splits `C` into at most `tm x tn` disjoint blocks, rows in multiples of
    /// `gm` and columns in multiples of `gn` (except the last).
    pub fn blocks(&self, tm: usize, tn: usize, gm: usize, gn: usize) -> Vec<Problem> {
        let mb = round_up(self.m.div_ceil(tm.max(1)), gm).max(1);
        let nb = round_up(self.n.div_ceil(tn.max(1)), gn).max(1);
        let mut out = Vec::with_capacity(tm * tn);
        for i0 in (0..self.m).step_by(mb) {
            for j0 in (0..self.n).step_by(nb) {
                let (m, n) = (mb.min(self.m - i0), nb.min(self.n - j0));
                // SAFETY: i0 + m <= self.m and j0 + n <= self.n by construction.
                out.push(unsafe { self.block(i0, m, j0, n) });
            }
        }
        out
    }
}

/// `p + by`, a null `p` (no operand) staying null.
fn offset(p: *const f32, by: isize) -> *const f32 {
    if p.is_null() {
        p
    } else {
        p.wrapping_offset(by)
    }
}

/// `c = relu?(c + bias + res)` along a row.
fn epi_row(c: &mut [f32], bias: f32, res: Option<&[f32]>, relu: bool) {
    match (res, relu) {
        (Some(r), true) => c
            .iter_mut()
            .zip(r)
            .for_each(|(c, &r)| *c = relu_f32(*c + bias + r)),
        (Some(r), false) => c.iter_mut().zip(r).for_each(|(c, &r)| *c = *c + bias + r),
        (None, true) => c.iter_mut().for_each(|c| *c = relu_f32(*c + bias)),
        (None, false) => c.iter_mut().for_each(|c| *c += bias),
    }
}

/// `max(v, 0)` as the ReLU kernels compute it: NaN and -0 pass through.
#[inline(always)]
pub(crate) fn relu_f32(v: f32) -> f32 {
    if v < 0.0 { 0.0 } else { v }
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to.max(1)) * to.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bufs {
        a: Vec<f32>,
        b: Vec<f32>,
        c: Vec<f32>,
    }

    fn problem(m: usize, n: usize, k: usize, bufs: &mut Bufs) -> Problem {
        Problem {
            m,
            n,
            k,
            alpha: 1.0,
            beta: 0.0,
            a: bufs.a.as_ptr(),
            rsa: k as isize,
            csa: 1,
            b: bufs.b.as_ptr(),
            rsb: n as isize,
            csb: 1,
            c: bufs.c.as_mut_ptr(),
            rsc: n as isize,
            csc: 1,
            epi: Epi::NONE,
            pa: std::ptr::null(),
            pa_rows: 0,
            pa_row: 0,
        }
    }

    fn bufs(m: usize, n: usize, k: usize) -> Bufs {
        Bufs {
            a: vec![0.0; m * k],
            b: vec![0.0; k * n],
            c: vec![0.0; m * n],
        }
    }

    #[test]
    fn grid_splits_the_cheaper_side() {
        // Few rows, many columns: split the columns, so A (small) is packed twice.
        let grid = |m, n, k, t| problem(m, n, k, &mut bufs(m, n, k)).thread_grid(t, 12, 32);
        assert_eq!(grid(64, 3136, 576, 2), (1, 2));
        // Many rows, few columns: split the rows.
        assert_eq!(grid(512, 49, 4608, 2), (2, 1));
        // Tiny products stay on one thread.
        assert_eq!(grid(6, 576, 25, 2), (1, 1));
        // A matrix-vector product streams its matrix: split it (ResNet-50's
        // classifier at batch 1, 2048 -> 1000: 0.54 -> 0.3 ms on two threads).
        assert_eq!(grid(1, 1000, 2048, 2), (1, 2));
        assert_eq!(grid(512, 512, 512, 1), (1, 1));
        let (tm, tn) = grid(512, 512, 512, 4);
        assert_eq!(tm * tn, 4);
    }

    #[test]
    fn blocks_tile_c_exactly() {
        for (m, n, tm, tn) in [
            (100, 70, 2, 1),
            (5, 300, 1, 3),
            (37, 41, 2, 2),
            (1, 1, 2, 2),
        ] {
            let mut bufs = bufs(m, n, 8);
            let p = problem(m, n, 8, &mut bufs);
            let mut hit = vec![0u8; m * n];
            for b in p.blocks(tm, tn, 12, 32) {
                let off = (b.c as usize - p.c as usize) / 4;
                for i in 0..b.m {
                    for j in 0..b.n {
                        hit[off + i * n + j] += 1;
                    }
                }
            }
            assert!(hit.iter().all(|&h| h == 1), "{m}x{n} over {tm}x{tn}");
        }
    }
}
