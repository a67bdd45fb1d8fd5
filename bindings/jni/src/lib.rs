//! # bigdl-jni
//!
//! The JVM's door into bigdl-rs: a `cdylib` whose functions are the native
//! methods of the Java class `bigdlrs.Native` (`bindings/java`). Models and
//! optimizers live in a handle table on this side; Java holds `long`
//! handles, frees them explicitly (or through a `Cleaner`), and passes
//! numbers in direct `ByteBuffer`s in native byte order, which are read and
//! written in place.
//!
//! Every entry point runs inside [`guard`]: an `Err` becomes a Java
//! exception (`IllegalArgumentException` for bad arguments: unknown or
//! freed handles, null, heap or short buffers, wrong shapes;
//! `RuntimeException` otherwise), and a Rust panic is caught and becomes a
//! `RuntimeException` too: nothing unwinds into the JVM, nothing aborts it.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bigdl_nn::{
    Activity, Adam, ClassNLLCriterion, Criterion, FlatParameters, Module, OptimMethod, Sgd,
    compact, manual_seed, models,
};
use bigdl_tensor::Tensor;
use jni::JNIEnv;
use jni::objects::{JByteArray, JByteBuffer, JClass, JIntArray, JString};
use jni::sys::{jbyteArray, jfloat, jfloatArray, jint, jlong};

pub mod spark;

/// Large buffers on transparent huge pages where the system leaves it to
/// programs (as the `bigdl` command does).
#[global_allocator]
static ALLOC: bigdl_tensor::kernels::memory::HugePageAlloc =
    bigdl_tensor::kernels::memory::HugePageAlloc;

/// Why a call failed, and so which Java exception it throws.
#[derive(Debug)]
pub enum Fail {
    /// The caller's mistake: `IllegalArgumentException`.
    Arg(String),
    /// Anything else: `RuntimeException`.
    Run(String),
}

impl From<bigdl_nn::NnError> for Fail {
    fn from(e: bigdl_nn::NnError) -> Fail {
        Fail::Run(e.to_string())
    }
}

impl From<bigdl_tensor::TensorError> for Fail {
    fn from(e: bigdl_tensor::TensorError) -> Fail {
        Fail::Run(e.to_string())
    }
}

impl From<jni::errors::Error> for Fail {
    fn from(e: jni::errors::Error) -> Fail {
        Fail::Run(format!("JNI: {e}"))
    }
}

fn arg(msg: impl Into<String>) -> Fail {
    Fail::Arg(msg.into())
}

/// Runs `f`, turning its error or panic into a pending Java exception and
/// returning `default` then.
pub fn guard<'l, T>(
    env: &mut JNIEnv<'l>,
    default: T,
    f: impl FnOnce(&mut JNIEnv<'l>) -> Result<T, Fail>,
) -> T {
    let (class, msg) = match catch_unwind(AssertUnwindSafe(|| f(env))) {
        Ok(Ok(v)) => return v,
        Ok(Err(Fail::Arg(m))) => ("java/lang/IllegalArgumentException", m),
        Ok(Err(Fail::Run(m))) => ("java/lang/RuntimeException", m),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            (
                "java/lang/RuntimeException",
                format!("internal error (a Rust panic, caught): {what}"),
            )
        }
    };
    // A failed JNI call may already have left its own exception pending.
    if !env.exception_check().unwrap_or(false) {
        let _ = env.throw_new(class, format!("bigdl: {msg}"));
    }
    default
}

/// A model with its flat parameters and its training criterion.
struct Session {
    model: Box<dyn Module>,
    flat: FlatParameters,
    criterion: ClassNLLCriterion,
}

enum Entry {
    Model(Session),
    Optim(Box<dyn OptimMethod>),
    Comm(spark::Ranked),
    Listener(bigdl_comm::tcp::Listener),
}

type Table = Mutex<HashMap<jlong, Arc<Mutex<Entry>>>>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(Table::default)
}

fn register(e: Entry) -> Result<jlong, Fail> {
    static NEXT: AtomicI64 = AtomicI64::new(1);
    let h = NEXT.fetch_add(1, Ordering::Relaxed);
    table()
        .lock()
        .map_err(|_| Fail::Run("the handle table is poisoned".into()))?
        .insert(h, Arc::new(Mutex::new(e)));
    Ok(h)
}

