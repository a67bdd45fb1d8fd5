//! Seeded random tensors.
//!
//! A [`Generator`] is counter-based: element `i` of a draw is a hash of
//! `(seed, counter + i)` (SplitMix64's finaliser), and each draw advances the
//! counter by the number of values it used. The same seed therefore gives the same
//! tensors on every run, platform and thread count, and the state is two integers
//! that a checkpoint can save and restore exactly.

use crate::element::{Element, Float};
use crate::error::{Result, invalid};
use crate::shape::numel;
use crate::tensor::Tensor;

/// A seeded, counter-based random number generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generator {
    /// The seed.
    pub seed: u64,
    /// Values drawn so far.
    pub counter: u64,
}

impl Generator {
    /// A generator at the start of `seed`'s stream.
    pub fn new(seed: u64) -> Generator {
        Generator { seed, counter: 0 }
    }

    /// The 64 random bits of value `i` of the stream.
    fn bits(&self, i: u64) -> u64 {
        let mut z = self
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(i.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn unit(&self, i: u64) -> f64 {
        (self.bits(i) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `n` values `f(i)` for consecutive stream indices, advancing the counter.
    fn draw<T: Element>(
        &mut self,
        n: usize,
        per_value: u64,
        f: impl Fn(&Generator, u64) -> T,
    ) -> Vec<T> {
        let start = self.counter;
        self.counter = self.counter.wrapping_add(n as u64 * per_value);
        (0..n as u64)
            .map(|i| f(self, start.wrapping_add(i * per_value)))
            .collect()
    }
}

impl<T: Float> Tensor<T> {
    /// Uniform in `[lo, hi)`.
    pub fn uniform(sizes: &[usize], lo: f64, hi: f64, g: &mut Generator) -> Result<Tensor<T>> {
        let ok = lo.is_finite() && hi.is_finite() && lo <= hi;
        if !ok {
            return Err(invalid("uniform", format!("bounds [{lo}, {hi})")));
        }
        let n = numel("uniform", sizes)?;
        Tensor::from_vec(
            g.draw(n, 1, |g, i| T::from_f64(lo + (hi - lo) * g.unit(i))),
            sizes,
        )
    }

    /// Normal with `mean` and standard deviation `std` (Box-Muller, two stream
    /// values per element).
    pub fn normal(sizes: &[usize], mean: f64, std: f64, g: &mut Generator) -> Result<Tensor<T>> {
        let ok = mean.is_finite() && std.is_finite() && std >= 0.0;
        if !ok {
            return Err(invalid("normal", format!("mean {mean}, std {std}")));
        }
        let n = numel("normal", sizes)?;
        let values = g.draw(n, 2, |g, i| {
            let u1 = 1.0 - g.unit(i); // (0, 1]: ln is finite
            let u2 = g.unit(i + 1);
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            T::from_f64(mean + std * z)
        });
        Tensor::from_vec(values, sizes)
    }

    /// 1 with probability `p`, else 0.
    pub fn bernoulli(sizes: &[usize], p: f64, g: &mut Generator) -> Result<Tensor<T>> {
        if !(0.0..=1.0).contains(&p) {
            return Err(invalid(
                "bernoulli",
                format!("probability {p} outside [0, 1]"),
            ));
        }
        let n = numel("bernoulli", sizes)?;
        Tensor::from_vec(
            g.draw(n, 1, |g, i| if g.unit(i) < p { T::ONE } else { T::ZERO }),
            sizes,
        )
    }
}
