//! Normalisation and regularisation kernels in NCHW: batch normalisation
//! (spatial and not, training and inference), local response normalisation
//! across channels (AlexNet, Inception), and dropout with a seeded mask.
//!
//! Batch-norm statistics accumulate in `f64`; LRN runs in `f32`.

use rayon::prelude::*;

use crate::elementwise::{self, Unary};
use crate::error::{KernelError, Result, check_lens as check};
use crate::pool;

/// Batch normalisation over `batch x channels x spatial` (spatial = H * W; 1 for
/// the non-spatial `BatchNormalization` of a `batch x channels` input).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    /// N.
    pub batch: usize,
    /// C.
    pub channels: usize,
    /// H * W (1 when not spatial).
    pub spatial: usize,
    /// Added to the variance before the square root.
    pub eps: f32,
    /// Weight of the new batch in the running statistics (Torch: 0.1).
    pub momentum: f32,
}

/// Per-channel statistics a training-mode forward saves for the backward pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchNormSaved {
    /// Batch mean per channel.
    pub mean: Vec<f32>,
    /// 1 / sqrt(biased batch variance + eps) per channel.
    pub invstd: Vec<f32>,
}

impl BatchNorm {
    fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    fn parallel(&self) -> bool {
        self.len() >= 1 << 16 && pool::num_threads() > 1 && !pool::in_worker()
    }

    /// Per channel, the sums of `f(channel, run)` over the channel's runs (in
    /// parallel over channels for large inputs).
    fn channel_sums(
        &self,
        f: impl Fn(usize, std::ops::Range<usize>) -> [f64; 2] + Sync,
    ) -> Vec<[f64; 2]> {
        let one = |c: usize| {
            (0..self.batch).fold([0.0; 2], |acc, n| {
                let start = (n * self.channels + c) * self.spatial;
                let v = f(c, start..start + self.spatial);
                [acc[0] + v[0], acc[1] + v[1]]
            })
        };
        if self.parallel() {
            pool::install(|| (0..self.channels).into_par_iter().map(one).collect())
        } else {
            // The same sums as `one`'s, in memory order: the prefetchers
            // follow one stream instead of jumping an image between a
            // channel's runs (`one` keeps each thread on its channels).
            let mut acc = vec![[0.0; 2]; self.channels];
            for n in 0..self.batch {
                for (c, a) in acc.iter_mut().enumerate() {
                    let start = (n * self.channels + c) * self.spatial;
                    let v = f(c, start..start + self.spatial);
                    *a = [a[0] + v[0], a[1] + v[1]];
                }
            }
            acc
        }
    }

    /// Calls `f(channel, start, out_run)` for every run of `out` (in parallel
    /// for large inputs).
    fn map_runs(&self, out: &mut [f32], f: impl Fn(usize, usize, &mut [f32]) + Sync) {
        let (s, c) = (self.spatial.max(1), self.channels.max(1));
        if self.parallel() {
            pool::install(|| {
                out.par_chunks_mut(s)
                    .enumerate()
                    .for_each(|(k, run)| f(k % c, k * s, run))
            });
        } else {
            out.chunks_mut(s)
                .enumerate()
                .for_each(|(k, run)| f(k % c, k * s, run));
        }
    }

    fn check_params(
        &self,
        op: &'static str,
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
    ) -> Result<()> {
        for (name, p) in [("gamma", gamma), ("beta", beta)] {
            if let Some(p) = p {
                check(op, &[(name, p.len(), self.channels)])?;
            }
        }
        Ok(())
    }

