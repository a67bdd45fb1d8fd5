//! Learnable element-wise layers: `CMul`, `CAdd`, `Scale` (both), `PReLU`.

use bigdl_tensor::Tensor;

use crate::activity::Activity;
use crate::error::{Result, shape};
use crate::io::Spec;
use crate::module::{Module, init_generator, same_shape, uniform_init};

/// Sums `t` over the dimensions where `target` (aligned to the trailing
/// dimensions) is 1 or absent, giving a tensor of `target`'s shape.
fn reduce_to(t: &Tensor<f32>, target: &[usize]) -> Result<Tensor<f32>> {
    let lead = t.dim() - target.len();
    let mut r = t.clone();
    for d in 0..t.dim() {
        let keep = d >= lead && target[d - lead] == t.sizes()[d];
        if !keep {
            r = r.sum(d)?;
        }
    }
    Ok(r.contiguous().view(target)?)
}

/// Whether `w` broadcasts to `x` (trailing alignment, sizes equal or 1).
fn broadcasts(w: &[usize], x: &[usize]) -> bool {
    w.len() <= x.len()
        && w.iter()
            .rev()
            .zip(x.iter().rev())
            .all(|(&a, &b)| a == b || a == 1)
}

/// `y = x * w + b` with learnable `w` and/or `b` of a shape that broadcasts
/// to the input (aligned to its trailing dimensions, as NumPy).
#[derive(Clone, Debug)]
struct Affine {
    label: String,
    size: Vec<usize>,
    weight: Option<[Tensor<f32>; 2]>,
    bias: Option<[Tensor<f32>; 2]>,
}

impl Affine {
    fn new(label: String, size: &[usize], weight: bool, bias: bool) -> Result<Affine> {
        let n: usize = size.iter().product();
        let mut g = init_generator();
        let pair = |t: Tensor<f32>| -> Result<[Tensor<f32>; 2]> { Ok([t, Tensor::zeros(size)?]) };
        Ok(Affine {
            weight: if weight {
                Some(pair(uniform_init(size, n, &mut g)?)?)
            } else {
                None
            },
            bias: if bias {
                Some(pair(uniform_init(size, n, &mut g)?)?)
            } else {
                None
            },
            label,
            size: size.to_vec(),
        })
    }

    fn input<'a>(&self, input: &'a Activity) -> Result<&'a Tensor<f32>> {
        let x = input.tensor(&self.label)?;
        if !broadcasts(&self.size, x.sizes()) {
            return Err(shape(
                &self.label,
                format!("a shape {:?} broadcasts to", self.size),
                x.sizes(),
            ));
        }
        Ok(x)
    }

    fn forward(&self, input: &Activity) -> Result<Activity> {
        let x = self.input(input)?;
        let mut y = x.deep_clone();
        if let Some([w, _]) = &self.weight {
            y = y.cmul(w)?;
        }
        if let Some([b, _]) = &self.bias {
            y.add_(b)?;
        }
        Ok(y.into())
    }

    fn update_grad_input(&self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let x = self.input(input)?;
        let gy = grad_output.tensor(&self.label)?;
        same_shape(&self.label, gy, x.sizes())?;
        Ok(match &self.weight {
            Some([w, _]) => gy.cmul(w)?,
            None => gy.deep_clone(),
        }
        .into())
    }

    fn acc(&self, input: &Activity, grad_output: &Activity, scale: f32) -> Result<()> {
        let x = self.input(input)?;
        let gy = grad_output.tensor(&self.label)?;
        same_shape(&self.label, gy, x.sizes())?;
        if let Some([_, gw]) = &self.weight {
            gw.add_(&reduce_to(&gy.cmul(x)?, &self.size)?.mul_scalar(scale))?;
        }
        if let Some([_, gb]) = &self.bias {
            gb.add_(&reduce_to(gy, &self.size)?.mul_scalar(scale))?;
        }
        Ok(())
    }

    fn visit(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
        for [p, g] in [&mut self.weight, &mut self.bias].into_iter().flatten() {
            f(p, g);
        }
    }
}

