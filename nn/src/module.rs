//! The `Module` contract (Torch7's, in Rust naming), flat parameters and
//! replicas.

use std::fmt;

use bigdl_tensor::kernels::pool;
use bigdl_tensor::{Generator, Tensor};

use crate::activity::Activity;
use crate::error::{Result, invalid};

/// A layer or container.
///
/// Torch7's contract: [`Module::forward`] computes the output (and keeps what
/// the backward pass needs); [`Module::backward`] = [`Module::update_grad_input`]
/// (the gradient with respect to the input) + [`Module::acc_grad_parameters`]
/// (adds the gradients of the parameters, scaled). Call `backward` with the
/// same input as the last `forward`.
///
/// A later `forward` never overwrites an earlier output: outputs are fresh
/// tensors (or, for reshaping layers, views of the input), so holding on to
/// one is safe.
pub trait Module: Send + Sync + fmt::Debug {
    /// The module's name, used in every error it returns (e.g. `Linear(784 -> 100)`).
    fn name(&self) -> &str;

    /// Computes the output for `input`.
    fn forward(&mut self, input: &Activity) -> Result<Activity>;

    /// Computes the output for `input` for inference only: the values of
    /// [`Module::forward`] (in the current training or evaluation mode),
    /// without keeping what a backward pass needs. Containers free each
    /// intermediate output once nothing else reads it, and run a ReLU, or an
    /// addition and then a ReLU, that follows a convolution inside the
    /// convolution's pass over its output ([`Module::fusion_role`]). A
    /// backward pass needs a `forward` first.
    fn predict(&mut self, input: &Activity) -> Result<Activity> {
        self.forward(input)
    }

    /// What the module is to the inference fusion of [`Module::predict`].
    fn fusion_role(&self) -> FusionRole {
        FusionRole::None
    }

    /// [`Module::predict`] followed by `relu?(output + residual)` (ReLU
    /// last, NaN passing through): containers call it on
    /// [`FusionRole::Producer`]s, which compute it in one pass. This default
    /// takes separate passes.
    fn predict_with(
        &mut self,
        input: &Activity,
        residual: Option<&Tensor<f32>>,
        relu: bool,
    ) -> Result<Activity> {
        let y = self.predict(input)?.into_tensor(self.name())?.contiguous();
        let mut v = y.to_vec();
        if let Some(r) = residual {
            same_shape(self.name(), r, y.sizes())?;
            let r = r.contiguous();
            for (v, &r) in v.iter_mut().zip(r.as_slice()?.iter()) {
                *v += r;
            }
        }
        if relu {
            v.iter_mut().filter(|v| **v < 0.0).for_each(|v| *v = 0.0);
        }
        Ok(Tensor::from_vec(v, y.sizes())?.into())
    }

    /// The gradient of the loss with respect to `input`, given the gradient
    /// with respect to the output.
    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity>;

    /// Adds `scale` times the gradients of the parameters to the gradient
    /// tensors. Modules without parameters do nothing.
    fn acc_grad_parameters(
        &mut self,
        _input: &Activity,
        _grad_output: &Activity,
        _scale: f32,
    ) -> Result<()> {
        Ok(())
    }

    /// `update_grad_input`, then `acc_grad_parameters` with scale 1.
    fn backward(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let grad_input = self.update_grad_input(input, grad_output)?;
        self.acc_grad_parameters(input, grad_output, 1.0)?;
        Ok(grad_input)
    }

    /// [`Module::backward`] for a caller that does not need the gradient
    /// with respect to the input (an optimizer's step): the same parameter
    /// gradients, but layers whose `acc_grad_parameters` needs only the
    /// input and output gradient (convolutions, linear layers) skip their
    /// input gradient, and sequential containers skip the input gradients
    /// no parameter depends on (a first convolution's backward-data pass).
    fn backward_parameters(&mut self, input: &Activity, grad_output: &Activity) -> Result<()> {
        self.backward(input, grad_output).map(drop)
    }