    /// Training mode: normalise with the batch statistics, update the running
    /// statistics (running variance unbiased, as Torch), return what the
    /// backward pass needs. The variance is `E[x^2] - mean^2` over f64 sums: one
    /// pass over the data, exact enough unless |mean| / std exceeds about 1e6.
    #[allow(clippy::too_many_arguments)] // mirrors the layer's state
    pub fn forward_train(
        &self,
        x: &[f32],
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        y: &mut [f32],
        running_mean: &mut [f32],
        running_var: &mut [f32],
    ) -> Result<BatchNormSaved> {
        const OP: &str = "batchnorm_forward_train";
        let c = self.channels;
        check(
            OP,
            &[("x", x.len(), self.len()), ("y", y.len(), self.len())],
        )?;
        check(
            OP,
            &[
                ("running_mean", running_mean.len(), c),
                ("running_var", running_var.len(), c),
            ],
        )?;
        self.check_params(OP, gamma, beta)?;
        let m = (self.batch * self.spatial) as f64;
        if m == 0.0 {
            return Err(KernelError::InvalidArgument {
                op: OP,
                what: "empty batch".into(),
            });
        }
        // One pass: sum and sum of squares in f64 (exact enough: f32 inputs,
        // f64 accumulators), var = E[x^2] - mean^2.
        let sums = self.channel_sums(|_, r| {
            x[r].iter().fold([0.0, 0.0], |a, &v| {
                [a[0] + v as f64, a[1] + v as f64 * v as f64]
            })
        });
        let mean: Vec<f64> = sums.iter().map(|s| s[0] / m).collect();
        let var: Vec<f64> = sums
            .iter()
            .zip(&mean)
            .map(|(s, mu)| (s[1] / m - mu * mu).max(0.0))
            .collect();
        let invstd: Vec<f64> = var
            .iter()
            .map(|v| 1.0 / (v + self.eps as f64).sqrt())
            .collect();
        // y = x * scale + shift per channel, in f32 so the loop vectorises.
        let (scale, shift): (Vec<f32>, Vec<f32>) = (0..c)
            .map(|ch| {
                let g = gamma.map_or(1.0, |g| g[ch]) as f64;
                let b = beta.map_or(0.0, |b| b[ch]) as f64;
                (
                    (invstd[ch] * g) as f32,
                    (b - mean[ch] * invstd[ch] * g) as f32,
                )
            })
            .unzip();
        self.map_runs(y, |ch, start, run| {
            for (yi, &xi) in run.iter_mut().zip(&x[start..]) {
                *yi = xi * scale[ch] + shift[ch];
            }
        });
        let mom = self.momentum as f64;
        for ch in 0..c {
            let unbiased = if m > 1.0 {
                var[ch] * m / (m - 1.0)
            } else {
                var[ch]
            };
            running_mean[ch] = ((1.0 - mom) * running_mean[ch] as f64 + mom * mean[ch]) as f32;
            running_var[ch] = ((1.0 - mom) * running_var[ch] as f64 + mom * unbiased) as f32;
        }
        Ok(BatchNormSaved {
            mean: mean.iter().map(|&v| v as f32).collect(),
            invstd: invstd.iter().map(|&v| v as f32).collect(),
        })
    }

    /// Inference mode: normalise with the running statistics.
    pub fn forward_infer(
        &self,
        x: &[f32],
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        running_mean: &[f32],
        running_var: &[f32],
        y: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "batchnorm_forward_infer";
        let c = self.channels;
        check(
            OP,
            &[("x", x.len(), self.len()), ("y", y.len(), self.len())],
        )?;
        check(
            OP,
            &[
                ("running_mean", running_mean.len(), c),
                ("running_var", running_var.len(), c),
            ],
        )?;
        self.check_params(OP, gamma, beta)?;
        self.map_runs(y, |ch, start, run| {
            let inv = 1.0 / (running_var[ch] + self.eps).sqrt();
            let scale = inv * gamma.map_or(1.0, |g| g[ch]);
            let shift = beta.map_or(0.0, |b| b[ch]) - running_mean[ch] * scale;
            for (yi, &xi) in run.iter_mut().zip(&x[start..]) {
                *yi = xi * scale + shift;
            }
        });
        Ok(())
    }

    /// Training-mode backward: `grad_x` (overwritten) and, if given,
    /// `grad_gamma`, `grad_beta` (accumulated).
    #[allow(clippy::too_many_arguments)] // mirrors the layer's state
    pub fn backward(
        &self,
        x: &[f32],
        grad_y: &[f32],
        gamma: Option<&[f32]>,
        saved: &BatchNormSaved,
        grad_x: &mut [f32],
        grad_gamma: Option<&mut [f32]>,
        grad_beta: Option<&mut [f32]>,
    ) -> Result<()> {
        const OP: &str = "batchnorm_backward";
        let c = self.channels;
        check(
            OP,
            &[
                ("x", x.len(), self.len()),
                ("grad_y", grad_y.len(), self.len()),
                ("grad_x", grad_x.len(), self.len()),
            ],
        )?;
        check(
            OP,
            &[
                ("saved.mean", saved.mean.len(), c),
                ("saved.invstd", saved.invstd.len(), c),
            ],
        )?;
        self.check_params(OP, gamma, None)?;
        let m = (self.batch * self.spatial) as f64;
        // dbeta = sum gy, dgamma = sum gy * xhat, per channel.
        let acc =
            self.channel_sums(|ch, r| run_grad_sums(&grad_y[r.clone()], &x[r], saved.mean[ch]));
        let dbeta: Vec<f64> = acc.iter().map(|a| a[0]).collect();
        let dgamma: Vec<f64> = acc
            .iter()
            .zip(&saved.invstd)
            .map(|(a, &inv)| a[1] * inv as f64)
            .collect();
        // gx = g inv / m (m gy - dbeta - xhat dgamma) = k1 gy + k2 + k3 (x - mu).
        let k: Vec<[f32; 4]> = (0..c)
            .map(|ch| {
                let (inv, g) = (saved.invstd[ch] as f64, gamma.map_or(1.0, |g| g[ch]) as f64);
                let k1 = g * inv;
                [
                    k1 as f32,
                    (-k1 * dbeta[ch] / m) as f32,
                    (-k1 * inv * dgamma[ch] / m) as f32,
                    saved.mean[ch],
                ]
            })
            .collect();
        self.map_runs(grad_x, |ch, start, run| {
            let [k1, k2, k3, mu] = k[ch];
            for ((gx, &gy), &xi) in run.iter_mut().zip(&grad_y[start..]).zip(&x[start..]) {
                *gx = k1 * gy + k2 + k3 * (xi - mu);
            }
        });
        for (grad, acc) in [(grad_gamma, &dgamma), (grad_beta, &dbeta)] {
            if let Some(grad) = grad {
                check(OP, &[("grad_gamma/beta", grad.len(), c)])?;
                grad.iter_mut().zip(acc).for_each(|(g, &a)| *g += a as f32);
            }
        }
        Ok(())
    }
}