fn entry(h: jlong) -> Result<Arc<Mutex<Entry>>, Fail> {
    table()
        .lock()
        .map_err(|_| Fail::Run("the handle table is poisoned".into()))?
        .get(&h)
        .cloned()
        .ok_or_else(|| {
            arg(format!(
                "no object with handle {h} (freed, or never created)"
            ))
        })
}

/// Removes handle `h` from the table and returns its object, if `want`
/// accepts it (else the handle stays) and no other call holds it.
fn take(h: jlong, what: &str, want: impl Fn(&Entry) -> bool) -> Result<Entry, Fail> {
    let mut t = table()
        .lock()
        .map_err(|_| Fail::Run("the handle table is poisoned".into()))?;
    let e = t
        .get(&h)
        .ok_or_else(|| arg(format!("no object with handle {h} (freed?)")))?;
    let busy = || Fail::Run(format!("handle {h} is in use by another call"));
    let unusable = || Fail::Run("this object failed in an earlier call and is unusable".into());
    // Another call holds it (or is about to lock it): leave it in place.
    // try_lock: never wait for another call while holding the table.
    if Arc::strong_count(e) != 1 {
        return Err(busy());
    }
    let ok = match e.try_lock() {
        Ok(g) => want(&g),
        Err(std::sync::TryLockError::WouldBlock) => return Err(busy()),
        Err(std::sync::TryLockError::Poisoned(_)) => return Err(unusable()),
    };
    if !ok {
        return Err(arg(format!("handle {h} is not {what}")));
    }
    let e = t.remove(&h).expect("checked above");
    Arc::try_unwrap(e)
        .map_err(|_| busy())?
        .into_inner()
        .map_err(|_| unusable())
}

fn lock(e: &Mutex<Entry>) -> Result<MutexGuard<'_, Entry>, Fail> {
    e.lock()
        .map_err(|_| Fail::Run("this object failed in an earlier call and is unusable".into()))
}

fn with_model<T>(h: jlong, f: impl FnOnce(&mut Session) -> Result<T, Fail>) -> Result<T, Fail> {
    let e = entry(h)?;
    let mut g = lock(&e)?;
    match &mut *g {
        Entry::Model(s) => f(s),
        _ => Err(arg(format!("handle {h} is not a model"))),
    }
}

fn new_session(mut model: Box<dyn Module>) -> Result<jlong, Fail> {
    let flat = compact(model.as_mut())?;
    register(Entry::Model(Session {
        model,
        flat,
        criterion: ClassNLLCriterion::new(),
    }))
}

/// A direct buffer's first `n` floats, checked: not null, direct, large
/// enough, 4-byte aligned.
///
/// # Safety
/// The returned slice aliases the buffer's memory: the caller must not hold
/// two slices of overlapping buffers (see [`disjoint`]) and must drop it
/// before returning to Java.
unsafe fn floats<'a>(
    env: &JNIEnv<'_>,
    buf: &JByteBuffer<'_>,
    what: &str,
    n: usize,
) -> Result<&'a mut [f32], Fail> {
    if buf.is_null() {
        return Err(arg(format!("{what} is null")));
    }
    let ptr = env
        .get_direct_buffer_address(buf)
        .map_err(|_| arg(format!("{what} is not a direct ByteBuffer")))?;
    let cap = env
        .get_direct_buffer_capacity(buf)
        .map_err(|_| arg(format!("{what} is not a direct ByteBuffer")))?;
    let bytes = n
        .checked_mul(4)
        .ok_or_else(|| arg(format!("{what}: {n} numbers")))?;
    if cap < bytes {
        return Err(arg(format!("{what} holds {cap} bytes, {bytes} needed")));
    }
    if ptr.is_null() || !(ptr as usize).is_multiple_of(4) {
        return Err(arg(format!("{what} is not 4-byte aligned")));
    }
    // SAFETY: the JVM keeps a direct buffer's `cap` bytes valid while the
    // buffer object is reachable, which the Java caller guarantees for the
    // call; the pointer is non-null and aligned for f32, and n * 4 <= cap.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<f32>(), n) })
}

