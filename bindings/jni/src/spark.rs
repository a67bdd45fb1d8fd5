//! Distributed training from the JVM: BigDL's sharded all-reduce over a
//! block store that Java implements (`bigdlrs.spark.BlockManagerStore`:
//! Spark's BlockManager), driven one iteration at a time by
//! [`Java_bigdlrs_Native_distriStep`] from each task of a barrier stage.

use std::time::{Duration, Instant};

use bigdl_comm::block::{BlockStore, BlockTransport};
use bigdl_comm::{Collectives, Communicator, Transport, Wire, shard_range, tcp};
use bigdl_nn::OptimState;
use bigdl_tensor::kernels::checksum::crc32;
use jni::objects::{
    GlobalRef, JByteArray, JByteBuffer, JClass, JIntArray, JObject, JObjectArray, JString,
};
use jni::sys::{jboolean, jbyteArray, jdoubleArray, jfloat, jint, jlong, jstring};
use jni::{JNIEnv, JavaVM};

use super::{Entry, Fail, arg, disjoint, entry, floats, guard, lock, numel, register, shape};

/// A [`BlockStore`] whose blocks a Java object keeps: `put(String, int, byte[])`,
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
    fn put(&self, id: &str, to: usize, bytes: Vec<u8>) -> bigdl_comm::Result<()> {
        self.call("put", |env| {
            let id = env.new_string(id)?;
            let b = env.byte_array_from_slice(&bytes)?;
            let to = jint::try_from(to).unwrap_or(jint::MAX);
            env.call_method(
                &self.store,
                "put",
                "(Ljava/lang/String;I[B)V",
                &[(&id).into(), to.into(), (&b).into()],
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
    comm: Box<dyn Communicator + Send>,
    /// This rank's shard of the weights, the optimizer's master copy (the
    /// last rank's ends with the slot of the summed loss).
    master: Option<Vec<f32>>,
    shard: Vec<f32>,
    /// The gradient and the loss on their way out; the weights and the loss
    /// on their way back.
    send: Vec<f32>,
    /// Iterations run, and seconds spent computing gradients and in the rest
    /// of the step (the collectives and the optimizer on the shard).
    stats: [f64; 3],
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
        register(Entry::Comm(Ranked::new(transport, timeout_ms, bf16)))
    })
}

impl Ranked {
    fn new<T: Transport + Send + 'static>(t: T, timeout_ms: jlong, bf16: jboolean) -> Ranked {
        let comm = Collectives::new(t)
            .with_timeout(Duration::from_millis(timeout_ms as u64))
            .with_wire(if bf16 != 0 { Wire::Bf16 } else { Wire::F32 });
        Ranked {
            comm: Box::new(comm),
            master: None,
            shard: Vec::new(),
            send: Vec::new(),
            stats: [0.0; 3],
        }
    }
}

/// `bigdlrs.Native.tcpListen(host)`: a listening socket on `host` (any free
/// port) for [`Java_bigdlrs_Native_tcpConnect`]; its address is
/// [`Java_bigdlrs_Native_tcpAddress`].
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_tcpListen<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    host: JString<'l>,
) -> jlong {
    guard(&mut env, 0, |env| {
        if host.is_null() {
            return Err(arg("the host is null"));
        }
        let host: String = env.get_string(&host)?.into();
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:0")
        } else {
            format!("{host}:0")
        };
        let l = tcp::Listener::bind(&addr).map_err(|e| Fail::Run(e.to_string()))?;
        register(Entry::Listener(l))
    })
}

/// `bigdlrs.Native.tcpAddress(listener)`: `host:port` for the peers.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_tcpAddress<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    listener: jlong,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let e = entry(listener)?;
        let g = lock(&e)?;
        let Entry::Listener(l) = &*g else {
            return Err(arg("expected a TCP listener"));
        };
        let a = l.local_addr().map_err(|e| Fail::Run(e.to_string()))?;
        Ok(env.new_string(a.to_string())?.into_raw())
    })
}