/// `(Σ gy, Σ gy (x - mu))` over one run: in 16 f32 lanes per sum, which
/// the compiler vectorises (an f64 running sum is a chain of dependent adds,
/// one per element), the lanes then added in f64.
fn run_grad_sums(gy: &[f32], x: &[f32], mu: f32) -> [f64; 2] {
    const L: usize = 16;
    let (mut a, mut b) = ([0.0f32; L], [0.0f32; L]);
    let (gc, xc) = (gy.chunks_exact(L), x.chunks_exact(L));
    let (gt, xt) = (gc.remainder(), xc.remainder());
    for (g, x) in gc.zip(xc) {
        for l in 0..L {
            a[l] += g[l];
            b[l] += g[l] * (x[l] - mu);
        }
    }
    let mut out = [0.0f64; 2];
    for l in 0..L {
        out[0] += a[l] as f64;
        out[1] += b[l] as f64;
    }
    for (&g, &x) in gt.iter().zip(xt) {
        out[0] += g as f64;
        out[1] += g as f64 * (x as f64 - mu as f64);
    }
    out
}

/// Local response normalisation across channels:
/// `y = x / (k + alpha / size * sum_{c' in window(c)} x_{c'}^2)^beta`, the window
/// holding channels `c - (size - 1) / 2 ..= c + size / 2` (Torch, Caffe).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lrn {
    /// N.
    pub batch: usize,
    /// C.
    pub channels: usize,
    /// H * W.
    pub spatial: usize,
    /// Channels per window.
    pub size: usize,
    /// Scale of the sum of squares.
    pub alpha: f32,
    /// Exponent.
    pub beta: f32,
    /// Additive constant.
    pub k: f32,
}

impl Lrn {
    fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    fn check_size(&self, op: &'static str) -> Result<()> {
        if self.size == 0 {
            return Err(KernelError::InvalidArgument {
                op,
                what: "window size 0".into(),
            });
        }
        Ok(())
    }

    fn window(&self, c: usize) -> std::ops::Range<usize> {
        let lo = c.saturating_sub((self.size - 1) / 2);
        let hi = (c + self.size / 2 + 1).min(self.channels);
        lo..hi
    }

    /// Whether to split the images over the pool.
    fn parallel(&self) -> bool {
        self.len() >= 1 << 16 && self.batch > 1 && pool::num_threads() > 1 && !pool::in_worker()
    }

    /// Calls `f(image_in..., image_out...)` for every image, in parallel over
    /// images for large inputs. `ins` and `outs` hold whole batches.
    fn per_image<const I: usize, const O: usize>(
        &self,
        ins: [&[f32]; I],
        outs: [&mut [f32]; O],
        f: impl Fn([&[f32]; I], [&mut [f32]; O]) + Sync,
    ) {
        let cs = self.channels * self.spatial;
        if cs == 0 {
            return;
        }
        let image = |n: usize, outs: [&mut [f32]; O]| f(ins.map(|x| &x[n * cs..][..cs]), outs);
        let mut outs = outs.map(|o| o.chunks_mut(cs));
        let per: Vec<[&mut [f32]; O]> = (0..self.batch)
            .map(|_| std::array::from_fn(|k| outs[k].next().expect("checked lengths")))
            .collect();
        if self.parallel() {
            pool::install(|| {
                per.into_par_iter()
                    .enumerate()
                    .for_each(|(n, o)| image(n, o))
            });
        } else {
            per.into_iter().enumerate().for_each(|(n, o)| image(n, o));
        }
    }

