//! The collectives, written once over a [`Transport`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::{Communicator, bf16, shard_range, wire};

/// How long a rank waits for its peers in one exchange unless told
/// otherwise (`BIGDL_COMM_TIMEOUT`, in seconds, overrides it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How numbers travel between ranks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wire {
    /// Exact `f32`.
    #[default]
    F32,
    /// bfloat16, rounded to nearest even ([`crate::bf16`]): half the bytes.
    /// Applies to reduce-scatter, all-gather and all-reduce of buffers of
    /// [`BF16_MIN_LEN`] numbers or more (gradients, weights); smaller ones
    /// (losses, scores) and broadcasts stay exact.
    Bf16,
}

/// The shortest buffer that [`Wire::Bf16`] compresses.
pub const BF16_MIN_LEN: usize = 1024;

impl Wire {
    /// The format for a buffer of `len` numbers.
    fn for_len(self, len: usize) -> Wire {
        if len < BF16_MIN_LEN { Wire::F32 } else { self }
    }

    fn bytes(self) -> usize {
        match self {
            Wire::F32 => 4,
            Wire::Bf16 => 2,
        }
    }

    /// Writes `xs` into `out` (`xs.len() * bytes()` long).
    fn encode(self, xs: &[f32], out: &mut [u8]) {
        match self {
            Wire::F32 => wire::encode_f32(xs, out),
            Wire::Bf16 => wire::encode_bf16(xs, out),
        }
    }

    /// `dst[i] = x_i` for the numbers in `bytes`.
    fn decode(self, bytes: &[u8], dst: &mut [f32]) {
        match self {
            Wire::F32 => wire::decode_f32(bytes, dst),
            Wire::Bf16 => wire::decode_bf16(bytes, dst),
        }
    }

    /// `dst[i] += x_i` for the numbers in `bytes`.
    fn decode_add(self, bytes: &[u8], dst: &mut [f32]) {
        match self {
            Wire::F32 => wire::decode_add_f32(bytes, dst),
            Wire::Bf16 => wire::decode_add_bf16(bytes, dst),
        }
    }
}

/// Point-to-point byte messages between ranks: all a backend provides.
pub trait Transport {
    /// This process's rank.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// One round of messages, all under `tag`: sends `sends[i].1` to rank
    /// `sends[i].0` and receives one message from each rank `recvs[i].0`
    /// into `recvs[i].1`, which it fills exactly (its length is the
    /// expected message length). Returns the filled receive buffers in
    /// `recvs` order, and the send buffers it is done with (for reuse; it
    /// may keep them). All ranks call it at once, so sends must not wait
    /// for the receiver. Fails with
    /// [`Error::Timeout`] naming the ranks that have not delivered when
    /// `timeout` has passed, [`Error::PeerGone`] when a peer has left, and
    /// [`Error::Protocol`] for a message of the wrong tag or length; `op`
    /// names the collective in those errors.
    fn exchange(
        &self,
        op: &str,
        tag: u64,
        sends: Vec<(usize, Vec<u8>)>,
        recvs: Vec<(usize, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<Exchanged>;
}

/// What [`Transport::exchange`] returns: the received messages in order,
/// and spare buffers.
pub type Exchanged = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// BigDL's sharded collectives over a [`Transport`]: a [`Communicator`].
#[derive(Debug)]
pub struct Collectives<T> {
    transport: T,
    wire: Wire,
    timeout: Duration,
    seq: AtomicU64,
    /// Message buffers kept between calls: large fresh allocations would
    /// fault in their pages on every collective.
    scratch: Mutex<Vec<Vec<u8>>>,
    /// The shard of an all-reduce, kept for the same reason.
    shard: Mutex<Vec<f32>>,
}

impl<T: Transport> Collectives<T> {
    /// The collectives over `transport`, exact `f32` on the wire, with
    /// `BIGDL_COMM_TIMEOUT` seconds (or [`DEFAULT_TIMEOUT`]) per exchange.
    pub fn new(transport: T) -> Collectives<T> {
        let timeout = std::env::var("BIGDL_COMM_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
        Collectives {
            transport,
            wire: Wire::F32,
            timeout,
            seq: AtomicU64::new(0),
            scratch: Mutex::new(Vec::new()),
            shard: Mutex::new(Vec::new()),
        }
    }

    /// Sets how long a rank waits for its peers in one exchange.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the wire format of reduce-scatter and all-gather.
    pub fn with_wire(mut self, wire: Wire) -> Self {
        self.wire = wire;
        self
    }

    /// The wire format.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// A buffer of `len` bytes (contents unspecified).
    fn buffer(&self, len: usize) -> Vec<u8> {
        let mut v = self
            .scratch
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        if v.len() < len {
            v.resize(len, 0);
        }
        v.truncate(len);
        v
    }

    fn recycle(&self, bufs: impl IntoIterator<Item = Vec<u8>>) {
        if let Ok(mut s) = self.scratch.lock() {
            s.extend(bufs);
            // Enough for every peer's send and receive.
            s.truncate(2 * self.size() + 2);
        }
    }

    /// `sends` (peer, numbers) encoded with `wire`; receives `recvs` (peer,
    /// count) in `wire`; returns the received bytes.
    fn exchange(
        &self,
        op: &str,
        wire: Wire,
        sends: &[(usize, &[f32])],
        recvs: &[(usize, usize)],
    ) -> Result<Vec<Vec<u8>>> {
        let tag = self.seq.fetch_add(1, Ordering::Relaxed);
        let op = format!("{op} #{tag}");
        let sends = sends
            .iter()
            .map(|&(q, xs)| {
                let mut b = self.buffer(xs.len() * wire.bytes());
                wire.encode(xs, &mut b);
                (q, b)
            })
            .collect();
        let recvs = recvs
            .iter()
            .map(|&(q, n)| (q, self.buffer(n * wire.bytes())))
            .collect();
        let (got, spare) = self
            .transport
            .exchange(&op, tag, sends, recvs, self.timeout)?;
        self.recycle(spare);
        Ok(got)
    }

    fn check_len(&self, op: &str, what: &str, got: usize, want: usize) -> Result<()> {
        if got == want {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "rank {}: {op}: {what} holds {got} numbers, expected {want}",
            self.rank()
        )))
    }

    fn peers(&self) -> impl Iterator<Item = usize> + use<T> {
        let (r, n) = (self.rank(), self.size());
        (0..n).filter(move |&q| q != r)
    }
}

impl<T: Transport> Communicator for Collectives<T> {
    fn rank(&self) -> usize {
        self.transport.rank()
    }