/// Checks that no two of the slices overlap (Java may pass one buffer twice).
fn disjoint(slices: &[(&str, &[f32])]) -> Result<(), Fail> {
    for (i, (a, x)) in slices.iter().enumerate() {
        for (b, y) in &slices[i + 1..] {
            let (xs, ys) = (x.as_ptr_range(), y.as_ptr_range());
            if !x.is_empty() && !y.is_empty() && xs.start < ys.end && ys.start < xs.end {
                return Err(arg(format!("{a} and {b} overlap")));
            }
        }
    }
    Ok(())
}

fn shape(env: &JNIEnv<'_>, dims: &JIntArray<'_>) -> Result<Vec<usize>, Fail> {
    if dims.is_null() {
        return Err(arg("the shape is null"));
    }
    let n = env.get_array_length(dims)? as usize;
    if n == 0 || n > 8 {
        return Err(arg(format!("a shape of {n} dimensions")));
    }
    let mut v = vec![0i32; n];
    env.get_int_array_region(dims, 0, &mut v)?;
    if v.iter().any(|&d| d <= 0) {
        return Err(arg(format!("shape {v:?}")));
    }
    Ok(v.iter().map(|&d| d as usize).collect())
}

fn numel(shape: &[usize]) -> Result<usize, Fail> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| arg(format!("shape {shape:?} overflows")))
}

/// `bigdlrs.Native.create(model, classes, seed)`: a model of the zoo
/// (`lenet5`, `resnet20`, `resnet32`, `resnet56`, `vgg16`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_create<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    name: JString<'l>,
    classes: jint,
    seed: jlong,
) -> jlong {
    guard(&mut env, 0, |env| {
        if name.is_null() {
            return Err(arg("the model name is null"));
        }
        let name: String = env.get_string(&name)?.into();
        let classes = usize::try_from(classes)
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| arg(format!("{classes} classes")))?;
        manual_seed(seed as u64);
        let model: Box<dyn Module> = match name.as_str() {
            "lenet5" => Box::new(models::lenet5(classes)?),
            "resnet20" => Box::new(models::resnet_cifar(20, classes)?),
            "resnet32" => Box::new(models::resnet_cifar(32, classes)?),
            "resnet56" => Box::new(models::resnet_cifar(56, classes)?),
            "vgg16" => Box::new(models::vgg16_cifar(classes)?),
            other => return Err(arg(format!("unknown model {other:?}"))),
        };
        new_session(model)
    })
}

/// `bigdlrs.Native.load(bytes)`: a model file (native, ONNX or Torch7).
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_load<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    bytes: JByteArray<'l>,
) -> jlong {
    guard(&mut env, 0, |env| {
        if bytes.is_null() {
            return Err(arg("the model bytes are null"));
        }
        let b = env.convert_byte_array(&bytes)?;
        let model = bigdl_nn::io::import_any(&b).map_err(|e| arg(e.to_string()))?;
        new_session(model)
    })
}

/// `bigdlrs.Native.save(handle)`: the model in the native format.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_save<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jbyteArray {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let bytes = with_model(h, |s| Ok(bigdl_nn::io::encode(s.model.as_mut())?))?;
        Ok(env.byte_array_from_slice(&bytes)?.into_raw())
    })
}

/// `bigdlrs.Native.threads(n)`: sizes this process's worker pool to `n`
/// threads (an executor's cores) unless `BIGDL_NUM_THREADS` is set or the pool
/// already runs, and keeps freed memory in the heap
/// ([`bigdl_tensor::kernels::memory::keep_freed_memory`], unless
/// `BIGDL_MALLOC=system`); returns the pool's size.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_threads<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    n: jint,
) -> jint {
    use bigdl_tensor::kernels::pool;
    guard(&mut env, 0, |_| {
        let threads = usize::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| arg(format!("{n} threads")))?;
        if std::env::var_os("BIGDL_NUM_THREADS").is_none() {
            let _ = pool::init(pool::PoolConfig {
                threads,
                ..pool::PoolConfig::from_env()
            });
        }
        // As the `bigdl` command does: layers' fresh buffers come from the
        // heap, not from pages faulted in anew (BIGDL_MALLOC=system opts out).
        static MALLOC: std::sync::Once = std::sync::Once::new();
        MALLOC.call_once(|| {
            if std::env::var("BIGDL_MALLOC").as_deref() != Ok("system") {
                bigdl_tensor::kernels::memory::keep_freed_memory();
            }
        });
        Ok(jint::try_from(pool::num_threads()).unwrap_or(jint::MAX))
    })
}

