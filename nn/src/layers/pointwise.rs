//! Element-wise layers with parameters fixed at construction: ReLU6,
//! LeakyReLU, ELU, HardTanh, SoftPlus, Threshold, Abs, Power, Sqrt, Square,
//! Exp, Log, MulConstant, AddConstant.

use bigdl_tensor::Tensor;

use crate::activity::Activity;
use crate::error::Result;
use crate::io::Spec;
use crate::module::{Module, same_shape};

/// The function and its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    LeakyRelu(f32),
    Elu(f32),
    HardTanh(f32, f32),
    SoftPlus(f32),
    Threshold(f32, f32),
    Abs,
    Power { p: f32, scale: f32, shift: f32 },
    Sqrt,
    Square,
    Exp,
    Log,
    MulConstant(f32),
    AddConstant(f32),
}

impl Op {
    fn f(self, x: f32) -> f32 {
        match self {
            Op::LeakyRelu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Op::Elu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x.exp_m1()
                }
            }
            // max/min rather than clamp: no panic on bounds given in the wrong order.
            Op::HardTanh(lo, hi) => x.max(lo).min(hi),
            // Torch7's threshold: linear where beta x > 20 (no overflow).
            Op::SoftPlus(b) => {
                if b * x > 20.0 {
                    x
                } else {
                    (b * x).exp().ln_1p() / b
                }
            }
            Op::Threshold(th, v) => {
                if x > th {
                    x
                } else {
                    v
                }
            }
            Op::Abs => x.abs(),
            Op::Power { p, scale, shift } => (shift + scale * x).powf(p),
            Op::Sqrt => x.sqrt(),
            Op::Square => x * x,
            Op::Exp => x.exp(),
            Op::Log => x.ln(),
            Op::MulConstant(c) => c * x,
            Op::AddConstant(c) => x + c,
        }
    }

    /// dy/dx at `x` (with `y = f(x)`).
    fn df(self, x: f32, y: f32) -> f32 {
        match self {
            Op::LeakyRelu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a
                }
            }
            Op::Elu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    y + a
                }
            }
            Op::HardTanh(lo, hi) => {
                if x > lo && x < hi {
                    1.0
                } else {
                    0.0
                }
            }
            Op::SoftPlus(b) => {
                if b * x > 20.0 {
                    1.0
                } else {
                    1.0 / (1.0 + (-b * x).exp())
                }
            }
            Op::Threshold(th, _) => {
                if x > th {
                    1.0
                } else {
                    0.0
                }
            }
            Op::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Op::Power { p, scale, shift } => p * scale * (shift + scale * x).powf(p - 1.0),
            Op::Sqrt => 0.5 / y,
            Op::Square => 2.0 * x,
            Op::Exp => y,
            Op::Log => 1.0 / x,
            Op::MulConstant(c) => c,
            Op::AddConstant(_) => 1.0,
        }
    }
}

impl Op {
    /// The op's parameters as spec attributes.
    fn attrs(self, s: Spec) -> Spec {
        match self {
            Op::LeakyRelu(a) => s.float("negval", a),
            Op::Elu(a) => s.float("alpha", a),
            Op::HardTanh(lo, hi) => s.float("min", lo).float("max", hi),
            Op::SoftPlus(b) => s.float("beta", b),
            Op::Threshold(t, v) => s.float("threshold", t).float("value", v),
            Op::Power { p, scale, shift } => s
                .float("power", p)
                .float("scale", scale)
                .float("shift", shift),
            Op::MulConstant(c) | Op::AddConstant(c) => s.float("c", c),
            Op::Abs | Op::Sqrt | Op::Square | Op::Exp | Op::Log => s,
        }
    }
}

#[derive(Clone, Debug)]
struct Pointwise {
    name: String,
    op: Op,
}

impl Pointwise {
    fn forward(&self, input: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.name)?.contiguous();
        let y: Vec<f32> = x.as_slice()?.iter().map(|&v| self.op.f(v)).collect();
        Ok(Tensor::from_vec(y, x.sizes())?.into())
    }

    fn backward(&self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.name)?.contiguous();
        let gy = grad_output.tensor(&self.name)?;
        same_shape(&self.name, gy, x.sizes())?;
        let gy = gy.contiguous();
        let gx: Vec<f32> = x
            .as_slice()?
            .iter()
            .zip(gy.as_slice()?.iter())
            .map(|(&x, &g)| g * self.op.df(x, self.op.f(x)))
            .collect();
        Ok(Tensor::from_vec(gx, x.sizes())?.into())
    }
}

macro_rules! pointwise {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name(Pointwise);

        impl Module for $name {
            fn name(&self) -> &str {
                &self.0.name
            }
            fn forward(&mut self, input: &Activity) -> Result<Activity> {
                self.0.forward(input)
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
                let s = Spec::new(stringify!($name));
                // ReLU6 is HardTanh(0, 6) with no parameters of its own.
                Some(if stringify!($name) == "ReLU6" { s } else { self.0.op.attrs(s) })
            }
        }
    };
}