macro_rules! affine_module {
    ($(#[$doc:meta])* $name:ident, $weight:expr, $bias:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name(Affine);

        impl $name {
            /// Parameters of shape `size` (broadcast to the input's trailing
            /// dimensions), initialised `U(-1/sqrt(n), 1/sqrt(n))`.
            pub fn new(size: &[usize]) -> Result<$name> {
                Ok($name(Affine::new(
                    format!("{}({size:?})", stringify!($name)),
                    size,
                    $weight,
                    $bias,
                )?))
            }
        }

        impl Module for $name {
            fn name(&self) -> &str {
                &self.0.label
            }
            fn forward(&mut self, input: &Activity) -> Result<Activity> {
                self.0.forward(input)
            }
            fn update_grad_input(
                &mut self,
                input: &Activity,
                grad_output: &Activity,
            ) -> Result<Activity> {
                self.0.update_grad_input(input, grad_output)
            }
            fn acc_grad_parameters(
                &mut self,
                input: &Activity,
                grad_output: &Activity,
                scale: f32,
            ) -> Result<()> {
                self.0.acc(input, grad_output, scale)
            }
            fn visit_parameters(
                &mut self,
                f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>),
            ) {
                self.0.visit(f);
            }
            fn clone_module(&self) -> Box<dyn Module> {
                Box::new(self.clone())
            }
            fn spec(&self) -> Option<Spec> {
                Some(Spec::new(stringify!($name)).ints("size", &self.0.size))
            }
        }
    };
}

affine_module!(
    /// `y = x * w`, learnable `w`.
    CMul,
    true,
    false
);
affine_module!(
    /// `y = x + b`, learnable `b`.
    CAdd,
    false,
    true
);
affine_module!(
    /// `y = x * w + b`, learnable `w` and `b` (BigDL's `Scale`).
    Scale,
    true,
    true
);

/// `x` for `x > 0`, else `a x` with a learnable slope `a`: one shared slope,
/// or one per channel (channels are dimension 0 of 1-d and 3-d input,
/// dimension 1 of 2-d and 4-d input, as in Torch7).
/// Slopes start at 0.25.
#[derive(Clone, Debug)]
pub struct PReLU {
    label: String,
    planes: usize,
    weight: Tensor<f32>,
    grad: Tensor<f32>,
}

impl PReLU {
    /// `planes` slopes (0 = one shared slope).
    pub fn new(planes: usize) -> Result<PReLU> {
        let n = planes.max(1);
        Ok(PReLU {
            label: format!("PReLU({planes})"),
            planes,
            weight: Tensor::full(&[n], 0.25)?,
            grad: Tensor::zeros(&[n])?,
        })
    }

    /// The input, with `(channels, elements per channel run)`.
    fn layout(&self, input: &Activity) -> Result<(Tensor<f32>, usize, usize)> {
        let x = input.tensor(&self.label)?;
        if self.planes == 0 {
            return Ok((x.contiguous(), 1, x.numel()));
        }
        let s = x.sizes();
        // Torch7's rule: 1-d and 3-d inputs are one sample, 2-d and 4-d batches.
        let c_dim = match s.len() {
            1 | 3 => 0,
            2 | 4 => 1,
            _ => usize::MAX,
        };
        if s.get(c_dim) != Some(&self.planes) {
            return Err(shape(
                &self.label,
                format!("[N, {0}, ...] or [{0}, ...]", self.planes),
                s,
            ));
        }
        let run: usize = s[c_dim + 1..].iter().product();
        Ok((x.contiguous(), self.planes, run))
    }
}

impl Module for PReLU {
    fn name(&self) -> &str {
        &self.label
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let (x, c, run) = self.layout(input)?;
        let a = self.weight.to_vec();
        let y: Vec<f32> = x
            .as_slice()?
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if v > 0.0 {
                    v
                } else {
                    a[(i / run.max(1)) % c] * v
                }
            })
            .collect();
        Ok(Tensor::from_vec(y, x.sizes())?.into())
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let (x, c, run) = self.layout(input)?;
        let gy = grad_output.tensor(&self.label)?;
        same_shape(&self.label, gy, x.sizes())?;
        let a = self.weight.to_vec();
        let gx: Vec<f32> = x
            .as_slice()?
            .iter()
            .zip(gy.contiguous().as_slice()?.iter())
            .enumerate()
            .map(|(i, (&v, &g))| {
                if v > 0.0 {
                    g
                } else {
                    a[(i / run.max(1)) % c] * g
                }
            })
            .collect();
        Ok(Tensor::from_vec(gx, x.sizes())?.into())
    }

    fn acc_grad_parameters(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        let (x, c, run) = self.layout(input)?;
        let gy = grad_output.tensor(&self.label)?;
        same_shape(&self.label, gy, x.sizes())?;
        let mut acc = vec![0.0f64; c];
        for (i, (&v, &g)) in x
            .as_slice()?
            .iter()
            .zip(gy.contiguous().as_slice()?.iter())
            .enumerate()
        {
            if v <= 0.0 {
                acc[(i / run.max(1)) % c] += (g * v) as f64;
            }
        }
        let mut gw = self.grad.as_slice_mut()?;
        gw.iter_mut()
            .zip(&acc)
            .for_each(|(w, &s)| *w += scale * s as f32);
        Ok(())
    }

    fn visit_parameters(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
        f(&mut self.weight, &mut self.grad);
    }

    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("PReLU").int("planes", self.planes))
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}
