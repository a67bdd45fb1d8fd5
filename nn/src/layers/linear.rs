//! `Linear`: `y = x W^T + b`.

use bigdl_tensor::Tensor;
use bigdl_tensor::kernels::gemm::{Gemm, Transpose};

use crate::activity::Activity;
use crate::error::Result;
use crate::io::Spec;
use crate::module::{Module, batched, init_generator, same_shape, uniform_init};

/// Fully connected layer: input `[N, in]` (or `[in]`), output `[N, out]`;
/// weight `[out, in]`, bias `[out]` (optional). Initialised as Torch7 and
/// BigDL do: `U(-1/sqrt(in), 1/sqrt(in))` for both.
#[derive(Clone, Debug)]
pub struct Linear {
    name: String,
    in_features: usize,
    out_features: usize,
    weight: Tensor<f32>,
    bias: Option<Tensor<f32>>,
    grad_weight: Tensor<f32>,
    grad_bias: Option<Tensor<f32>>,
}

impl Linear {
    /// A layer from `in_features` to `out_features` with a bias.
    pub fn new(in_features: usize, out_features: usize) -> Result<Linear> {
        let mut g = init_generator();
        Ok(Linear {
            name: format!("Linear({in_features} -> {out_features})"),
            in_features,
            out_features,
            weight: uniform_init(&[out_features, in_features], in_features, &mut g)?,
            bias: Some(uniform_init(&[out_features], in_features, &mut g)?),
            grad_weight: Tensor::zeros(&[out_features, in_features])?,
            grad_bias: Some(Tensor::zeros(&[out_features])?),
        })
    }

    /// The same layer without a bias.
    pub fn without_bias(mut self) -> Linear {
        self.bias = None;
        self.grad_bias = None;
        self
    }

    /// The weight, `[out, in]`.
    pub fn weight(&self) -> &Tensor<f32> {
        &self.weight
    }

    /// The bias, `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor<f32>> {
        self.bias.as_ref()
    }

    fn input(&self, input: &Activity) -> Result<(Tensor<f32>, bool)> {
        let (x, added) = batched(&self.name, input, 2, &|| {
            format!("[N, {0}] or [{0}]", self.in_features)
        })?;
        if x.sizes()[1] != self.in_features {
            let got = input.tensor(&self.name)?.sizes().to_vec();
            return Err(crate::error::shape(
                &self.name,
                format!("[N, {0}] or [{0}]", self.in_features),
                &got,
            ));
        }
        Ok((x, added))
    }

    fn out_sizes(&self, n: usize, added: bool) -> Vec<usize> {
        if added {
            vec![self.out_features]
        } else {
            vec![n, self.out_features]
        }
    }

    fn grad_output(&self, grad_output: &Activity, n: usize, added: bool) -> Result<Tensor<f32>> {
        let gy = grad_output.tensor(&self.name)?;
        same_shape(&self.name, gy, &self.out_sizes(n, added))?;
        Ok(gy.contiguous())
    }
}

impl Module for Linear {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let (x, added) = self.input(input)?;
        let (n, o) = (x.sizes()[0], self.out_features);
        let mut y = vec![0.0f32; n * o];
        Gemm::new(n, o, self.in_features)
            .trans_b(Transpose::Yes)
            .run(&x.as_slice()?, &self.weight.as_slice()?, &mut y)?;
        if let Some(b) = &self.bias {
            let b = b.as_slice()?;
            for row in y.chunks_mut(o.max(1)) {
                row.iter_mut().zip(b.iter()).for_each(|(y, &b)| *y += b);
            }
        }
        Ok(Tensor::from_vec(y, &self.out_sizes(n, added))?.into())
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let (x, added) = self.input(input)?;
        let n = x.sizes()[0];
        let gy = self.grad_output(grad_output, n, added)?;
        let mut gx = vec![0.0f32; n * self.in_features];
        Gemm::new(n, self.in_features, self.out_features).run(
            &gy.as_slice()?,
            &self.weight.as_slice()?,
            &mut gx,
        )?;
        Ok(Tensor::from_vec(gx, input.tensor(&self.name)?.sizes())?.into())
    }

    fn acc_grad_parameters(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        let (x, added) = self.input(input)?;
        let n = x.sizes()[0];
        let gy = self.grad_output(grad_output, n, added)?;
        let gy = gy.as_slice()?;
        Gemm::new(self.out_features, self.in_features, n)
            .trans_a(Transpose::Yes)
            .alpha(scale)
            .beta(1.0)
            .run(&gy, &x.as_slice()?, &mut self.grad_weight.as_slice_mut()?)?;
        if let Some(gb) = &self.grad_bias {
            let mut gb = gb.as_slice_mut()?;
            for row in gy.chunks(self.out_features.max(1)) {
                gb.iter_mut().zip(row).for_each(|(b, &g)| *b += scale * g);
            }
        }
        Ok(())
    }

    fn backward_parameters(&mut self, input: &Activity, grad_output: &Activity) -> Result<()> {
        self.acc_grad_parameters(input, grad_output, 1.0)
    }

    fn visit_parameters(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
        f(&mut self.weight, &mut self.grad_weight);
        if let (Some(b), Some(gb)) = (&mut self.bias, &mut self.grad_bias) {
            f(b, gb);
        }
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }

    fn spec(&self) -> Option<Spec> {
        Some(
            Spec::new("Linear")
                .int("in", self.in_features)
                .int("out", self.out_features)
                .flag("bias", self.bias.is_some()),
        )
    }
}
