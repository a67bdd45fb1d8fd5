//! `Sequential`: modules applied one after another.

use crate::activity::Activity;
use crate::error::{Result, invalid};
use crate::module::{FusionRole, Module, has_parameters};

/// Applies its modules in order; the backward pass runs them in reverse.
#[derive(Clone, Debug, Default)]
pub struct Sequential {
    modules: Vec<Box<dyn Module>>,
    /// Each module's input from the last forward (`inputs[0]` is the input).
    inputs: Vec<Activity>,
    /// Each module's output gradient from the last `update_grad_input`.
    grad_outputs: Vec<Activity>,
    training: bool,
}

impl Sequential {
    /// An empty container.
    pub fn new() -> Sequential {
        Sequential {
            training: true,
            ..Default::default()
        }
    }

    /// Appends `m` (builder style; Torch7's and BigDL's name for it).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, m: impl Module + 'static) -> Sequential {
        self.push(Box::new(m));
        self
    }

    /// Appends a boxed module.
    pub fn push(&mut self, m: Box<dyn Module>) {
        self.modules.push(m);
    }

    /// The modules.
    pub fn modules(&self) -> &[Box<dyn Module>] {
        &self.modules
    }

    fn check_forwarded(&self) -> Result<()> {
        if self.inputs.len() == self.modules.len() + 1 {
            Ok(())
        } else {
            Err(invalid("Sequential", "backward before forward"))
        }
    }
}

impl Sequential {
    /// [`Module::predict`]'s work.
    fn predict_steps(&mut self, input: &Activity) -> Result<Activity> {
        self.inputs.clear();
        let mut x = input.clone();
        let mut i = 0;
        while i < self.modules.len() {
            // A ReLU after a convolution runs inside it.
            let fused = self.modules[i].fusion_role() == FusionRole::Producer
                && self
                    .modules
                    .get(i + 1)
                    .is_some_and(|m| m.fusion_role() == FusionRole::Relu);
            let y = if fused {
                self.modules[i].predict_with(&x, None, true)?
            } else {
                self.modules[i].predict(&x)?
            };
            crate::module::recycle(std::mem::replace(&mut x, y));
            i += 1 + fused as usize;
        }
        Ok(x)
    }
}

impl Module for Sequential {
    fn name(&self) -> &str {
        "Sequential"
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        self.inputs.clear();
        self.inputs.push(input.clone());
        let mut x = input.clone();
        for m in &mut self.modules {
            x = m.forward(&x)?;
            self.inputs.push(x.clone());
        }
        Ok(x)
    }

    fn predict(&mut self, input: &Activity) -> Result<Activity> {
        crate::module::predicting(|| self.predict_steps(input))
    }

    fn update_grad_input(&mut self, _input: &Activity, grad_output: &Activity) -> Result<Activity> {
        self.check_forwarded()?;
        let mut g = grad_output.clone();
        self.grad_outputs = vec![g.clone(); self.modules.len()];
        for (i, m) in self.modules.iter_mut().enumerate().rev() {
            self.grad_outputs[i] = g.clone();
            g = m.update_grad_input(&self.inputs[i], &g)?;
        }
        Ok(g)
    }

    fn acc_grad_parameters(
        &mut self,
        _input: &Activity,
        _grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        self.check_forwarded()?;
        if self.grad_outputs.len() != self.modules.len() {
            return Err(invalid(
                "Sequential",
                "acc_grad_parameters before update_grad_input",
            ));
        }
        for (i, m) in self.modules.iter_mut().enumerate() {
            m.acc_grad_parameters(&self.inputs[i], &self.grad_outputs[i], scale)?;
        }
        Ok(())
    }

    fn backward(&mut self, _input: &Activity, grad_output: &Activity) -> Result<Activity> {
        self.check_forwarded()?;
        let mut g = grad_output.clone();
        for (i, m) in self.modules.iter_mut().enumerate().rev() {
            g = m.backward(&self.inputs[i], &g)?;
        }
        Ok(g)
    }

    fn backward_parameters(&mut self, _input: &Activity, grad_output: &Activity) -> Result<()> {
        self.check_forwarded()?;
        // The modules before the first one with parameters need no gradient.
        let Some(first) = self
            .modules
            .iter_mut()
            .position(|m| has_parameters(&mut **m))
        else {
            return Ok(());
        };
        let mut g = grad_output.clone();
        for i in (first + 1..self.modules.len()).rev() {
            g = self.modules[i].backward(&self.inputs[i], &g)?;
        }
        self.modules[first].backward_parameters(&self.inputs[first], &g)
    }

    fn visit_parameters(
        &mut self,
        f: &mut dyn FnMut(&mut bigdl_tensor::Tensor<f32>, &mut bigdl_tensor::Tensor<f32>),
    ) {
        for m in &mut self.modules {
            m.visit_parameters(f);
        }
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        for m in &mut self.modules {
            m.set_training(training);
        }
    }

    fn is_training(&self) -> bool {
        self.training
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }

    fn spec(&self) -> Option<crate::io::Spec> {
        children_spec(crate::io::Spec::new("Sequential"), &self.modules)
    }

    fn visit_state(&mut self, f: &mut dyn FnMut(crate::StateMut<'_>)) {
        for m in &mut self.modules {
            m.visit_state(f);
        }
    }

    fn reseed(&mut self, seed: u64) {
        for (i, m) in self.modules.iter_mut().enumerate() {
            m.reseed(crate::module::child_seed(seed, i));
        }
    }
}

/// `s` with the specs of `modules` as children (`None` if one has none).
pub(crate) fn children_spec(
    s: crate::io::Spec,
    modules: &[Box<dyn Module>],
) -> Option<crate::io::Spec> {
    modules.iter().try_fold(s, |s, m| Some(s.child(m.spec()?)))
}
