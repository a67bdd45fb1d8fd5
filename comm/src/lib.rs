//! # bigdl-comm
//!
//! Collective communication for synchronous data-parallel training: the
//! [`Communicator`] trait (rank, size, reduce-scatter, all-gather,
//! all-reduce, broadcast, barrier over flat `f32` buffers) and its backends.
//!
//! The algorithm is BigDL's sharded all-reduce. A buffer of `P` numbers is
//! cut into `N` shards by [`shard_range`]; in a reduce-scatter every rank
//! sends shard `q` of its buffer to rank `q` and sums the `N` copies of its
//! own shard **in rank order** (so a fixed world size gives bitwise-repeatable
//! sums); an all-gather sends every rank's shard to all others. Each rank
//! sends and receives `(N-1)/N` of the buffer per phase, as a ring does, but
//! in one round instead of `N-1`.
//!
//! The collectives are written once, in [`Collectives`], over a
//! [`Transport`] that only exchanges byte messages with peers. Backends:
//! - [`local`]: `N` ranks as threads of one process (tests, multi-socket
//!   machines);
//! - `mpi` (cargo feature `mpi`): the system MPI, for `mpirun`;
//! - [`tcp`]: a connection per pair of ranks from gathered addresses
//!   (Spark's barrier tasks, any scheduler that can share a few strings);
//! - [`block`]: over a key-value [`block::BlockStore`] (in memory for
//!   tests; Spark's BlockManager through JNI).
//!
//! Every exchange has a deadline ([`Collectives::with_timeout`], default
//! [`DEFAULT_TIMEOUT`], or `BIGDL_COMM_TIMEOUT` seconds): if a peer dies or
//! stalls, every live rank returns [`Error::Timeout`] (or
//! [`Error::PeerGone`]) naming the missing ranks. Nothing hangs.
//!
//! With [`Wire::Bf16`] the numbers travel as bfloat16 (round to nearest
//! even), halving the bytes; see [`bf16`] for the error bound.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod bf16;
pub mod block;
mod collectives;
mod error;
pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod tcp;
pub(crate) mod wire;

use std::ops::Range;

pub use collectives::{BF16_MIN_LEN, Collectives, DEFAULT_TIMEOUT, Transport, Wire};
pub use error::{Error, Result};

/// Synchronous collectives over flat `f32` buffers, as data-parallel
/// training needs them. Every rank calls the same collectives in the same
/// order with buffers of the same length.
pub trait Communicator {
    /// This process's rank, in `0..size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Sums `buf` over all ranks and writes this rank's shard of the sum
    /// ([`shard_range`]`(buf.len(), size, rank)`) into `my_shard`. The `N`
    /// contributions are added in rank order.
    fn reduce_scatter(&self, buf: &[f32], my_shard: &mut [f32]) -> Result<()>;
    /// Every rank's shard into `buf` (this rank's from `my_shard`).
    fn all_gather(&self, my_shard: &[f32], buf: &mut [f32]) -> Result<()>;
    /// Sums `buf` over all ranks, in place: a reduce-scatter then an
    /// all-gather.
    fn all_reduce(&self, buf: &mut [f32]) -> Result<()> {
        let r = shard_range(buf.len(), self.size(), self.rank());
        let mut shard = vec![0.0; r.len()];
        self.reduce_scatter(buf, &mut shard)?;
        self.all_gather(&shard, buf)
    }
    /// Copies `buf` of rank `root` into `buf` of every rank (exactly, in
    /// `f32` whatever the wire format).
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()>;
    /// Returns when every rank has called it.
    fn barrier(&self) -> Result<()>;
}

impl<C: Communicator + ?Sized> Communicator for &C {
    fn rank(&self) -> usize {
        (**self).rank()
    }
    fn size(&self) -> usize {
        (**self).size()
    }
    fn reduce_scatter(&self, buf: &[f32], my_shard: &mut [f32]) -> Result<()> {
        (**self).reduce_scatter(buf, my_shard)
    }
    fn all_gather(&self, my_shard: &[f32], buf: &mut [f32]) -> Result<()> {
        (**self).all_gather(my_shard, buf)
    }
    fn all_reduce(&self, buf: &mut [f32]) -> Result<()> {
        (**self).all_reduce(buf)
    }
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()> {
        (**self).broadcast(buf, root)
    }
    fn barrier(&self) -> Result<()> {
        (**self).barrier()
    }
}

/// The elements of shard `p` when `len` elements are cut into `parts`
/// shards (BigDL's partition): shard `p` starts at
/// `p * floor(len / parts) + min(p, len % parts)`, so the first
/// `len % parts` shards hold one element more. Empty when `p >= parts`.
pub fn shard_range(len: usize, parts: usize, p: usize) -> Range<usize> {
    if parts == 0 || p >= parts {
        return len..len;
    }
    let (base, extra) = (len / parts, len % parts);
    let start = p * base + p.min(extra);
    start..start + base + usize::from(p < extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_tile_the_buffer() {
        for len in [0, 1, 2, 3, 7, 10, 64, 1001] {
            for parts in 1..=9 {
                let mut next = 0;
                for p in 0..parts {
                    let r = shard_range(len, parts, p);
                    assert_eq!(r.start, next, "len {len} parts {parts} p {p}");
                    assert!(r.len() == len / parts || r.len() == len / parts + 1);
                    assert_eq!(r.len() == len / parts + 1, p < len % parts);
                    next = r.end;
                }
                assert_eq!(next, len);
                assert_eq!(shard_range(len, parts, parts), len..len);
            }
        }
        // BigDL's example: 10 elements over 4 nodes.
        let r: Vec<_> = (0..4).map(|p| shard_range(10, 4, p)).collect();
        assert_eq!(r, vec![0..3, 3..6, 6..8, 8..10]);
    }
}
