//! `N` ranks as threads of one process, connected by channels.
//!
//! ```
//! use bigdl_comm::{Communicator, local};
//! let sums = local::run(3, |c| {
//!     let mut v = vec![c.rank() as f32; 5];
//!     c.all_reduce(&mut v).unwrap();
//!     v
//! });
//! assert!(sums.iter().all(|v| v == &vec![3.0; 5]));
//! ```

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, unbounded};

use crate::collectives::{Collectives, Exchanged, Transport};
use crate::error::{Error, Result};

type Msg = (u64, Vec<u8>);

/// One rank's ends of the channels to every other rank.
#[derive(Debug)]
pub struct LocalTransport {
    rank: usize,
    /// To rank `q`.
    tx: Vec<Sender<Msg>>,
    /// From rank `q`.
    rx: Vec<Receiver<Msg>>,
}

/// A world of `n` ranks: hand element `r` to the thread that plays rank `r`.
/// When a rank's value is dropped (its thread ends), its peers see
/// [`Error::PeerGone`] instead of waiting.
pub fn world(n: usize) -> Vec<Collectives<LocalTransport>> {
    let n = n.max(1);
    // chans[src][dst]
    let chans: Vec<Vec<(Sender<Msg>, Receiver<Msg>)>> = (0..n)
        .map(|_| (0..n).map(|_| unbounded()).collect())
        .collect();
    (0..n)
        .map(|r| {
            Collectives::new(LocalTransport {
                rank: r,
                tx: (0..n).map(|q| chans[r][q].0.clone()).collect(),
                rx: (0..n).map(|q| chans[q][r].1.clone()).collect(),
            })
        })
        .collect()
}

/// Runs `f` on `n` threads, one per rank of a fresh [`world`], and returns
/// their results in rank order. A panic in `f` is re-raised here after all
/// threads end (its peers see the rank gone).
pub fn run<R: Send>(n: usize, f: impl Fn(Collectives<LocalTransport>) -> R + Sync) -> Vec<R> {
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = world(n)
            .into_iter()
            .map(|c| s.spawn(move || f(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

impl Transport for LocalTransport {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.tx.len()
    }

    fn exchange(
        &self,
        op: &str,
        tag: u64,
        sends: Vec<(usize, Vec<u8>)>,
        recvs: Vec<(usize, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<Exchanged> {
        let gone = |peer| Error::PeerGone {
            rank: self.rank,
            op: op.to_string(),
            peer,
        };
        // Deliver to every live peer before reporting a departed one, so
        // that the live ones name the departed rank too.
        let mut departed = None;
        for (q, msg) in sends {
            let sent = self.tx.get(q).is_some_and(|tx| tx.send((tag, msg)).is_ok());
            departed = departed.or((!sent).then_some(q));
        }
        if let Some(q) = departed {
            return Err(gone(q));
        }
        let deadline = Instant::now() + timeout;
        let peers: Vec<usize> = recvs.iter().map(|(q, _)| *q).collect();
        let mut got = Vec::with_capacity(recvs.len());
        let mut spare = Vec::with_capacity(recvs.len());
        for (i, (q, buf)) in recvs.into_iter().enumerate() {
            let rx = self.rx.get(q).ok_or_else(|| gone(q))?;
            let (t, msg) = match rx.recv_deadline(deadline) {
                Ok(m) => m,
                Err(RecvTimeoutError::Disconnected) => return Err(gone(q)),
                Err(RecvTimeoutError::Timeout) => {
                    // Name every peer still missing, not just the first.
                    let mut missing = vec![q];
                    for &p in &peers[i + 1..] {
                        if matches!(self.rx[p].try_recv(), Err(TryRecvError::Empty)) {
                            missing.push(p);
                        }
                    }
                    return Err(Error::Timeout {
                        rank: self.rank,
                        op: op.to_string(),
                        timeout,
                        missing,
                    });
                }
            };
            if t != tag || msg.len() != buf.len() {
                return Err(Error::Protocol {
                    rank: self.rank,
                    op: op.to_string(),
                    what: format!(
                        "rank {q} sent message #{t} of {} bytes, expected #{tag} of {}",
                        msg.len(),
                        buf.len()
                    ),
                });
            }
            got.push(msg);
            spare.push(buf);
        }
        Ok((got, spare))
    }
}