    /// Forward; `scale` receives the denominators' bases
    /// `k + alpha / size * sum(x^2 over the window)` for the backward pass.
    /// Computed in `f32`, vectorised, in parallel over images.
    pub fn forward(&self, x: &[f32], y: &mut [f32], scale: &mut [f32]) -> Result<()> {
        const OP: &str = "lrn_forward";
        self.check_size(OP)?;
        check(
            OP,
            &[
                ("x", x.len(), self.len()),
                ("y", y.len(), self.len()),
                ("scale", scale.len(), self.len()),
            ],
        )?;
        let s = self.spatial;
        let (a, k) = (self.alpha / self.size as f32, self.k);
        self.per_image([x], [y, scale], |[x], [y, scale]| {
            for c in 0..self.channels {
                let sc = &mut scale[c * s..][..s];
                sc.fill(0.0);
                for cc in self.window(c) {
                    sc.iter_mut()
                        .zip(&x[cc * s..][..s])
                        .for_each(|(acc, &v)| *acc += v * v);
                }
                sc.iter_mut().for_each(|v| *v = k + a * *v);
                let yc = &mut y[c * s..][..s];
                self.pow_neg_beta(sc, yc);
                yc.iter_mut()
                    .zip(&x[c * s..][..s])
                    .for_each(|(y, &x)| *y *= x);
            }
        });
        Ok(())
    }

    /// `out = base^-beta`, as `exp(-beta ln base)` with the vector kernels.
    fn pow_neg_beta(&self, base: &[f32], out: &mut [f32]) {
        elementwise::unary(Unary::Log, base, out).expect("equal lengths");
        elementwise::scale(-self.beta, out);
        elementwise::unary_inplace(Unary::Exp, out);
    }

    /// Backward (`grad_x` overwritten), from the forward's `x`, `y` and `scale`:
    /// `gx_c = gy_c scale_c^-beta - 2 alpha beta / size * x_c * sum over the
    /// channels d whose window holds c of gy_d y_d / scale_d`. Vectorised, in
    /// parallel over images; each task allocates one image of scratch.
    pub fn backward(
        &self,
        x: &[f32],
        y: &[f32],
        scale: &[f32],
        grad_y: &[f32],
        grad_x: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "lrn_backward";
        self.check_size(OP)?;
        let l = self.len();
        check(
            OP,
            &[
                ("x", x.len(), l),
                ("y", y.len(), l),
                ("scale", scale.len(), l),
                ("grad_y", grad_y.len(), l),
                ("grad_x", grad_x.len(), l),
            ],
        )?;
        let s = self.spatial;
        let coef = 2.0 * self.alpha * self.beta / self.size as f32;
        self.per_image(
            [x, y, scale, grad_y],
            [grad_x],
            |[x, y, scale, gy], [gx]| {
                // ratio = gy * y / scale, the terms every window sums.
                let ratio: Vec<f32> = gy
                    .iter()
                    .zip(y)
                    .zip(scale)
                    .map(|((&g, &y), &s)| g * y / s)
                    .collect();
                for c in 0..self.channels {
                    let g = &mut gx[c * s..][..s];
                    self.pow_neg_beta(&scale[c * s..][..s], g);
                    g.iter_mut()
                        .zip(&gy[c * s..][..s])
                        .for_each(|(g, &d)| *g *= d);
                    // Channels whose window contains c.
                    let lo = c.saturating_sub(self.size / 2);
                    let hi = (c + (self.size - 1) / 2 + 1).min(self.channels);
                    let xc = &x[c * s..][..s];
                    for d in lo..hi {
                        g.iter_mut()
                            .zip(xc)
                            .zip(&ratio[d * s..][..s])
                            .for_each(|((g, &x), &r)| *g -= coef * x * r);
                    }
                }
            },
        );
        Ok(())
    }
}

/// Inverted dropout with a seeded, counter-based mask: element `i` is kept with
/// probability `1 - p` and scaled by `1 / (1 - p)`. The mask depends only on
/// `(seed, offset + i)`, so it is the same for any thread count and can be
/// regenerated. `mask` receives each element's multiplier for the backward pass
/// (`grad_x = grad_y * mask`).
pub fn dropout_forward(
    x: &[f32],
    y: &mut [f32],
    mask: &mut [f32],
    p: f32,
    seed: u64,
    offset: u64,
) -> Result<()> {
    const OP: &str = "dropout_forward";
    check(
        OP,
        &[("y", y.len(), x.len()), ("mask", mask.len(), x.len())],
    )?;
    if !(0.0..1.0).contains(&p) {
        return Err(KernelError::InvalidArgument {
            op: OP,
            what: format!("drop probability {p} outside [0, 1)"),
        });
    }
    let keep = 1.0 / (1.0 - p);
    for (i, ((xi, yi), mi)) in x.iter().zip(y.iter_mut()).zip(mask.iter_mut()).enumerate() {
        let u = (mix(seed, offset.wrapping_add(i as u64)) >> 40) as f32 / (1u64 << 24) as f32;
        *mi = if u < p { 0.0 } else { keep };
        *yi = xi * *mi;
    }
    Ok(())
}

/// SplitMix64's finaliser over `(seed, index)`.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ i.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