/// `bigdlrs.Native.free(handle)`: forgets a model or optimizer.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_free<'l>(mut env: JNIEnv<'l>, _: JClass<'l>, h: jlong) {
    guard(&mut env, (), |_| {
        table()
            .lock()
            .map_err(|_| Fail::Run("the handle table is poisoned".into()))?
            .remove(&h)
            .map(|_| ())
            .ok_or_else(|| arg(format!("no object with handle {h} (freed twice?)")))
    })
}

/// `bigdlrs.Native.numParams(handle)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_numParams<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jlong {
    guard(&mut env, 0, |_| {
        with_model(h, |s| Ok(s.flat.weight.numel() as jlong))
    })
}

/// `bigdlrs.Native.trainStep(handle, x, shape, labels, grad)`: forward and
/// backward on a batch (`x` of `shape`, batch first; `labels` 0-based class
/// indices as floats); writes the batch-mean gradient of every parameter
/// into `grad` and returns the mean loss. Weights are not changed.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_trainStep<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    x: JByteBuffer<'l>,
    dims: JIntArray<'l>,
    labels: JByteBuffer<'l>,
    grad: JByteBuffer<'l>,
) -> jfloat {
    guard(&mut env, f32::NAN, |env| {
        let dims = shape(env, &dims)?;
        with_model(h, |s| {
            // SAFETY: the three slices are checked disjoint before use and
            // dropped before this call returns.
            let (xs, ls, gs) = unsafe {
                (
                    floats(env, &x, "x", numel(&dims)?)?,
                    floats(env, &labels, "labels", dims[0])?,
                    floats(env, &grad, "grad", s.flat.grad.numel())?,
                )
            };
            disjoint(&[("x", xs), ("labels", ls), ("grad", gs)])?;
            let loss = local_gradient(s, xs, &dims, ls)?;
            gs.copy_from_slice(&s.flat.grad.as_slice()?);
            Ok(loss)
        })
    })
}

/// Forward and backward of a batch in training mode: the batch-mean
/// gradient in the session's flat gradient; returns the mean loss.
fn local_gradient(s: &mut Session, xs: &[f32], dims: &[usize], ls: &[f32]) -> Result<f32, Fail> {
    let input: Activity = Tensor::from_vec(xs.to_vec(), dims)?.into();
    let target: Activity = Tensor::from_vec(ls.to_vec(), &[dims[0]])?.into();
    s.model.training();
    s.model.zero_grad_parameters();
    let y = s.model.forward(&input)?;
    let loss = s.criterion.forward(&y, &target)?;
    let gy = s.criterion.backward(&y, &target)?;
    s.model.backward_parameters(&input, &gy)?;
    Ok(loss)
}

/// `bigdlrs.Native.getWeights(handle, offset, n, out)`: weights
/// `offset..offset + n` into `out`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_getWeights<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    offset: jlong,
    n: jint,
    out: JByteBuffer<'l>,
) {
    guard(&mut env, (), |env| {
        with_model(h, |s| {
            let r = range(offset, n, s.flat.weight.numel())?;
            // SAFETY: one slice, dropped before returning.
            let o = unsafe { floats(env, &out, "out", r.len())? };
            o.copy_from_slice(&s.flat.weight.as_slice()?[r]);
            Ok(())
        })
    })
}

/// `bigdlrs.Native.setWeights(handle, offset, n, in)`: weights
/// `offset..offset + n` from `in`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_setWeights<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    offset: jlong,
    n: jint,
    input: JByteBuffer<'l>,
) {
    guard(&mut env, (), |env| {
        with_model(h, |s| {
            let r = range(offset, n, s.flat.weight.numel())?;
            // SAFETY: one slice, dropped before returning.
            let i = unsafe { floats(env, &input, "in", r.len())? };
            s.flat.weight.as_slice_mut()?[r].copy_from_slice(i);
            Ok(())
        })
    })
}

