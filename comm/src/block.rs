//! The collectives over a key-value block store: BigDL's way of running an
//! all-reduce on Spark, where each rank (task) puts its shards as blocks
//! into its executor's BlockManager and fetches its peers' blocks.
//!
//! Every message is one block, named `{job}/{tag}/{from}-{to}`, put by the
//! sender (a store may keep it where its reader is: the Spark store pushes
//! it into the receiving executor's BlockManager) and removed by its
//! receiver once read. A block carries a header:
//! magic `BDLB`, the message tag, the payload length (`u64`) and the
//! payload's CRC-32, all little-endian, then the raw payload: never
//! serialized objects. Receivers poll for their blocks until the deadline.
//!
//! [`MemStore`] keeps the blocks in memory (tests, ranks as threads); a
//! Spark store implements [`BlockStore`] over the BlockManager through JNI.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bigdl_kernels::checksum::crc32;

use crate::collectives::{Collectives, Exchanged, Transport};
use crate::error::{Error, Result};

/// Where blocks live: anything that can put, fetch and remove named bytes.
pub trait BlockStore {
    /// Stores `bytes` under `id` (replacing a block of that name) for rank
    /// `to`, its only reader: a store may keep it where that rank is.
    fn put(&self, id: &str, to: usize, bytes: Vec<u8>) -> Result<()>;
    /// The block `id`, or `None` if it is not (yet) there. May wait up to
    /// `wait` for it to appear (stores that can be notified do).
    fn get(&self, id: &str, wait: Duration) -> Result<Option<Vec<u8>>>;
    /// Forgets the block `id` (absent blocks are fine).
    fn remove(&self, id: &str) -> Result<()>;
}

impl<S: BlockStore + ?Sized> BlockStore for Arc<S> {
    fn put(&self, id: &str, to: usize, bytes: Vec<u8>) -> Result<()> {
        (**self).put(id, to, bytes)
    }
    fn get(&self, id: &str, wait: Duration) -> Result<Option<Vec<u8>>> {
        (**self).get(id, wait)
    }
    fn remove(&self, id: &str) -> Result<()> {
        (**self).remove(id)
    }
}

/// Blocks in memory, shared by the ranks of one process (clone the `Arc`).
#[derive(Debug, Default)]
pub struct MemStore {
    blocks: Mutex<HashMap<String, Vec<u8>>>,
    changed: Condvar,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Arc<MemStore> {
        Arc::new(MemStore::default())
    }

    /// How many blocks it holds (a finished collective leaves none).
    pub fn len(&self) -> usize {
        self.blocks.lock().map_or(0, |b| b.len())
    }

    /// Whether it holds no block.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn poisoned() -> Error {
    Error::Transport("the block store's lock is poisoned".into())
}

impl BlockStore for MemStore {
    fn put(&self, id: &str, _to: usize, bytes: Vec<u8>) -> Result<()> {
        self.blocks
            .lock()
            .map_err(|_| poisoned())?
            .insert(id.to_string(), bytes);
        self.changed.notify_all();
        Ok(())
    }

