//! The collectives over TCP: one connection per pair of ranks, set up once
//! from the ranks' listening addresses. For jobs whose scheduler can share
//! a few strings between its tasks but has no fast channel of its own: a
//! Spark barrier stage gathers every task's address with
//! `BarrierTaskContext.allGather`, then the ranks talk directly, with no
//! driver on the data path.
//!
//! ```no_run
//! # fn main() -> bigdl_comm::Result<()> {
//! use std::time::Duration;
//! use bigdl_comm::{Collectives, Communicator, tcp::Listener};
//! let listener = Listener::bind("127.0.0.1:0")?;
//! let me = listener.local_addr()?.to_string();
//! let peers: Vec<String> = vec![me]; // every rank's address, gathered
//! let comm = Collectives::new(listener.connect("job-1", 0, &peers, Duration::from_secs(60))?);
//! let mut grads = vec![1.0f32; 1024];
//! comm.all_reduce(&mut grads)?;
//! # Ok(()) }
//! ```
//!
//! Rank `r` connects to every higher rank and accepts every lower one; each
//! connection opens with a handshake (`BDLT`, a hash of the job's name, the
//! connecting rank and the world size), so a stray or foreign connection is
//! refused. A message is its tag and length (`u64`, little-endian), then the
//! payload; TCP orders and checks the bytes. Writes run on their own
//! threads while the caller reads, so two ranks sending to each other never
//! wait on each other's full socket buffers. Every read and write is bounded
//! by the exchange's deadline. After a failed exchange the connections may
//! be mid-message: the transport shuts them down (so the peers fail at once,
//! with [`Error::PeerGone`], instead of at their deadline) and refuses
//! further use.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::collectives::{Exchanged, Transport};
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"BDLT";
const HELLO: usize = 4 + 8 + 4 + 4;
/// How long an accepted connection may take to say hello.
const HELLO_WAIT: Duration = Duration::from_secs(2);

fn transport(what: impl std::fmt::Display) -> Error {
    Error::Transport(what.to_string())
}

/// FNV-1a of the job's name: peers of another job are refused.
fn job_hash(job: &str) -> u64 {
    job.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A rank's listening socket, bound before the ranks share their addresses.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    /// Listens on `addr` (e.g. `"127.0.0.1:0"`: a free port of that host).
    pub fn bind(addr: &str) -> Result<Listener> {
        let inner = TcpListener::bind(addr).map_err(|e| transport(format!("bind {addr}: {e}")))?;
        Ok(Listener { inner })
    }

    /// The address the peers connect to.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.inner.local_addr().map_err(transport)
    }

    /// Joins job `job` as rank `rank` of `peers.len()`, where `peers[q]` is
    /// rank `q`'s listening address (this rank's own entry is not used).
    /// Fails if the connections are not all made within `timeout`, naming
    /// the ranks that are missing.
    pub fn connect(
        self,
        job: &str,
        rank: usize,
        peers: &[String],
        timeout: Duration,
    ) -> Result<TcpTransport> {
        let size = peers.len();
        if size == 0 || rank >= size || u32::try_from(size).is_err() {
            return Err(Error::Invalid(format!("rank {rank} of a world of {size}")));
        }
        let deadline = Instant::now() + timeout;
        let hash = job_hash(job);
        let mut streams: Vec<Option<TcpStream>> = (0..size).map(|_| None).collect();
        let (lower, higher) = std::thread::scope(|s| {
            let accepting = s.spawn(|| self.accept_lower(hash, rank, size, deadline));
            let higher: Vec<_> = (rank + 1..size)
                .map(|q| (q, dial(&peers[q], hash, rank, size, deadline)))
                .collect();
            (accepting.join(), higher)
        });
        let lower = lower.map_err(|_| transport("the accepting thread panicked"))??;
        for (q, s) in lower.into_iter().enumerate().take(rank) {
            streams[q] = s;
        }
        for (q, s) in higher {
            match s {
                Ok(s) => streams[q] = Some(s),
                // A malformed address is the caller's error, not a timeout.
                Err(e @ Error::Invalid(_)) => return Err(e),
                Err(_) => {}
            }
        }
        let missing: Vec<usize> = (0..size)
            .filter(|&q| q != rank && streams[q].is_none())
            .collect();
        if !missing.is_empty() {
            return Err(Error::Timeout {
                rank,
                op: "connect".into(),
                timeout,
                missing,
            });
        }
        Ok(TcpTransport {
            rank,
            size,
            streams,
            broken: AtomicBool::new(false),
        })
    }

    /// Accepts one connection from each lower rank until `deadline`.
    fn accept_lower(
        &self,
        hash: u64,
        rank: usize,
        size: usize,
        deadline: Instant,
    ) -> Result<Vec<Option<TcpStream>>> {
        let mut got: Vec<Option<TcpStream>> = (0..rank).map(|_| None).collect();
        self.inner.set_nonblocking(true).map_err(transport)?;
        while got.iter().any(Option::is_none) && Instant::now() < deadline {
            match self.inner.accept() {
                Ok((s, _)) => {
                    // A stray or foreign connection is dropped, not fatal.
                    if let Ok(q) = hello_from(&s, hash, size, deadline)
                        && q < rank
                        && got[q].is_none()
                    {
                        got[q] = Some(s);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(transport(format!("accept: {e}"))),
            }
        }
        Ok(got)
    }
}

fn setup(s: &TcpStream) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_nodelay(true)
}