fn pw(name: String, op: Op) -> Pointwise {
    Pointwise { name, op }
}

pointwise!(
    /// `min(max(x, 0), 6)`.
    ReLU6
);
impl ReLU6 {
    /// The layer.
    pub fn new() -> ReLU6 {
        ReLU6(pw("ReLU6".into(), Op::HardTanh(0.0, 6.0)))
    }
}
impl Default for ReLU6 {
    fn default() -> Self {
        ReLU6::new()
    }
}

pointwise!(
    /// `x` for `x > 0`, else `negval * x` (Torch7 default 0.01).
    LeakyReLU
);
impl LeakyReLU {
    /// With slope `negval` below 0.
    pub fn new(negval: f32) -> LeakyReLU {
        LeakyReLU(pw(format!("LeakyReLU({negval})"), Op::LeakyRelu(negval)))
    }
}

pointwise!(
    /// `x` for `x > 0`, else `alpha (e^x - 1)`.
    ELU
);
impl ELU {
    /// With `alpha` (Torch7 default 1).
    pub fn new(alpha: f32) -> ELU {
        ELU(pw(format!("ELU({alpha})"), Op::Elu(alpha)))
    }
}

pointwise!(
    /// `x` clamped to `[min, max]` (gradient 1 strictly inside).
    HardTanh
);
impl HardTanh {
    /// Clamp to `[min, max]` (Torch7 default `[-1, 1]`).
    pub fn new(min: f32, max: f32) -> HardTanh {
        HardTanh(pw(
            format!("HardTanh({min}, {max})"),
            Op::HardTanh(min, max),
        ))
    }
}

pointwise!(
    /// `ln(1 + e^(beta x)) / beta`, linear where `beta x > 20`.
    SoftPlus
);
impl SoftPlus {
    /// With `beta` (Torch7 default 1).
    pub fn new(beta: f32) -> SoftPlus {
        SoftPlus(pw(format!("SoftPlus({beta})"), Op::SoftPlus(beta)))
    }
}

pointwise!(
    /// `x` where `x > threshold`, else `value`.
    Threshold
);
impl Threshold {
    /// Replace values at or below `threshold` by `value`.
    pub fn new(threshold: f32, value: f32) -> Threshold {
        Threshold(pw(
            format!("Threshold({threshold}, {value})"),
            Op::Threshold(threshold, value),
        ))
    }
}

pointwise!(
    /// `|x|` (gradient 0 at 0).
    Abs
);
impl Abs {
    /// The layer.
    pub fn new() -> Abs {
        Abs(pw("Abs".into(), Op::Abs))
    }
}
impl Default for Abs {
    fn default() -> Self {
        Abs::new()
    }
}

pointwise!(
    /// `(shift + scale x)^power` (BigDL's `Power`).
    Power
);
impl Power {
    /// `(shift + scale x)^power`.
    pub fn new(power: f32, scale: f32, shift: f32) -> Power {
        Power(pw(
            format!("Power({power}, {scale}, {shift})"),
            Op::Power {
                p: power,
                scale,
                shift,
            },
        ))
    }
}

pointwise!(
    /// `sqrt x`.
    Sqrt
);
impl Sqrt {
    /// The layer.
    pub fn new() -> Sqrt {
        Sqrt(pw("Sqrt".into(), Op::Sqrt))
    }
}
impl Default for Sqrt {
    fn default() -> Self {
        Sqrt::new()
    }
}

pointwise!(
    /// `x^2`.
    Square
);
impl Square {
    /// The layer.
    pub fn new() -> Square {
        Square(pw("Square".into(), Op::Square))
    }
}
impl Default for Square {
    fn default() -> Self {
        Square::new()
    }
}

pointwise!(
    /// `e^x`.
    Exp
);
impl Exp {
    /// The layer.
    pub fn new() -> Exp {
        Exp(pw("Exp".into(), Op::Exp))
    }
}
impl Default for Exp {
    fn default() -> Self {
        Exp::new()
    }
}

pointwise!(
    /// `ln x`.
    Log
);
impl Log {
    /// The layer.
    pub fn new() -> Log {
        Log(pw("Log".into(), Op::Log))
    }
}
impl Default for Log {
    fn default() -> Self {
        Log::new()
    }
}

pointwise!(
    /// `c x`.
    MulConstant
);
impl MulConstant {
    /// Multiply by `c`.
    pub fn new(c: f32) -> MulConstant {
        MulConstant(pw(format!("MulConstant({c})"), Op::MulConstant(c)))
    }
}

pointwise!(
    /// `x + c`.
    AddConstant
);
impl AddConstant {
    /// Add `c`.
    pub fn new(c: f32) -> AddConstant {
        AddConstant(pw(format!("AddConstant({c})"), Op::AddConstant(c)))
    }
}