fn range(offset: jlong, n: jint, len: usize) -> Result<std::ops::Range<usize>, Fail> {
    match (usize::try_from(offset), usize::try_from(n)) {
        (Ok(o), Ok(k)) if o.checked_add(k).is_some_and(|e| e <= len) => Ok(o..o + k),
        _ => Err(arg(format!(
            "weights {offset}..{offset}+{n} of a model with {len}"
        ))),
    }
}

/// `bigdlrs.Native.predict(handle, x, shape)`: the model's output for `x`
/// (evaluation mode), flattened, batch first.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_predict<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    x: JByteBuffer<'l>,
    dims: JIntArray<'l>,
) -> jfloatArray {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let dims = shape(env, &dims)?;
        let y = with_model(h, |s| {
            // SAFETY: one slice, copied at once and dropped.
            let xs = unsafe { floats(env, &x, "x", numel(&dims)?)? };
            let input: Activity = Tensor::from_vec(xs.to_vec(), &dims)?.into();
            s.model.evaluate();
            let y = s.model.forward(&input);
            s.model.training();
            Ok(y?.into_tensor("predict")?.contiguous().to_vec())
        })?;
        let n = i32::try_from(y.len()).map_err(|_| Fail::Run("an output over 2^31".into()))?;
        let arr = env.new_float_array(n)?;
        env.set_float_array_region(&arr, 0, &y)?;
        Ok(arr.into_raw())
    })
}

/// `bigdlrs.Native.optimizer(method, lr, momentum, weightDecay)`: `sgd`
/// (with momentum) or `adam`, for [`Java_bigdlrs_Native_optimStep`].
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_optimizer<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    method: JString<'l>,
    lr: jfloat,
    momentum: jfloat,
    weight_decay: jfloat,
) -> jlong {
    guard(&mut env, 0, |env| {
        if method.is_null() {
            return Err(arg("the method is null"));
        }
        let method: String = env.get_string(&method)?.into();
        if !(lr.is_finite() && lr > 0.0 && momentum.is_finite() && weight_decay.is_finite()) {
            return Err(arg(format!(
                "lr {lr}, momentum {momentum}, weight decay {weight_decay}"
            )));
        }
        let o: Box<dyn OptimMethod> = match method.as_str() {
            "sgd" => Box::new(
                Sgd::new(lr)
                    .with_momentum(momentum)
                    .with_weight_decay(weight_decay),
            ),
            "adam" => {
                let mut a = Adam::new(lr);
                a.weight_decay = weight_decay;
                Box::new(a)
            }
            m => return Err(arg(format!("unknown optimization method {m:?}"))),
        };
        register(Entry::Optim(o))
    })
}

/// `bigdlrs.Native.optimStep(optimizer, weights, grads, n)`: one step on a
/// shard of `n` weights in place (its state is kept per optimizer handle:
/// use one optimizer per shard).
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_optimStep<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    o: jlong,
    weights: JByteBuffer<'l>,
    grads: JByteBuffer<'l>,
    n: jint,
) {
    guard(&mut env, (), |env| {
        let n = usize::try_from(n).map_err(|_| arg(format!("{n} weights")))?;
        let e = entry(o)?;
        let mut g = lock(&e)?;
        let Entry::Optim(opt) = &mut *g else {
            return Err(arg(format!("handle {o} is not an optimizer")));
        };
        // SAFETY: the two slices are checked disjoint and dropped before
        // returning.
        let (w, gr) = unsafe {
            (
                floats(env, &weights, "weights", n)?,
                floats(env, &grads, "grads", n)?,
            )
        };
        disjoint(&[("weights", w), ("grads", gr)])?;
        opt.step(w, gr)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_checked() {
        let m = new_session(Box::new(models::lenet5(10).unwrap())).unwrap();
        assert!(with_model(m, |s| Ok(s.flat.weight.numel())).unwrap() > 0);
        assert!(matches!(entry(m + 1000), Err(Fail::Arg(_))));
        assert!(matches!(range(-1, 3, 10), Err(Fail::Arg(_))));
        assert!(matches!(range(8, 3, 10), Err(Fail::Arg(_))));
        assert_eq!(range(7, 3, 10).unwrap(), 7..10);
        let a = [0.0f32; 8];
        assert!(disjoint(&[("a", &a[..4]), ("b", &a[4..])]).is_ok());
        assert!(disjoint(&[("a", &a[..5]), ("b", &a[4..])]).is_err());
    }
}