    /// Calls `f(weight, grad)` for every parameter, in a fixed order; `f` may
    /// replace both tensors (by views of the same shape), which is how
    /// parameters are compacted into one buffer.
    fn visit_parameters(&mut self, _f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {}

    /// Switches training mode on or off (Dropout and batch normalisation
    /// behave differently); containers pass it on to their children.
    fn set_training(&mut self, _training: bool) {}

    /// Whether the module is in training mode (the default after creation).
    fn is_training(&self) -> bool {
        true
    }

    /// A copy whose parameter and gradient tensors share storage with this
    /// module's (see [`replicate`] for private gradients) and whose other state
    /// is its own.
    fn clone_module(&self) -> Box<dyn Module>;

    /// The module's description for the native model format (type,
    /// hyperparameters, children; not the weights); `None` if it cannot be
    /// saved.
    fn spec(&self) -> Option<crate::io::Spec> {
        None
    }

    /// Calls `f` on every piece of state that is not a parameter (running
    /// statistics, random stream positions), in a fixed order, so that a
    /// checkpoint can save and restore it; containers pass it on.
    fn visit_state(&mut self, _f: &mut dyn FnMut(StateMut<'_>)) {}

    /// Gives random layers (Dropout) a new seed derived from `seed`, so that
    /// replicas draw different masks; containers pass it on (each child gets
    /// its own derived seed).
    fn reseed(&mut self, _seed: u64) {}

    /// `(weight, grad)` views of every parameter.
    fn parameters(&mut self) -> Vec<(Tensor<f32>, Tensor<f32>)> {
        let mut out = Vec::new();
        self.visit_parameters(&mut |w, g| out.push((w.clone(), g.clone())));
        out
    }

    /// Sets every parameter gradient to 0.
    fn zero_grad_parameters(&mut self) {
        self.visit_parameters(&mut |_, g| g.zero());
    }

    /// Training mode.
    fn training(&mut self) {
        self.set_training(true);
    }

    /// Inference mode.
    fn evaluate(&mut self) {
        self.set_training(false);
    }
}

/// Whether `m` has parameters.
pub(crate) fn has_parameters(m: &mut dyn Module) -> bool {
    let mut any = false;
    m.visit_parameters(&mut |_, _| any = true);
    any
}

/// What a module is to inference fusion ([`Module::predict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusionRole {
    /// Not fused.
    None,
    /// Computes `relu?(output + residual)` in its own pass over the output
    /// ([`Module::predict_with`]; convolutions).
    Producer,
    /// `max(x, 0)`.
    Relu,
    /// The sum of its inputs.
    Add,
}

/// A piece of a module's non-parameter state (see [`Module::visit_state`]).
#[derive(Debug)]
pub enum StateMut<'a> {
    /// Floats, e.g. a running mean.
    F32(&'a mut Vec<f32>),
    /// A counter or seed.
    U64(&'a mut u64),
}

impl Clone for Box<dyn Module> {
    fn clone(&self) -> Self {
        self.clone_module()
    }
}

/// All parameters of a model in one contiguous weight buffer and one gradient
/// buffer (the model's tensors are views into them), so that an optimizer or an
/// all-reduce sees one flat slice each.
#[derive(Clone, Debug)]
pub struct FlatParameters {
    /// Every weight, in [`Module::visit_parameters`] order.
    pub weight: Tensor<f32>,
    /// The matching gradients.
    pub grad: Tensor<f32>,
}

/// Moves every parameter and gradient of `model` into one weight and one
/// gradient buffer (copying the current values) and returns them.
pub fn compact(model: &mut dyn Module) -> Result<FlatParameters> {
    let total = count(model);
    let flat = FlatParameters {
        weight: Tensor::<f32>::zeros(&[total])?,
        grad: Tensor::<f32>::zeros(&[total])?,
    };
    bind(model, &flat, true)?;
    Ok(flat)
}

/// [`compact`] onto a given weight buffer: `weight` (one dimension, one
/// number per parameter, in [`Module::visit_parameters`] order) becomes the
/// weight buffer and the parameters views of it, taking its values without
/// copying them (a model file's mapped weights stay mapped); the gradients
/// are zeroed into a fresh buffer.
pub fn compact_onto(model: &mut dyn Module, weight: Tensor<f32>) -> Result<FlatParameters> {
    let total = count(model);
    if weight.sizes() != [total] {
        return Err(invalid(
            model.name(),
            format!(
                "a weight buffer of shape {:?} for {total} parameters",
                weight.sizes()
            ),
        ));
    }
    let flat = FlatParameters {
        weight: weight.contiguous(),
        grad: Tensor::<f32>::zeros(&[total])?,
    };
    bind(model, &flat, false)?;
    Ok(flat)
}

/// Makes every parameter and gradient of `model` a view of `flat`'s buffers,
/// in [`Module::visit_parameters`] order, copying the current values in when
/// `copy` (else the buffers' values become the parameters').
fn bind(model: &mut dyn Module, flat: &FlatParameters, copy: bool) -> Result<()> {
    let mut off = 0;
    let mut err = None;
    model.visit_parameters(&mut |w, g| {
        if err.is_some() {
            return;
        }
        let n = w.numel();
        let moved = (|| -> Result<()> {
            let wv = flat.weight.narrow(0, off, n)?.view(w.sizes())?;
            let gv = flat.grad.narrow(0, off, n)?.view(g.sizes())?;
            if copy {
                wv.copy_from(w)?;
                gv.copy_from(g)?;
            }
            (*w, *g) = (wv, gv);
            Ok(())
        })();
        err = moved.err();
        off += n;
    });
    err.map_or(Ok(()), Err)
}

/// A replica of `model` for another thread (BigDL's model per core): it shares
/// the weights (through `weight` of a compacted model, or tensor by tensor),
/// gets its own zeroed gradient buffer, returned with it, and its own dropout
/// seeds.
pub fn replicate(model: &dyn Module) -> Result<(Box<dyn Module>, Tensor<f32>)> {
    let mut replica = model.clone_module();
    replica.reseed(init_generator().seed);
    let total = count(replica.as_mut());
    let grad = Tensor::<f32>::zeros(&[total])?;
    let mut off = 0;
    let mut err = None;
    replica.visit_parameters(&mut |_, g| {
        let n = g.numel();
        match grad.narrow(0, off, n).and_then(|v| v.view(g.sizes())) {
            Ok(v) => *g = v,
            Err(e) => err = Some(e),
        }
        off += n;
    });
    match err {
        Some(e) => Err(e.into()),
        None => Ok((replica, grad)),
    }
}

pub(crate) fn count(model: &mut dyn Module) -> usize {
    let mut total = 0;
    model.visit_parameters(&mut |w, _| total += w.numel());
    total
}

thread_local! {
    static NEXT_SEED: std::cell::Cell<u64> = const { std::cell::Cell::new(0x5EED) };
}

/// Seeds the generator that initialises new layers on this thread: layers
/// created after `manual_seed(s)` get the same initial weights in every run
/// (per thread, so concurrent model builders do not disturb each other).
pub fn manual_seed(seed: u64) {
    NEXT_SEED.with(|s| s.set(seed));
}

/// The generator for the next layer's initial weights.
pub(crate) fn init_generator() -> Generator {
    NEXT_SEED.with(|s| {
        let seed = s.get();
        s.set(seed.wrapping_add(1));
        Generator::new(seed)
    })
}

thread_local! {
    static LOADING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with layers created zero-initialised: model loaders overwrite
/// every weight, so drawing random ones first would only cost time.
pub(crate) fn loading<R>(f: impl FnOnce() -> R) -> R {
    let before = LOADING.with(|l| l.replace(true));
    let r = f();
    LOADING.with(|l| l.set(before));
    r
}

/// `U(-bound, bound)` of `sizes`, Torch7's default initialisation with
/// `bound = 1 / sqrt(fan_in)` (zeros inside [`loading`]).
pub(crate) fn uniform_init(
    sizes: &[usize],
    fan_in: usize,
    g: &mut Generator,
) -> Result<Tensor<f32>> {
    if LOADING.with(|l| l.get()) {
        return Ok(Tensor::zeros(sizes)?);
    }
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Ok(Tensor::uniform(sizes, -bound, bound, g)?)
}

/// The input as a contiguous tensor with a leading batch dimension: `dims`-d
/// input as is, `(dims - 1)`-d input with a batch of 1 added (`true` returned).
pub(crate) fn batched(
    layer: &str,
    input: &Activity,
    dims: usize,
    expected: &dyn Fn() -> String,
) -> Result<(Tensor<f32>, bool)> {
    let x = input.tensor(layer)?;
    if x.dim() == dims {
        Ok((x.contiguous(), false))
    } else if x.dim() + 1 == dims {
        Ok((x.contiguous().unsqueeze(0)?, true))
    } else {
        Err(crate::error::shape(layer, expected(), x.sizes()))
    }
}

/// Runs `f` on `len` floats of this thread's kernel scratch, shared by every
/// layer the thread runs (layers run one at a time per thread), so a model
/// holds one scratch per thread rather than one per layer. Grows as needed;
/// a nested call gets a buffer of its own.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

thread_local! {
    /// Inference outputs freed on this thread, for [`output_buffer`].
    static SPARE: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How many freed outputs a thread keeps for reuse.
const SPARE_BUFFERS: usize = 4;

thread_local! {
    static PREDICTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs an inference container's `predict` body `f`. The outermost call
/// runs it on the pool's driver ([`pool::drive`]: the pool's other workers
/// spin for its parallel sections), and frees the thread's recycled
/// buffers when it ends (they are for the layers of one call, not kept
/// between calls or after the model).
pub(crate) fn predicting<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    /// The call depth on this thread, while the guard lives.
    struct Depth;
    impl Depth {
        fn enter() -> Depth {
            PREDICTING.with(|d| d.set(d.get() + 1));
            Depth
        }
    }
    impl Drop for Depth {
        fn drop(&mut self) {
            let left = PREDICTING.with(|d| {
                d.set(d.get() - 1);
                d.get()
            });
            if left == 0 {
                SPARE.with(|cell| {
                    if let Ok(mut spare) = cell.try_borrow_mut() {
                        spare.clear();
                    }
                });
            }
        }
    }
    let run = || {
        let _depth = Depth::enter();
        f()
    };
    if PREDICTING.with(|d| d.get()) > 0 {
        run()
    } else {
        pool::drive(run)
    }
}

/// A buffer of `len` floats for an output that the layer then overwrites
/// whole: one that [`recycle`] kept (holding its old values) when one of
/// `len` to `2 len` floats is there, else zeros. Zeroed memory that the heap
/// reuses is cleared on the calling thread while the other cores wait, and
/// a recycled buffer's pages are warm: ResNet-50's inference at batch 32
/// runs 5-10% faster, for 6% more peak memory (four buffers kept, for the
/// length of one call).
pub(crate) fn output_buffer(len: usize) -> Vec<f32> {
    SPARE.with(|cell| {
        let Ok(mut spare) = cell.try_borrow_mut() else {
            return vec![0.0; len];
        };
        let best = (0..spare.len())
            .filter(|&i| (len..=2 * len).contains(&spare[i].len()))
            .min_by_key(|&i| spare[i].len());
        match best {
            Some(i) => {
                let mut v = spare.remove(i);
                v.truncate(len);
                v
            }
            None => vec![0.0; len],
        }
    })
}

/// Keeps the tensors of `a` that nothing else holds for [`output_buffer`]
/// (the [`SPARE_BUFFERS`] freed last; older ones go back to the heap);
/// inference containers call it on each output after its last reader.
pub(crate) fn recycle(a: Activity) {
    let mut tensors = vec![a];
    while let Some(a) = tensors.pop() {
        match a {
            Activity::Table(v) => tensors.extend(v),
            Activity::Tensor(t) => {
                let Some(v) = t.into_sole_vec() else {
                    continue;
                };
                SPARE.with(|cell| {
                    if let Ok(mut spare) = cell.try_borrow_mut() {
                        spare.push(v);
                        if spare.len() > SPARE_BUFFERS {
                            spare.remove(0);
                        }
                    }
                });
            }
        }
    }
}

/// Checks that `grad` has the shape of `like` (the module's output).
pub(crate) fn same_shape(layer: &str, grad: &Tensor<f32>, like: &[usize]) -> Result<()> {
    if grad.sizes() == like {
        Ok(())
    } else {
        Err(invalid(
            layer,
            format!(
                "gradient of shape {:?} for an output of shape {like:?}",
                grad.sizes()
            ),
        ))
    }
}

/// A seed for child `i` derived from `seed` (SplitMix64's finaliser).
pub(crate) fn child_seed(seed: u64, i: usize) -> u64 {
    let mut z = seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::SpatialConvolution;

    /// A recycled buffer comes back with its old values, and a convolution
    /// writing into one (NaN-poisoned) overwrites all of it.
    #[test]
    fn recycled_outputs_are_overwritten() {
        let x: Activity = Tensor::<f32>::uniform(&[2, 3, 7, 6], -1.0, 1.0, &mut Generator::new(1))
            .unwrap()
            .into();
        let mut conv = SpatialConvolution::new(3, 4, (3, 3)).unwrap().pad(1, 1);
        let want = conv.forward(&x).unwrap().into_tensor("y").unwrap().to_vec();
        let poison = |n: usize| recycle(Tensor::full(&[n], f32::NAN).unwrap().into());
        poison(5);
        assert!(output_buffer(5).iter().all(|v| v.is_nan()));
        // Not one of 1 to 2 times the length asked for: fresh zeros.
        poison(11);
        assert_eq!(output_buffer(5), vec![0.0; 5]);
        for _ in 0..2 {
            poison(want.len());
            let y = conv.predict(&x).unwrap().into_tensor("y").unwrap();
            assert_eq!(y.to_vec(), want);
        }
        // A tensor something else still holds is not kept.
        let held = Tensor::full(&[100], f32::NAN).unwrap();
        recycle(held.clone().into());
        assert_eq!(output_buffer(100), vec![0.0; 100]);
        // The buffers go when the outermost inference call ends, not a
        // nested one (on a worker, where the calls run on this thread).
        pool::install(|| {
            predicting(|| {
                poison(9);
                predicting(|| ());
                poison(8);
                assert!(output_buffer(9).iter().all(|v| v.is_nan()));
            });
            assert_eq!(output_buffer(8), vec![0.0; 8]);
        });
    }
}
