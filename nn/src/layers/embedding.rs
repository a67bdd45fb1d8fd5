//! `LookupTable`: embeddings.

use bigdl_tensor::Tensor;

use crate::activity::Activity;
use crate::error::{Result, invalid};
use crate::io::Spec;
use crate::module::{Module, init_generator};

/// Embeddings: input of (0-based) indices of any shape, stored as floats
/// holding integers; output the input's shape plus `dim`, row `i` of the
/// `[n, dim]` weight for index `i`. Initialised `N(0, 1)` as Torch7. There is
/// no gradient with respect to the indices: the input gradient is zero.
#[derive(Clone, Debug)]
pub struct LookupTable {
    name: String,
    n: usize,
    dim: usize,
    weight: Tensor<f32>,
    grad_weight: Tensor<f32>,
}

impl LookupTable {
    /// `n` embeddings of `dim` values.
    pub fn new(n: usize, dim: usize) -> Result<LookupTable> {
        let mut g = init_generator();
        Ok(LookupTable {
            name: format!("LookupTable({n}, {dim})"),
            n,
            dim,
            weight: Tensor::normal(&[n, dim], 0.0, 1.0, &mut g)?,
            grad_weight: Tensor::zeros(&[n, dim])?,
        })
    }

    /// The weight, `[n, dim]`.
    pub fn weight(&self) -> &Tensor<f32> {
        &self.weight
    }

    fn indices(&self, input: &Activity) -> Result<(Vec<usize>, Vec<usize>)> {
        let x = input.tensor(&self.name)?;
        let mut idx = Vec::with_capacity(x.numel());
        for v in x.to_vec() {
            if !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < self.n) {
                return Err(invalid(
                    &self.name,
                    format!("index {v} is not an integer in 0..{}", self.n),
                ));
            }
            idx.push(v as usize);
        }
        Ok((idx, x.sizes().to_vec()))
    }
}

impl Module for LookupTable {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let (idx, mut sizes) = self.indices(input)?;
        let w = self.weight.as_slice()?;
        let mut y = Vec::with_capacity(idx.len() * self.dim);
        for i in idx {
            y.extend_from_slice(&w[i * self.dim..(i + 1) * self.dim]);
        }
        sizes.push(self.dim);
        Ok(Tensor::from_vec(y, &sizes)?.into())
    }

    fn update_grad_input(&mut self, input: &Activity, _grad_output: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.name)?;
        Ok(Tensor::<f32>::zeros(x.sizes())?.into())
    }

    fn acc_grad_parameters(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        let (idx, mut sizes) = self.indices(input)?;
        sizes.push(self.dim);
        let gy = grad_output.tensor(&self.name)?;
        crate::module::same_shape(&self.name, gy, &sizes)?;
        let gy = gy.contiguous();
        let gy = gy.as_slice()?;
        let mut gw = self.grad_weight.as_slice_mut()?;
        for (k, &i) in idx.iter().enumerate() {
            gw[i * self.dim..(i + 1) * self.dim]
                .iter_mut()
                .zip(&gy[k * self.dim..(k + 1) * self.dim])
                .for_each(|(w, &g)| *w += scale * g);
        }
        Ok(())
    }

    fn visit_parameters(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
        f(&mut self.weight, &mut self.grad_weight);
    }

    fn spec(&self) -> Option<Spec> {
        Some(
            Spec::new("LookupTable")
                .int("n", self.n)
                .int("dim", self.dim),
        )
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}
