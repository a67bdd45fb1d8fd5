//! The MPI backend (cargo feature `mpi`): the collectives over the system
//! MPI's non-blocking point-to-point calls, so that every wait has a
//! deadline. Launch with `mpirun -n N program`; without `mpirun` the
//! program is a world of one.
//!
//! MPI calls stay on the thread that created the transport (it is neither
//! `Send` nor `Sync`). When an exchange times out, its buffers are leaked on
//! purpose (MPI may still write into them) and the program should end with
//! [`MpiTransport::abort`], because `MPI_Finalize` would wait for the
//! missing peer.

#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use mpi::Threading;
use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use crate::collectives::{Collectives, Exchanged, Transport};
use crate::error::{Error, Result};

/// `MPI_COMM_WORLD` and the MPI environment (finalized when dropped).
pub struct MpiTransport {
    world: SimpleCommunicator,
    _universe: Universe,
}

impl std::fmt::Debug for MpiTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiTransport")
            .field("rank", &self.world.rank())
            .field("size", &self.world.size())
            .finish()
    }
}

/// Initializes MPI and returns the collectives over `MPI_COMM_WORLD`.
pub fn world() -> Result<Collectives<MpiTransport>> {
    MpiTransport::init().map(Collectives::new)
}

impl MpiTransport {
    /// Initializes MPI (once per process).
    pub fn init() -> Result<MpiTransport> {
        let (universe, _) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| Error::Transport("MPI is already initialized".into()))?;
        Ok(MpiTransport {
            world: universe.world(),
            _universe: universe,
        })
    }

    /// The MPI library's version string (`MPI_Get_library_version`).
    pub fn library_version() -> String {
        mpi::environment::library_version().unwrap_or_else(|_| "unknown MPI".into())
    }

    /// `MPI_Allreduce` (sum) of the library itself: the peer the
    /// benchmarks compare with.
    pub fn mpi_all_reduce(&self, buf: &mut [f32]) {
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
    }

    /// Ends every rank of the job with `code` (`MPI_Abort`).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl Transport for MpiTransport {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn exchange(
        &self,
        op: &str,
        tag: u64,
        sends: Vec<(usize, Vec<u8>)>,
        recvs: Vec<(usize, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<Exchanged> {
        let rank = self.rank();
        let too_big = sends
            .iter()
            .map(|(_, m)| m.len())
            .chain(recvs.iter().map(|(_, b)| b.len()))
            .any(|l| l > i32::MAX as usize);
        if too_big {
            return Err(Error::Invalid(format!(
                "rank {rank}: {op}: a message over 2 GiB"
            )));
        }
        // MPI guarantees tags up to 32767.
        let tag = (tag % 32768) as i32;
        let (peers, mut bufs): (Vec<usize>, Vec<Vec<u8>>) = recvs.into_iter().unzip();
        let recvs: Vec<(usize, usize)> = peers
            .iter()
            .zip(&bufs)
            .map(|(&q, b)| (q, b.len()))
            .collect();
        let deadline = Instant::now() + timeout;
        let outcome = mpi::request::scope(|scope| {
            let mut recv_reqs: Vec<_> = bufs
                .iter_mut()
                .zip(&recvs)
                .map(|(b, &(q, _))| {
                    let p = self.world.process_at_rank(q as i32);
                    Some(p.immediate_receive_into_with_tag(scope, &mut b[..], tag))
                })
                .collect();
            let mut send_reqs: Vec<_> = sends
                .iter()
                .map(|(q, m)| {
                    let p = self.world.process_at_rank(*q as i32);
                    Some(p.immediate_send_with_tag(scope, &m[..], tag))
                })
                .collect();
            let mut short = None;
            let mut spins = 0u32;
            loop {
                for (slot, &(q, len)) in recv_reqs.iter_mut().zip(&recvs) {
                    if let Some(r) = slot.take() {
                        match r.test() {
                            Ok(status) => {
                                let got = status.count(u8::equivalent_datatype()) as usize;
                                if got != len {
                                    short = Some((q, got, len));
                                }
                            }
                            Err(r) => *slot = Some(r),
                        }
                    }
                }
                for slot in send_reqs.iter_mut() {
                    if let Some(r) = slot.take()
                        && let Err(r) = r.test()
                    {
                        *slot = Some(r);
                    }
                }
                let waiting: Vec<usize> = recv_reqs
                    .iter()
                    .zip(&recvs)
                    .filter(|(s, _)| s.is_some())
                    .map(|(_, &(q, _))| q)
                    .chain(
                        send_reqs
                            .iter()
                            .zip(&sends)
                            .filter(|(s, _)| s.is_some())
                            .map(|(_, (q, _))| *q),
                    )
                    .collect();
                if waiting.is_empty() {
                    return Ok(short);
                }
                if Instant::now() >= deadline {
                    for r in recv_reqs.into_iter().flatten() {
                        // SAFETY: the request is never completed; its buffer
                        // is leaked below, so MPI may still write into it.
                        let _ = unsafe { r.into_raw() };
                    }
                    for r in send_reqs.into_iter().flatten() {
                        // SAFETY: as above, the message is leaked.
                        let _ = unsafe { r.into_raw() };
                    }
                    let mut missing = waiting;
                    missing.sort_unstable();
                    missing.dedup();
                    return Err(missing);
                }
                // Spin briefly for latency, then back off.
                spins += 1;
                if spins < 2000 {
                    std::hint::spin_loop();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        });
        match outcome {
            Ok(None) => Ok((bufs, sends.into_iter().map(|(_, m)| m).collect())),
            Ok(Some((q, got, len))) => Err(Error::Protocol {
                rank,
                op: op.to_string(),
                what: format!("rank {q} sent {got} bytes, expected {len}"),
            }),
            Err(missing) => {
                std::mem::forget(bufs);
                std::mem::forget(sends);
                Err(Error::Timeout {
                    rank,
                    op: op.to_string(),
                    timeout,
                    missing,
                })
            }
        }
    }
}
