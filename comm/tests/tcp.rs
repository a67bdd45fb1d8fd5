//! The collectives over TCP on 127.0.0.1, ranks as threads: closed forms at
//! 1..4 ranks (bitwise equal to the local backend), foreign connections
//! refused, a missing rank named at connect and mid-job, a peer that leaves.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use bigdl_comm::tcp::{Listener, TcpTransport};
use bigdl_comm::{Collectives, Communicator, Error, Result, Wire, shard_range};

const T: Duration = Duration::from_secs(20);

/// `n` ranks of job `job`, each running `f` on its own thread.
fn run<R: Send>(
    job: &str,
    n: usize,
    f: impl Fn(Result<Collectives<TcpTransport>>) -> R + Sync,
) -> Vec<R> {
    let listeners: Vec<Listener> = (0..n)
        .map(|_| Listener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let (f, peers) = (&f, &peers);
    std::thread::scope(|s| {
        let hs: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(r, l)| s.spawn(move || f(l.connect(job, r, peers, T).map(Collectives::new))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn collectives_match_closed_forms_and_the_local_backend() {
    for n in 1..=4 {
        for len in [0usize, 1, 5, 1000, 300_001] {
            for wire in [Wire::F32, Wire::Bf16] {
                let out = run("job", n, |c| {
                    let c = c.unwrap().with_wire(wire);
                    let r = c.rank();
                    let data: Vec<f32> =
                        (0..len).map(|i| ((r + 1) * (i % 97) + r) as f32).collect();
                    let want: Vec<f32> = (0..len)
                        .map(|i| ((i % 97) * n * (n + 1) / 2 + n * (n - 1) / 2) as f32)
                        .collect();
                    let mine = shard_range(len, n, r);
                    let mut shard = vec![0.0; mine.len()];
                    c.reduce_scatter(&data, &mut shard).unwrap();
                    let mut v = data.clone();
                    c.all_reduce(&mut v).unwrap();
                    if wire == Wire::F32 {
                        assert_eq!(shard, want[mine.clone()]);
                        assert_eq!(v, want);
                    }
                    let mut b = if r == n - 1 {
                        want.clone()
                    } else {
                        vec![0.0; len]
                    };
                    c.broadcast(&mut b, n - 1).unwrap();
                    assert_eq!(b, want);
                    c.barrier().unwrap();
                    v
                });
                let local = bigdl_comm::local::run(n, |c| {
                    let c = c.with_wire(wire);
                    let r = c.rank();
                    let mut v: Vec<f32> =
                        (0..len).map(|i| ((r + 1) * (i % 97) + r) as f32).collect();
                    c.all_reduce(&mut v).unwrap();
                    v
                });
                assert_eq!(out, local, "{n} ranks, {len} numbers, {wire:?}");
            }
        }
    }
}

#[test]
fn foreign_connections_are_refused() {
    // Rank 1 accepts rank 0; before rank 0 dials, its backlog holds a silent
    // client (it may hold the accepting loop for 2 s, not for the whole
    // deadline), a client that speaks another protocol, and a rank of
    // another job.
    let (l0, l1) = (
        Listener::bind("127.0.0.1:0").unwrap(),
        Listener::bind("127.0.0.1:0").unwrap(),
    );
    let peers = vec![
        l0.local_addr().unwrap().to_string(),
        l1.local_addr().unwrap().to_string(),
    ];
    let at = l1.local_addr().unwrap();
    let _silent = TcpStream::connect(at).unwrap();
    let mut http = TcpStream::connect(at).unwrap();
    std::io::Write::write_all(&mut http, b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let foreign = std::thread::spawn({
        let p = peers.clone();
        let l = Listener::bind("127.0.0.1:0").unwrap();
        move || l.connect("another-job", 0, &p, Duration::from_millis(300))
    });
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let (a, b) = std::thread::scope(|s| {
        let p = &peers;
        let b = s.spawn(move || l1.connect("job", 1, p, T).map(Collectives::new));
        std::thread::sleep(Duration::from_millis(100));
        let a = s.spawn(move || l0.connect("job", 0, p, T).map(Collectives::new));
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let _ = foreign.join().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut v = [1.0f32; 3];
            a.all_reduce(&mut v).unwrap();
            assert_eq!(v, [2.0; 3]);
        });
        s.spawn(|| {
            let mut v = [1.0f32; 3];
            b.all_reduce(&mut v).unwrap();
            assert_eq!(v, [2.0; 3]);
        });
    });
}

#[test]
fn a_rank_that_never_comes_is_named() {
    let ls: Vec<Listener> = (0..3)
        .map(|_| Listener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: Vec<String> = ls
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut ls = ls.into_iter();
    let (l0, l1) = (ls.next().unwrap(), ls.next().unwrap());
    drop(ls); // rank 2 is gone before anyone connects: refused until the deadline
    let t = Duration::from_millis(500);
    let t0 = Instant::now();
    let errs = std::thread::scope(|s| {
        let p = &peers;
        let a = s.spawn(move || l0.connect("job", 0, p, t).unwrap_err());
        let b = s.spawn(move || l1.connect("job", 1, p, t).unwrap_err());
        [a.join().unwrap(), b.join().unwrap()]
    });
    assert!(t0.elapsed() < Duration::from_secs(10));
    for e in errs {
        assert!(
            matches!(&e, Error::Timeout { missing, .. } if missing == &vec![2]),
            "{e}"
        );
    }
}

#[test]
fn a_stalled_rank_times_out_and_a_departed_one_is_gone() {
    let t0 = Instant::now();
    let errs = run("job", 3, |c| {
        let c = c.unwrap().with_timeout(Duration::from_millis(300));
        match c.rank() {
            // Stalls past the others' deadline, then leaves.
            1 => {
                std::thread::sleep(Duration::from_millis(800));
                None
            }
            _ => {
                let first = c.all_reduce(&mut [1.0; 8]).unwrap_err();
                let again = c.all_reduce(&mut [1.0; 8]).unwrap_err();
                Some((first, again))
            }
        }
    });
    assert!(t0.elapsed() < Duration::from_secs(10));
    for (first, again) in errs.into_iter().flatten() {
        assert!(
            matches!(&first, Error::Timeout { missing, .. } if missing.contains(&1))
                || matches!(&first, Error::PeerGone { .. }),
            "{first}"
        );
        assert!(again.to_string().contains("unusable"), "{again}");
    }
    // A peer that closes its connections: the others see it gone at once.
    let errs = run("job", 2, |c| {
        let c = c.unwrap().with_timeout(Duration::from_secs(20));
        if c.rank() == 1 {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
        Some(c.all_reduce(&mut [1.0; 8]).unwrap_err())
    });
    for e in errs.into_iter().flatten() {
        assert!(matches!(&e, Error::PeerGone { peer: 1, .. }), "{e}");
    }
}