/// `bigdlrs.Native.tcpConnect(listener, job, rank, peers, timeoutMs,
/// bf16)`: rank `rank` of job `job` over TCP, `peers[q]` being rank `q`'s
/// listener address; consumes the listener (its handle is freed).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_bigdlrs_Native_tcpConnect<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    listener: jlong,
    job: JString<'l>,
    rank: jint,
    peers: JObjectArray<'l>,
    timeout_ms: jlong,
    bf16: jboolean,
) -> jlong {
    guard(&mut env, 0, |env| {
        // The listener is used up first, whatever fails next: the Java side
        // never frees it after this call.
        let Entry::Listener(l) = super::take(listener, "a TCP listener", |e| {
            matches!(e, Entry::Listener(_))
        })?
        else {
            unreachable!("take checked the kind");
        };
        if job.is_null() || peers.is_null() {
            return Err(arg("the job name or the peers are null"));
        }
        let job: String = env.get_string(&job)?.into();
        let n = env.get_array_length(&peers)?;
        let mut addrs = Vec::with_capacity(n.max(0) as usize);
        for i in 0..n {
            let p = JString::from(env.get_object_array_element(&peers, i)?);
            if p.is_null() {
                return Err(arg(format!("peer {i} is null")));
            }
            let a = String::from(env.get_string(&p)?);
            // One local reference per peer: freed as we go, for large worlds.
            env.delete_local_ref(p)?;
            addrs.push(a);
        }
        let rank = usize::try_from(rank).map_err(|_| arg(format!("rank {rank}")))?;
        if timeout_ms <= 0 {
            return Err(arg(format!("timeout {timeout_ms} ms")));
        }
        let t = l
            .connect(&job, rank, &addrs, Duration::from_millis(timeout_ms as u64))
            .map_err(|e| match e {
                bigdl_comm::Error::Invalid(m) => arg(m),
                e => Fail::Run(e.to_string()),
            })?;
        register(Entry::Comm(Ranked::new(t, timeout_ms, bf16)))
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
        let start = Instant::now();
        let loss = super::local_gradient(s, xs, &dims, ls)? * share;
        let computed = Instant::now();
        // The loss rides at the end of the gradient: one reduce-scatter and
        // one all-gather per step, no exchange of its own (so with the bf16
        // wire the reported loss is rounded to bf16 too: 2-3 digits).
        let grad = s.flat.grad.as_slice()?;
        let len = grad.len();
        r.send.clear();
        r.send.extend(grad.iter().map(|g| g * share));
        r.send.push(loss);
        drop(grad);
        let range = shard_range(len + 1, r.comm.size(), r.comm.rank());
        let mine = range.start..range.end.min(len);
        // A restored shard of the wrong size fails here, before the peers
        // wait on this rank in a collective.
        if let Some(m) = &r.master
            && m.len() != range.len()
        {
            return Err(arg(format!(
                "a restored shard of {} weights for rank {} of {} ({} expected): \
                 the state of another model or world size",
                m.len(),
                r.comm.rank(),
                r.comm.size(),
                range.len()
            )));
        }
        r.shard.resize(range.len(), 0.0);
        r.comm
            .reduce_scatter(&r.send, &mut r.shard)
            .map_err(comm_fail)?;
        let weights = &s.flat.weight;
        let master = match &mut r.master {
            Some(m) => m,
            None => {
                let mut m = weights.as_slice()?[mine.clone()].to_vec();
                m.resize(range.len(), 0.0);
                r.master.insert(m)
            }
        };
        let k = mine.len();
        o.step(&mut master[..k], &r.shard[..k])?;
        master[k..].copy_from_slice(&r.shard[k..]);
        r.comm.all_gather(master, &mut r.send).map_err(comm_fail)?;
        weights.as_slice_mut()?.copy_from_slice(&r.send[..len]);
        let loss = r.send[len];
        r.stats[0] += 1.0;
        r.stats[1] += (computed - start).as_secs_f64();
        r.stats[2] += computed.elapsed().as_secs_f64();
        Ok(loss)
    })
}

/// `bigdlrs.Native.commAllReduce(comm, buf, n)`: sums `n` floats of `buf`
/// over the ranks, in place (every rank calls it with the same `n`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_commAllReduce<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    comm: jlong,
    buf: JByteBuffer<'l>,
    n: jint,
) {
    guard(&mut env, (), |env| {
        let n = usize::try_from(n).map_err(|_| arg(format!("{n} floats")))?;
        // SAFETY: one slice, dropped before returning.
        let xs = unsafe { floats(env, &buf, "buf", n)? };
        with_comm(comm, |r| r.comm.all_reduce(xs).map_err(comm_fail))
    })
}

/// `bigdlrs.Native.commStats(comm)`: `{iterations, compute seconds,
/// synchronisation seconds}` of this rank so far: the time of the forward and
/// backward passes, and the rest of each step (all-reduce of the gradients,
/// the optimizer on this rank's shard, all-gather of the weights).
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_commStats<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    comm: jlong,
) -> jdoubleArray {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let stats = with_comm(comm, |r| Ok(r.stats))?;
        let out = env.new_double_array(3)?;
        env.set_double_array_region(&out, 0, &stats)?;
        Ok(out.into_raw())
    })
}

/// Runs `f` on the communicator behind handle `h`.
fn with_comm<T>(h: jlong, f: impl FnOnce(&mut Ranked) -> Result<T, Fail>) -> Result<T, Fail> {
    let e = entry(h)?;
    let mut g = lock(&e)?;
    let Entry::Comm(r) = &mut *g else {
        return Err(arg(format!("handle {h} is not a communicator")));
    };
    f(r)
}

fn comm_fail(e: bigdl_comm::Error) -> Fail {
    Fail::Run(e.to_string())
}

const STATE_MAGIC: &[u8; 4] = b"BDLR";