    fn get(&self, id: &str, wait: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + wait;
        let mut blocks = self.blocks.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(b) = blocks.get(id) {
                return Ok(Some(b.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            blocks = self
                .changed
                .wait_timeout(blocks, left)
                .map_err(|_| poisoned())?
                .0;
        }
    }

    fn remove(&self, id: &str) -> Result<()> {
        self.blocks.lock().map_err(|_| poisoned())?.remove(id);
        Ok(())
    }
}

const MAGIC: &[u8; 4] = b"BDLB";
/// The pauses between polls of a store that cannot wait: doubling from
/// `POLL_MIN` to `POLL_MAX` while nothing arrives.
const POLL_MIN: Duration = Duration::from_micros(50);
const POLL_MAX: Duration = Duration::from_micros(1600);
const HEADER: usize = 4 + 8 + 8 + 4;

/// One rank's view of a block store.
#[derive(Debug)]
pub struct BlockTransport<S> {
    store: S,
    job: String,
    rank: usize,
    size: usize,
}

impl<S: BlockStore> BlockTransport<S> {
    /// Rank `rank` of `size` in job `job` (block names start with it, so
    /// several jobs can share a store).
    pub fn new(store: S, job: &str, rank: usize, size: usize) -> Result<BlockTransport<S>> {
        if size == 0 || rank >= size {
            return Err(Error::Invalid(format!("rank {rank} of a world of {size}")));
        }
        Ok(BlockTransport {
            store,
            job: job.to_string(),
            rank,
            size,
        })
    }

    fn id(&self, tag: u64, from: usize, to: usize) -> String {
        format!("{}/{tag}/{from}-{to}", self.job)
    }
}

/// `n` ranks of job `job` over one shared store (ranks as threads).
pub fn world<S: BlockStore + Clone>(
    store: &S,
    job: &str,
    n: usize,
) -> Result<Vec<Collectives<BlockTransport<S>>>> {
    (0..n.max(1))
        .map(|r| BlockTransport::new(store.clone(), job, r, n.max(1)).map(Collectives::new))
        .collect()
}

impl<S: BlockStore> Transport for BlockTransport<S> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn exchange(
        &self,
        op: &str,
        tag: u64,
        sends: Vec<(usize, Vec<u8>)>,
        recvs: Vec<(usize, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<Exchanged> {
        let protocol = |what: String| Error::Protocol {
            rank: self.rank,
            op: op.to_string(),
            what,
        };
        for (q, msg) in &sends {
            let mut block = Vec::with_capacity(HEADER + msg.len());
            block.extend_from_slice(MAGIC);
            block.extend_from_slice(&tag.to_le_bytes());
            block.extend_from_slice(&(msg.len() as u64).to_le_bytes());
            block.extend_from_slice(&crc32(msg).to_le_bytes());
            block.extend_from_slice(msg);
            self.store.put(&self.id(tag, self.rank, *q), *q, block)?;
        }
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Option<Vec<u8>>> = vec![None; recvs.len()];
        let mut pause = POLL_MIN;
        loop {
            let first = got.iter().position(Option::is_none);
            for (i, ((q, want), slot)) in recvs.iter().zip(got.iter_mut()).enumerate() {
                if slot.is_some() {
                    continue;
                }
                let id = self.id(tag, *q, self.rank);
                // Wait on the first missing block; only look at the others.
                let wait = if first == Some(i) {
                    deadline
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(50))
                } else {
                    Duration::ZERO
                };
                let Some(block) = self.store.get(&id, wait)? else {
                    continue;
                };
                let (head, payload) = block.split_at(HEADER.min(block.len()));
                let field = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().expect("8"));
                if head.len() < HEADER || &head[..4] != MAGIC {
                    return Err(protocol(format!("block {id} has no bigdl header")));
                }
                if field(4) != tag
                    || field(12) != payload.len() as u64
                    || payload.len() != want.len()
                {
                    return Err(protocol(format!(
                        "block {id}: message #{} of {} bytes, expected #{tag} of {}",
                        field(4),
                        payload.len(),
                        want.len()
                    )));
                }
                if crc32(payload).to_le_bytes() != head[20..24] {
                    return Err(protocol(format!("block {id}: checksum mismatch")));
                }
                self.store.remove(&id)?;
                *slot = Some(payload.to_vec());
            }
            if got.iter().all(Option::is_some) {
                break;
            }
            if got.iter().position(Option::is_none) == first {
                // Nothing arrived: do not spin on stores that cannot wait
                // (each poll of a JVM's store costs CPU that the peer on the
                // same cores needs for its compute); back off.
                std::thread::sleep(pause);
                pause = (pause * 2).min(POLL_MAX);
            } else {
                pause = POLL_MIN;
            }
            if Instant::now() >= deadline {
                let missing = recvs
                    .iter()
                    .zip(&got)
                    .filter(|(_, g)| g.is_none())
                    .map(|((q, _), _)| *q)
                    .collect();
                return Err(Error::Timeout {
                    rank: self.rank,
                    op: op.to_string(),
                    timeout,
                    missing,
                });
            }
        }
        let spare = recvs
            .into_iter()
            .map(|(_, b)| b)
            .chain(sends.into_iter().map(|(_, m)| m));
        Ok((got.into_iter().flatten().collect(), spare.collect()))
    }
}
