//! The collectives, written once over a [`Transport`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::{Communicator, bf16, shard_range};

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

    fn encode(self, xs: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(xs.len() * self.bytes());
        match self {
            Wire::F32 => xs
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Wire::Bf16 => bf16::encode_into(xs, &mut out),
        }
        out
    }

    /// `f(i, value)` for every number in `bytes`.
    fn decode(self, bytes: &[u8], mut f: impl FnMut(usize, f32)) {
        match self {
            Wire::F32 => bytes
                .chunks_exact(4)
                .enumerate()
                .for_each(|(i, c)| f(i, f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            Wire::Bf16 => bytes
                .chunks_exact(2)
                .enumerate()
                .for_each(|(i, c)| f(i, bf16::decode(u16::from_le_bytes([c[0], c[1]])))),
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
    /// `sends[i].0` and receives one message of exactly `recvs[i].1` bytes
    /// from rank `recvs[i].0`, returned in `recvs` order. All ranks call it
    /// at once, so sends must not wait for the receiver. Fails with
    /// [`Error::Timeout`] naming the ranks that have not delivered when
    /// `timeout` has passed, [`Error::PeerGone`] when a peer has left, and
    /// [`Error::Protocol`] for a message of the wrong tag or length; `op`
    /// names the collective in those errors.
    fn exchange(
        &self,
        op: &str,
        tag: u64,
        sends: Vec<(usize, Vec<u8>)>,
        recvs: &[(usize, usize)],
        timeout: Duration,
    ) -> Result<Vec<Vec<u8>>>;
}

/// BigDL's sharded collectives over a [`Transport`]: a [`Communicator`].
#[derive(Debug)]
pub struct Collectives<T> {
    transport: T,
    wire: Wire,
    timeout: Duration,
    seq: AtomicU64,
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

    fn exchange(
        &self,
        op: &str,
        sends: Vec<(usize, Vec<u8>)>,
        recvs: &[(usize, usize)],
    ) -> Result<Vec<Vec<u8>>> {
        let tag = self.seq.fetch_add(1, Ordering::Relaxed);
        let op = format!("{op} #{tag}");
        self.transport
            .exchange(&op, tag, sends, recvs, self.timeout)
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
        let sends = self
            .peers()
            .map(|q| (q, wire.encode(&buf[shard_range(buf.len(), n, q)])))
            .collect();
        let recvs: Vec<(usize, usize)> = self
            .peers()
            .map(|q| (q, mine.len() * wire.bytes()))
            .collect();
        let got = self.exchange("reduce_scatter", sends, &recvs)?;
        // Rank order, from +0.0: the sum a single process would form.
        my_shard.fill(0.0);
        let mut got = got.iter();
        for q in 0..n {
            if q == r {
                my_shard
                    .iter_mut()
                    .zip(&buf[mine.clone()])
                    .for_each(|(s, &x)| *s += x);
            } else if let Some(bytes) = got.next() {
                wire.decode(bytes, |i, x| my_shard[i] += x);
            }
        }
        Ok(())
    }

    fn all_gather(&self, my_shard: &[f32], buf: &mut [f32]) -> Result<()> {
        let (r, n) = (self.rank(), self.size());
        let mine = shard_range(buf.len(), n, r);
        self.check_len("all_gather", "the shard", my_shard.len(), mine.len())?;
        let wire = self.wire.for_len(buf.len());
        let msg = wire.encode(my_shard);
        let sends = self.peers().map(|q| (q, msg.clone())).collect();
        let recvs: Vec<(usize, usize)> = self
            .peers()
            .map(|q| (q, shard_range(buf.len(), n, q).len() * wire.bytes()))
            .collect();
        let got = self.exchange("all_gather", sends, &recvs)?;
        let len = buf.len();
        for ((q, _), bytes) in recvs.iter().zip(&got) {
            let dst = &mut buf[shard_range(len, n, *q)];
            wire.decode(bytes, |i, x| dst[i] = x);
        }
        // Every rank holds the same numbers, this rank's shard included.
        let dst = &mut buf[mine];
        wire.decode(&msg, |i, x| dst[i] = x);
        Ok(())
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()> {
        let (r, n) = (self.rank(), self.size());
        if root >= n {
            return Err(Error::Invalid(format!(
                "broadcast from rank {root} in a world of {n}"
            )));
        }
        let (sends, recvs) = if r == root {
            let msg = Wire::F32.encode(buf);
            (self.peers().map(|q| (q, msg.clone())).collect(), vec![])
        } else {
            (vec![], vec![(root, buf.len() * 4)])
        };
        let got = self.exchange("broadcast", sends, &recvs)?;
        if let Some(bytes) = got.first() {
            Wire::F32.decode(bytes, |i, x| buf[i] = x);
        }
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        let sends = self.peers().map(|q| (q, Vec::new())).collect();
        let recvs: Vec<(usize, usize)> = self.peers().map(|q| (q, 0)).collect();
        self.exchange("barrier", sends, &recvs).map(|_| ())
    }
}
