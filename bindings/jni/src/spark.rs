//! Distributed training from the JVM: BigDL's sharded all-reduce over a
//! block store that Java implements (`bigdlrs.spark.BlockManagerStore`:
//! Spark's BlockManager), driven one iteration at a time by
//! [`Java_bigdlrs_Native_distriStep`] from each task of a barrier stage.

use std::time::Duration;

use bigdl_comm::block::{BlockStore, BlockTransport};
use bigdl_comm::{Collectives, Communicator, Wire, shard_range};
use jni::objects::{GlobalRef, JByteArray, JByteBuffer, JClass, JIntArray, JObject, JString};
use jni::sys::{jboolean, jfloat, jint, jlong};
use jni::{JNIEnv, JavaVM};

use super::{Entry, Fail, arg, disjoint, entry, floats, guard, lock, numel, register, shape};

/// A [`BlockStore`] whose blocks a Java object keeps: `put(String, byte[])`,
/// `byte[] get(String)` (null when absent) and `remove(String)`.
pub struct JavaStore {
    vm: JavaVM,
    store: GlobalRef,
}

impl JavaStore {
    fn call<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut JNIEnv<'_>) -> jni::errors::Result<T>,
    ) -> bigdl_comm::Result<T> {
        let fail = |e: jni::errors::Error| {
            bigdl_comm::Error::Transport(format!("the Java block store's {what}: {e}"))
        };
        let mut env = self.vm.attach_current_thread().map_err(fail)?;
        // A frame per call: polling creates many local references.
        env.with_local_frame(8, |env| f(env)).map_err(fail)
    }
}

impl BlockStore for JavaStore {
    fn put(&self, id: &str, bytes: Vec<u8>) -> bigdl_comm::Result<()> {
        self.call("put", |env| {
            let id = env.new_string(id)?;
            let b = env.byte_array_from_slice(&bytes)?;
            env.call_method(
                &self.store,
                "put",
                "(Ljava/lang/String;[B)V",
                &[(&id).into(), (&b).into()],
            )?;
            Ok(())
        })
    }

    fn get(&self, id: &str, _wait: Duration) -> bigdl_comm::Result<Option<Vec<u8>>> {
        self.call("get", |env| {
            let id = env.new_string(id)?;
            let v = env
                .call_method(
                    &self.store,
                    "get",
                    "(Ljava/lang/String;)[B",
                    &[(&id).into()],
                )?
                .l()?;
            if v.is_null() {
                return Ok(None);
            }
            Ok(Some(env.convert_byte_array(JByteArray::from(v))?))
        })
    }

    fn remove(&self, id: &str) -> bigdl_comm::Result<()> {
        self.call("remove", |env| {
            let id = env.new_string(id)?;
            env.call_method(
                &self.store,
                "remove",
                "(Ljava/lang/String;)V",
                &[(&id).into()],
            )?;
            Ok(())
        })
    }
}

/// One rank of a distributed job: its collectives and its shard of the
/// weights (the optimizer's master copy).
pub struct Ranked {
    comm: Collectives<BlockTransport<JavaStore>>,
    master: Option<Vec<f32>>,
    shard: Vec<f32>,
}

/// `bigdlrs.Native.commCreate(store, job, rank, size, timeoutMs, bf16)`:
/// rank `rank` of `size` in job `job` over a Java block store.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_commCreate<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    store: JObject<'l>,
    job: JString<'l>,
    rank: jint,
    size: jint,
    timeout_ms: jlong,
    bf16: jboolean,
) -> jlong {
    guard(&mut env, 0, |env| {
        if store.is_null() || job.is_null() {
            return Err(arg("the store or the job name is null"));
        }
        let job: String = env.get_string(&job)?.into();
        let (rank, size) = (usize::try_from(rank), usize::try_from(size));
        let (Ok(rank), Ok(size)) = (rank, size) else {
            return Err(arg("a negative rank or size"));
        };
        if timeout_ms <= 0 {
            return Err(arg(format!("timeout {timeout_ms} ms")));
        }
        let js = JavaStore {
            vm: env.get_java_vm()?,
            store: env.new_global_ref(&store)?,
        };
        let transport =
            BlockTransport::new(js, &job, rank, size).map_err(|e| arg(e.to_string()))?;
        let comm = Collectives::new(transport)
            .with_timeout(Duration::from_millis(timeout_ms as u64))
            .with_wire(if bf16 != 0 { Wire::Bf16 } else { Wire::F32 });
        register(Entry::Comm(Ranked {
            comm,
            master: None,
            shard: Vec::new(),
        }))
    })
}

/// `bigdlrs.Native.distriStep(model, comm, optimizer, x, shape, labels,
/// globalBatch)`: one synchronous iteration on this rank's part of a global
/// batch of `globalBatch` samples: forward and backward, reduce-scatter of
/// the gradient, the optimizer on this rank's weight shard, all-gather of
/// the weights into the model. Returns the global batch's mean loss. Every
/// rank calls it with the same iteration's parts.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_distriStep<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    model: jlong,
    comm: jlong,
    optim: jlong,
    x: JByteBuffer<'l>,
    dims: JIntArray<'l>,
    labels: JByteBuffer<'l>,
    global: jint,
) -> jfloat {
    guard(&mut env, f32::NAN, |env| {
        let dims = shape(env, &dims)?;
        let n = dims[0];
        let global = usize::try_from(global)
            .ok()
            .filter(|&g| g >= n && g > 0)
            .ok_or_else(|| arg(format!("a global batch of {global} for {n} local samples")))?;
        if model == comm || comm == optim || model == optim {
            return Err(arg(
                "the model, communicator and optimizer handles must differ",
            ));
        }
        let (me, ce, oe) = (entry(model)?, entry(comm)?, entry(optim)?);
        let (mut mg, mut cg, mut og) = (lock(&me)?, lock(&ce)?, lock(&oe)?);
        let (Entry::Model(s), Entry::Comm(r), Entry::Optim(o)) = (&mut *mg, &mut *cg, &mut *og)
        else {
            return Err(arg("expected a model, a communicator and an optimizer"));
        };
        // SAFETY: two slices, checked disjoint, copied and dropped here.
        let (xs, ls) = unsafe {
            (
                floats(env, &x, "x", numel(&dims)?)?,
                floats(env, &labels, "labels", n)?,
            )
        };
        disjoint(&[("x", xs), ("labels", ls)])?;
        let share = n as f32 / global as f32;
        let loss = super::local_gradient(s, xs, &dims, ls)? * share;
        let mut grad = s.flat.grad.as_slice_mut()?;
        grad.iter_mut().for_each(|g| *g *= share);
        let len = grad.len();
        let range = shard_range(len, r.comm.size(), r.comm.rank());
        r.shard.resize(range.len(), 0.0);
        r.comm
            .reduce_scatter(&grad, &mut r.shard)
            .map_err(comm_fail)?;
        drop(grad);
        let mut l = [loss];
        r.comm.all_reduce(&mut l).map_err(comm_fail)?;
        let weights = &s.flat.weight;
        let master = match &mut r.master {
            Some(m) => m,
            None => r.master.insert(weights.as_slice()?[range].to_vec()),
        };
        o.step(master, &r.shard)?;
        r.comm
            .all_gather(master, &mut weights.as_slice_mut()?)
            .map_err(comm_fail)?;
        Ok(l[0])
    })
}

fn comm_fail(e: bigdl_comm::Error) -> Fail {
    Fail::Run(e.to_string())
}
