//! `Reshape`: BigDL's batch-aware reshape.

use bigdl_tensor::Tensor;

use crate::activity::Activity;
use crate::error::{Result, shape};
use crate::io::Spec;
use crate::module::Module;

/// Reshapes to `sizes`, or to `[N] + sizes` when the input has a leading
/// batch dimension (BigDL's `Reshape`: an input of exactly `prod(sizes)`
/// elements is taken as one sample). Copies only if the input is not
/// contiguous.
#[derive(Clone, Debug)]
pub struct Reshape {
    name: String,
    sizes: Vec<usize>,
    batched: bool,
}

impl Reshape {
    /// Reshape each sample to `sizes`.
    pub fn new(sizes: &[usize]) -> Reshape {
        Reshape {
            name: format!("Reshape({sizes:?})"),
            sizes: sizes.to_vec(),
            batched: false,
        }
    }

    /// Always `[N] + sizes` (BigDL's `batchMode = true`): a batch of one
    /// stays a batch, where [`Reshape::new`] would take it for one sample.
    pub fn batched(sizes: &[usize]) -> Reshape {
        Reshape {
            name: format!("Reshape([N] + {sizes:?})"),
            sizes: sizes.to_vec(),
            batched: true,
        }
    }

    fn target(&self, x: &Tensor<f32>) -> Result<Vec<usize>> {
        let per: usize = self.sizes.iter().product();
        let n = x.numel();
        if n == per && !self.batched {
            Ok(self.sizes.clone())
        } else if x.dim() >= 1 && per > 0 && x.sizes()[0] * per == n {
            Ok([&[x.sizes()[0]][..], &self.sizes].concat())
        } else {
            Err(shape(
                &self.name,
                format!("{per} elements per sample ([N, ...] or one sample)"),
                x.sizes(),
            ))
        }
    }
}

impl Module for Reshape {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.name)?;
        let to = self.target(x)?;
        Ok(x.contiguous().view(&to)?.into())
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.name)?;
        let gy = grad_output.tensor(&self.name)?;
        crate::module::same_shape(&self.name, gy, &self.target(x)?)?;
        Ok(gy.contiguous().view(x.sizes())?.into())
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }

    fn spec(&self) -> Option<Spec> {
        Some(
            Spec::new("Reshape")
                .ints("sizes", &self.sizes)
                .flag("batched", self.batched),
        )
    }
}