/// `bigdlrs.Native.commSave(comm, optimizer)`: this rank's part of a
/// checkpoint: its master shard of the weights and its optimizer's state.
/// `BDLR`, the step count, the number of buffers, then each of the master
/// shard and the buffers as a length and floats (all little-endian), and a
/// CRC-32 of everything before it.
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_commSave<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    comm: jlong,
    optim: jlong,
) -> jbyteArray {
    guard(&mut env, std::ptr::null_mut(), |env| {
        if comm == optim {
            return Err(arg("the communicator and optimizer handles must differ"));
        }
        let (ce, oe) = (entry(comm)?, entry(optim)?);
        let (cg, og) = (lock(&ce)?, lock(&oe)?);
        let (Entry::Comm(r), Entry::Optim(o)) = (&*cg, &*og) else {
            return Err(arg("expected a communicator and an optimizer"));
        };
        let Some(master) = &r.master else {
            return Err(arg("nothing to save before the first step"));
        };
        let out = encode_state(master, o.state());
        Ok(env.byte_array_from_slice(&out)?.into_raw())
    })
}

/// `bigdlrs.Native.commRestore(comm, optimizer, state)`: restores what
/// [`Java_bigdlrs_Native_commSave`] saved (the same rank of the same world
/// and model: checked at the next step).
#[unsafe(no_mangle)]
pub extern "system" fn Java_bigdlrs_Native_commRestore<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    comm: jlong,
    optim: jlong,
    state: JByteArray<'l>,
) {
    guard(&mut env, (), |env| {
        if state.is_null() {
            return Err(arg("the state is null"));
        }
        if comm == optim {
            return Err(arg("the communicator and optimizer handles must differ"));
        }
        let bytes = env.convert_byte_array(&state)?;
        let (master, st) = decode_state(&bytes).map_err(|e| arg(format!("a rank's state: {e}")))?;
        let (ce, oe) = (entry(comm)?, entry(optim)?);
        let (mut cg, mut og) = (lock(&ce)?, lock(&oe)?);
        let (Entry::Comm(r), Entry::Optim(o)) = (&mut *cg, &mut *og) else {
            return Err(arg("expected a communicator and an optimizer"));
        };
        r.master = Some(master);
        o.set_state(st);
        Ok(())
    })
}

fn encode_state(master: &[f32], st: &OptimState) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(STATE_MAGIC);
    out.extend_from_slice(&st.steps.to_le_bytes());
    out.extend_from_slice(&(st.buffers.len() as u64).to_le_bytes());
    for v in std::iter::once(master).chain(st.buffers.iter().map(Vec::as_slice)) {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        v.iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_state(b: &[u8]) -> Result<(Vec<f32>, OptimState), String> {
    let body = b
        .len()
        .checked_sub(4)
        .map(|n| &b[..n])
        .filter(|body| body.len() >= 20 && &body[..4] == STATE_MAGIC)
        .ok_or("not a bigdl rank state")?;
    if crc32(body).to_le_bytes() != b[body.len()..] {
        return Err("checksum mismatch".into());
    }
    let mut at = 4;
    let u64_at = |at: &mut usize| -> Result<u64, String> {
        let v = body
            .get(*at..*at + 8)
            .ok_or("truncated")?
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| "truncated")?;
        *at += 8;
        Ok(v)
    };
    let steps = u64_at(&mut at)?;
    let n = u64_at(&mut at)?;
    let mut vecs = Vec::new();
    for _ in 0..=n {
        let len = usize::try_from(u64_at(&mut at)?).map_err(|_| "a huge length")?;
        // Bounded by the bytes that are there, never by the header.
        let end = len
            .checked_mul(4)
            .and_then(|l| l.checked_add(at))
            .filter(|&e| e <= body.len())
            .ok_or("truncated")?;
        vecs.push(
            body[at..end]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        );
        at = end;
    }
    if at != body.len() {
        return Err("trailing bytes".into());
    }
    let master = vecs.remove(0);
    Ok((
        master,
        OptimState {
            steps,
            buffers: vecs,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_state_round_trips_and_rejects_damage() {
        let st = OptimState {
            steps: 7,
            buffers: vec![vec![1.5, -2.0], vec![0.25, 3.0]],
        };
        let b = encode_state(&[0.5, 1.0], &st);
        let (m, back) = decode_state(&b).unwrap();
        assert_eq!((m, back), (vec![0.5, 1.0], st));
        for cut in 0..b.len() {
            assert!(decode_state(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = b.clone();
        flipped[30] ^= 1;
        assert_eq!(decode_state(&flipped).unwrap_err(), "checksum mismatch");
        // A hostile length with a valid checksum: an error, no allocation.
        let mut huge = b[..b.len() - 4].to_vec();
        huge[20..28].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32(&huge);
        huge.extend_from_slice(&crc.to_le_bytes());
        assert!(decode_state(&huge).is_err());
    }
}