    fn size(&self) -> usize {
        self.transport.size()
    }

    fn reduce_scatter(&self, buf: &[f32], my_shard: &mut [f32]) -> Result<()> {
        let (r, n) = (self.rank(), self.size());
        let mine = shard_range(buf.len(), n, r);
        self.check_len("reduce_scatter", "the shard", my_shard.len(), mine.len())?;
        let wire = self.wire.for_len(buf.len());
        let sends: Vec<(usize, &[f32])> = self
            .peers()
            .map(|q| (q, &buf[shard_range(buf.len(), n, q)]))
            .collect();
        let recvs: Vec<(usize, usize)> = self.peers().map(|q| (q, mine.len())).collect();
        let got = self.exchange("reduce_scatter", wire, &sends, &recvs)?;
        // Rank order, from +0.0: the sum a single process would form.
        my_shard.fill(0.0);
        let mut msgs = got.iter();
        for q in 0..n {
            if q == r {
                my_shard
                    .iter_mut()
                    .zip(&buf[mine.clone()])
                    .for_each(|(s, &x)| *s += x);
            } else if let Some(bytes) = msgs.next() {
                wire.decode_add(bytes, my_shard);
            }
        }
        self.recycle(got);
        Ok(())
    }

    fn all_gather(&self, my_shard: &[f32], buf: &mut [f32]) -> Result<()> {
        let (r, n) = (self.rank(), self.size());
        let len = buf.len();
        let mine = shard_range(len, n, r);
        self.check_len("all_gather", "the shard", my_shard.len(), mine.len())?;
        let wire = self.wire.for_len(len);
        let sends: Vec<(usize, &[f32])> = self.peers().map(|q| (q, my_shard)).collect();
        let recvs: Vec<(usize, usize)> = self
            .peers()
            .map(|q| (q, shard_range(len, n, q).len()))
            .collect();
        let got = self.exchange("all_gather", wire, &sends, &recvs)?;
        for ((q, _), bytes) in recvs.iter().zip(&got) {
            wire.decode(bytes, &mut buf[shard_range(len, n, *q)]);
        }
        self.recycle(got);
        // Every rank holds the same numbers, this rank's shard included.
        let dst = &mut buf[mine];
        match wire {
            Wire::F32 => dst.copy_from_slice(my_shard),
            Wire::Bf16 => dst
                .iter_mut()
                .zip(my_shard)
                .for_each(|(d, &x)| *d = bf16::decode(bf16::encode(x))),
        }
        Ok(())
    }

    fn all_reduce(&self, buf: &mut [f32]) -> Result<()> {
        let r = shard_range(buf.len(), self.size(), self.rank());
        let mut shard = self
            .shard
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        shard.resize(r.len(), 0.0);
        let result = self
            .reduce_scatter(buf, &mut shard)
            .and_then(|()| self.all_gather(&shard, buf));
        if let Ok(mut s) = self.shard.lock() {
            *s = shard;
        }
        result
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()> {
        let (r, n) = (self.rank(), self.size());
        if root >= n {
            return Err(Error::Invalid(format!(
                "broadcast from rank {root} in a world of {n}"
            )));
        }
        let (sends, recvs): (Vec<(usize, &[f32])>, _) = if r == root {
            (self.peers().map(|q| (q, &buf[..])).collect(), vec![])
        } else {
            (vec![], vec![(root, buf.len())])
        };
        let got = self.exchange("broadcast", Wire::F32, &sends, &recvs)?;
        if let Some(bytes) = got.first() {
            Wire::F32.decode(bytes, buf);
        }
        self.recycle(got);
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        let sends: Vec<(usize, &[f32])> = self.peers().map(|q| (q, &[][..])).collect();
        let recvs: Vec<(usize, usize)> = self.peers().map(|q| (q, 0)).collect();
        self.exchange("barrier", Wire::F32, &sends, &recvs)
            .map(|_| ())
    }
}