/// Reads and checks a connecting peer's handshake; returns its rank.
fn hello_from(s: &TcpStream, hash: u64, size: usize, deadline: Instant) -> Result<usize> {
    setup(s).map_err(transport)?;
    let mut b = [0u8; HELLO];
    // A silent stray (a port scanner) may hold the accepting loop this long
    // at most, not until the deadline.
    let hello_by = deadline.min(Instant::now() + HELLO_WAIT);
    read_full(s, &mut b, hello_by).map_err(transport)?;
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as usize;
    if &b[..4] != MAGIC || b[4..12] != hash.to_le_bytes() || u32_at(16) != size {
        return Err(transport("a connection from another job"));
    }
    Ok(u32_at(12))
}

/// Connects to a higher rank, retrying until `deadline`, and says hello.
fn dial(addr: &str, hash: u64, rank: usize, size: usize, deadline: Instant) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::Invalid(format!("peer address {addr:?}: {e}")))?
        .collect();
    let mut last = None;
    while Instant::now() < deadline {
        for a in &addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            match TcpStream::connect_timeout(a, left.max(Duration::from_millis(1))) {
                Ok(s) => {
                    setup(&s).map_err(transport)?;
                    let mut b = Vec::with_capacity(HELLO);
                    b.extend_from_slice(MAGIC);
                    b.extend_from_slice(&hash.to_le_bytes());
                    b.extend_from_slice(&(rank as u32).to_le_bytes());
                    b.extend_from_slice(&(size as u32).to_le_bytes());
                    (&s).write_all(&b).map_err(transport)?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(transport(format!(
        "connect {addr}: {}",
        last.map_or("timed out".into(), |e| e.to_string())
    )))
}

/// One rank's connections to all others: a [`Transport`] for
/// [`crate::Collectives`].
#[derive(Debug)]
pub struct TcpTransport {
    rank: usize,
    size: usize,
    streams: Vec<Option<TcpStream>>,
    broken: AtomicBool,
}

impl TcpTransport {
    /// Marks the transport unusable and closes its connections both ways.
    fn shut_down(&self) {
        self.broken.store(true, Ordering::Release);
        for s in self.streams.iter().flatten() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn stream(&self, q: usize) -> Result<&TcpStream> {
        self.streams
            .get(q)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::Invalid(format!("rank {} has no peer {q}", self.rank)))
    }
}

/// How an I/O error with peer `q` reads as a collective's error.
fn io_error(rank: usize, op: &str, q: usize, timeout: Duration, e: &io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
            rank,
            op: op.to_string(),
            timeout,
            missing: vec![q],
        },
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Error::PeerGone {
            rank,
            op: op.to_string(),
            peer: q,
        },
        _ => transport(format!("rank {rank}, {op}, peer {q}: {e}")),
    }
}

