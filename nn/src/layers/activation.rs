//! Activations: ReLU, Tanh, Sigmoid (element-wise, vector kernels) and
//! SoftMax, LogSoftMax (over the last dimension).

use bigdl_tensor::Tensor;
use bigdl_tensor::kernels::elementwise::{self, Unary};

use crate::activity::Activity;
use crate::error::{Result, shape};
use crate::io::Spec;
use crate::module::{FusionRole, Module, same_shape};

/// The functions of this file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Relu,
    Tanh,
    Sigmoid,
    SoftMax,
    SoftMin,
    LogSoftMax,
}

/// State shared by every activation: the name and the last output (the
/// backward passes of all but ReLU are functions of it).
#[derive(Clone, Debug)]
struct Act {
    kind: Kind,
    output: Option<Tensor<f32>>,
}

impl Act {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Relu => "ReLU",
            Kind::Tanh => "Tanh",
            Kind::Sigmoid => "Sigmoid",
            Kind::SoftMax => "SoftMax",
            Kind::SoftMin => "SoftMin",
            Kind::LogSoftMax => "LogSoftMax",
        }
    }

    /// Last-dimension length for the softmaxes (which need at least 1-d input).
    fn cols(&self, x: &Tensor<f32>) -> Result<usize> {
        match x.sizes().last() {
            Some(&c) => Ok(c),
            None => Err(shape(self.name(), "[..., C] (at least 1-d)", x.sizes())),
        }
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let x = input.tensor(self.name())?.contiguous();
        let mut y = vec![0.0f32; x.numel()];
        {
            let xs = x.as_slice()?;
            match self.kind {
                Kind::Relu => elementwise::unary(Unary::Relu, &xs, &mut y)?,
                Kind::Tanh => elementwise::unary(Unary::Tanh, &xs, &mut y)?,
                Kind::Sigmoid => elementwise::unary(Unary::Sigmoid, &xs, &mut y)?,
                Kind::SoftMax => elementwise::softmax(&xs, &mut y, self.cols(&x)?)?,
                Kind::SoftMin => {
                    let neg: Vec<f32> = xs.iter().map(|&v| -v).collect();
                    elementwise::softmax(&neg, &mut y, self.cols(&x)?)?
                }
                Kind::LogSoftMax => elementwise::log_softmax(&xs, &mut y, self.cols(&x)?)?,
            }
        }
        let y = Tensor::from_vec(y, x.sizes())?;
        self.output = Some(y.clone());
        Ok(y.into())
    }

    fn backward(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let name = self.name();
        let x = input.tensor(name)?.contiguous();
        let gy = grad_output.tensor(name)?;
        same_shape(name, gy, x.sizes())?;
        let gy = gy.contiguous();
        let gys = gy.as_slice()?;
        let mut gx = vec![0.0f32; x.numel()];
        if self.kind == Kind::Relu {
            let xs = x.as_slice()?;
            for ((g, &d), &v) in gx.iter_mut().zip(gys.iter()).zip(xs.iter()) {
                *g = if v > 0.0 { d } else { 0.0 };
            }
        } else {
            let y = match &self.output {
                Some(y) if y.sizes() == x.sizes() => y,
                _ => {
                    return Err(crate::error::invalid(
                        name,
                        "backward before forward on this input",
                    ));
                }
            };
            let ys = y.as_slice()?;
            let triples = gx.iter_mut().zip(gys.iter()).zip(ys.iter());
            match self.kind {
                Kind::Tanh => triples.for_each(|((g, &d), &y)| *g = d * (1.0 - y * y)),
                Kind::Sigmoid => triples.for_each(|((g, &d), &y)| *g = d * y * (1.0 - y)),
                Kind::SoftMax | Kind::SoftMin => {
                    // SoftMin is SoftMax of -x: the chain rule flips the sign.
                    let sign = if self.kind == Kind::SoftMin {
                        -1.0
                    } else {
                        1.0
                    };
                    let c = self.cols(&x)?.max(1);
                    for ((g, d), y) in gx.chunks_mut(c).zip(gys.chunks(c)).zip(ys.chunks(c)) {
                        let dot: f32 = d.iter().zip(y).map(|(a, b)| a * b).sum();
                        g.iter_mut()
                            .zip(d.iter().zip(y))
                            .for_each(|(g, (&d, &y))| *g = sign * y * (d - dot));
                    }
                }
                Kind::LogSoftMax => {
                    let c = self.cols(&x)?.max(1);
                    for ((g, d), y) in gx.chunks_mut(c).zip(gys.chunks(c)).zip(ys.chunks(c)) {
                        let sum: f32 = d.iter().sum();
                        g.iter_mut()
                            .zip(d.iter().zip(y))
                            .for_each(|(g, (&d, &y))| *g = d - y.exp() * sum);
                    }
                }
                Kind::Relu => unreachable!("handled above"),
            }
        }
        Ok(Tensor::from_vec(gx, x.sizes())?.into())
    }
}

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name(Act);

        impl $name {
            /// The layer.
            pub fn new() -> $name {
                $name(Act { kind: $kind, output: None })
            }
        }

        impl Default for $name {
            fn default() -> $name {
                $name::new()
            }
        }

        impl Module for $name {
            fn name(&self) -> &str {
                self.0.name()
            }
            fn forward(&mut self, input: &Activity) -> Result<Activity> {
                self.0.forward(input)
            }
            fn fusion_role(&self) -> FusionRole {
                if self.0.kind == Kind::Relu {
                    FusionRole::Relu
                } else {
                    FusionRole::None
                }
            }
            fn update_grad_input(
                &mut self,
                input: &Activity,
                grad_output: &Activity,
            ) -> Result<Activity> {
                self.0.backward(input, grad_output)
            }
            fn clone_module(&self) -> Box<dyn Module> {
                Box::new(self.clone())
            }
            fn spec(&self) -> Option<Spec> {
                Some(Spec::new(stringify!($name)))
            }
        }
    };
}

activation!(
    /// `max(x, 0)`; the gradient at 0 is 0.
    ReLU,
    Kind::Relu
);
activation!(
    /// `tanh x`.
    Tanh,
    Kind::Tanh
);
activation!(
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    Kind::Sigmoid
);
activation!(
    /// Softmax over the last dimension.
    SoftMax,
    Kind::SoftMax
);
activation!(
    /// Softmax of `-x` over the last dimension.
    SoftMin,
    Kind::SoftMin
);
activation!(
    /// Log-softmax over the last dimension (pair it with `ClassNLLCriterion`).
    LogSoftMax,
    Kind::LogSoftMax
);