/// The socket timeout for the time left before `deadline`, or `TimedOut`.
fn left(deadline: Instant) -> io::Result<Option<Duration>> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    // A zero timeout would mean "block forever" to the socket.
    Ok(Some(left.max(Duration::from_micros(100))))
}

/// Fills `buf`, failing once `deadline` has passed: the socket's timeout is
/// the time left before each read, so a trickle cannot stretch it.
fn read_full(s: &TcpStream, mut buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        s.set_read_timeout(left(deadline)?)?;
        match (&*s).read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => buf = &mut buf[k..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf`, failing once `deadline` has passed.
fn write_full(s: &TcpStream, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        s.set_write_timeout(left(deadline)?)?;
        match (&*s).write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => buf = &buf[k..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Transport for TcpTransport {
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
        if self.broken.load(Ordering::Acquire) {
            return Err(transport(format!(
                "rank {}: an earlier exchange failed; the connections are unusable",
                self.rank
            )));
        }
        let deadline = Instant::now() + timeout;
        let result = std::thread::scope(|s| -> Result<Vec<Vec<u8>>> {
            let mut writers = Vec::with_capacity(sends.len());
            for (q, msg) in &sends {
                let (q, stream) = (*q, self.stream(*q)?);
                writers.push(s.spawn(move || -> Result<()> {
                    let fail = |e: io::Error| io_error(self.rank, op, q, timeout, &e);
                    let mut head = [0u8; 16];
                    head[..8].copy_from_slice(&tag.to_le_bytes());
                    head[8..].copy_from_slice(&(msg.len() as u64).to_le_bytes());
                    write_full(stream, &head, deadline).map_err(fail)?;
                    write_full(stream, msg, deadline).map_err(fail)
                }));
            }
            let mut got = Vec::with_capacity(recvs.len());
            let mut first_err = None;
            for (q, mut buf) in recvs {
                if first_err.is_some() {
                    break;
                }
                let read = (|| {
                    let stream = self.stream(q)?;
                    let fail = |e: io::Error| io_error(self.rank, op, q, timeout, &e);
                    let mut head = [0u8; 16];
                    read_full(stream, &mut head, deadline).map_err(fail)?;
                    let field =
                        |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8"));
                    if field(0) != tag || field(8) != buf.len() as u64 {
                        return Err(Error::Protocol {
                            rank: self.rank,
                            op: op.to_string(),
                            what: format!(
                                "from rank {q}: message #{} of {} bytes, expected #{tag} of {}",
                                field(0),
                                field(8),
                                buf.len()
                            ),
                        });
                    }
                    read_full(stream, &mut buf, deadline).map_err(fail)?;
                    Ok(buf)
                })();
                match read {
                    Ok(b) => got.push(b),
                    Err(e) => {
                        // Unblock our writers now, and let the peers see
                        // this rank gone at once instead of at their deadline.
                        self.shut_down();
                        first_err = Some(e);
                    }
                }
            }
            for w in writers {
                let r = w
                    .join()
                    .unwrap_or_else(|_| Err(transport("a writer thread panicked")));
                if let (Err(e), None) = (r, &first_err) {
                    first_err = Some(e);
                }
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok(got),
            }
        });
        match result {
            Ok(got) => Ok((got, sends.into_iter().map(|(_, m)| m).collect())),
            Err(e) => {
                self.shut_down();
                Err(e)
            }
        }
    }
}
