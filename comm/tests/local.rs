//! The collectives on the local backend (ranks as threads) against closed
//! forms on integer data, for 1..4 ranks and lengths that leave shards
//! empty, uneven or large.

use std::time::{Duration, Instant};

use bigdl_comm::{Communicator, Error, Wire, bf16, local, shard_range};

const LENS: [usize; 7] = [0, 1, 3, 7, 64, 1000, 100_003];

/// Rank `r`'s buffer: element `i` is `(r + 1) * (i % 97) + r`.
fn data(r: usize, len: usize) -> Vec<f32> {
    (0..len).map(|i| ((r + 1) * (i % 97) + r) as f32).collect()
}

/// The sum of [`data`] over `n` ranks, in closed form.
fn sum(n: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i % 97) * n * (n + 1) / 2 + n * (n - 1) / 2) as f32)
        .collect()
}

#[test]
fn reduce_scatter_all_gather_all_reduce() {
    for n in 1..=4 {
        for len in LENS {
            local::run(n, |c| {
                let r = c.rank();
                assert_eq!(c.size(), n);
                let want = sum(n, len);
                let mine = shard_range(len, n, r);
                let mut shard = vec![f32::NAN; mine.len()];
                c.reduce_scatter(&data(r, len), &mut shard).unwrap();
                assert_eq!(shard, want[mine.clone()], "reduce_scatter n {n} len {len}");
                // Every rank's shard holds values unique to it.
                let own: Vec<f32> = mine.clone().map(|i| (1000 * r + i) as f32).collect();
                let mut all = vec![f32::NAN; len];
                c.all_gather(&own, &mut all).unwrap();
                let expect: Vec<f32> = (0..n)
                    .flat_map(|q| shard_range(len, n, q).map(move |i| (1000 * q + i) as f32))
                    .collect();
                assert_eq!(all, expect, "all_gather n {n} len {len}");
                let mut v = data(r, len);
                c.all_reduce(&mut v).unwrap();
                assert_eq!(v, want, "all_reduce n {n} len {len}");
                c.barrier().unwrap();
            });
        }
    }
}

#[test]
fn broadcast_from_every_root() {
    for n in 1..=4 {
        for root in 0..n {
            local::run(n, |c| {
                let mut v = if c.rank() == root {
                    vec![root as f32 + 0.1, -3.7, f32::MIN_POSITIVE]
                } else {
                    vec![0.0; 3]
                };
                c.broadcast(&mut v, root).unwrap();
                assert_eq!(v, vec![root as f32 + 0.1, -3.7, f32::MIN_POSITIVE]);
                assert!(matches!(c.broadcast(&mut v, n), Err(Error::Invalid(_))));
            });
        }
    }
}

/// The sum is formed in rank order from +0.0, whatever the backend: the
/// same bits as a sequential loop, so a fixed world size repeats bitwise.
#[test]
fn reduction_order_is_rank_order() {
    let len = 999;
    let val = |r: usize, i: usize| ((r * 7919 + i * 104_729) % 10_007) as f32 * 1e-3 + 0.1;
    let n = 4;
    let mut want = vec![0.0f32; len];
    for r in 0..n {
        want.iter_mut()
            .enumerate()
            .for_each(|(i, w)| *w += val(r, i));
    }
    for _ in 0..3 {
        let got = local::run(n, |c| {
            let mut v: Vec<f32> = (0..len).map(|i| val(c.rank(), i)).collect();
            c.all_reduce(&mut v).unwrap();
            v
        });
        for v in got {
            assert!(v.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}

#[test]
fn bf16_wire_stays_within_its_bound() {
    let len = 5000;
    let val = |r: usize, i: usize| ((r * 31 + i * 17) % 1000) as f32 * 0.013 - 6.0;
    for n in 2..=4 {
        let got = local::run(n, |c| {
            let c = c.with_wire(Wire::Bf16);
            let v: Vec<f32> = (0..len).map(|i| val(c.rank(), i)).collect();
            let mut w = v.clone();
            c.all_reduce(&mut w).unwrap();
            // Weights: every rank ends with the same (rounded) numbers.
            let mine = shard_range(len, n, c.rank());
            let mut g = vec![0.0; len];
            c.all_gather(&v[mine], &mut g).unwrap();
            (w, g)
        });
        for (w, g) in &got {
            assert_eq!(w, &got[0].0, "ranks disagree");
            assert_eq!(g, &got[0].1, "ranks disagree");
        }
        for (i, (&w, &g)) in got[0].0.iter().zip(&got[0].1).enumerate() {
            let parts: Vec<f64> = (0..n).map(|r| val(r, i) as f64).collect();
            let exact: f64 = parts.iter().sum();
            // Each of n-1 incoming terms is rounded (2^-8 relative), the
            // shard's sum is rounded once more on its way out.
            let abs: f64 = parts.iter().map(|p| p.abs()).sum();
            let bound = 2f64.powi(-8) * (abs + exact.abs() + 2f64.powi(-8) * abs) + 1e-6 * abs;
            assert!(
                (w as f64 - exact).abs() <= bound,
                "n {n} i {i}: {w} vs {exact}"
            );
            let owner_val = val(0, i) as f64; // g holds rank q's own values
            let q = (0..n)
                .find(|&q| shard_range(len, n, q).contains(&i))
                .unwrap();
            let own = val(q, i);
            assert_eq!(g, bf16::decode(bf16::encode(own)), "{owner_val}");
        }
    }
}

#[test]
fn a_stalled_rank_times_out_with_its_name() {
    let t0 = Instant::now();
    let results = local::run(3, |c| {
        let c = c.with_timeout(Duration::from_millis(300));
        if c.rank() == 2 {
            // Holds its end open but never calls the collective.
            std::thread::sleep(Duration::from_millis(900));
            return None;
        }
        let mut v = vec![1.0; 10];
        Some(c.all_reduce(&mut v).unwrap_err())
    });
    assert!(t0.elapsed() < Duration::from_secs(5));
    for e in results.into_iter().flatten() {
        match &e {
            Error::Timeout { missing, .. } => assert_eq!(missing, &vec![2], "{e}"),
            other => panic!("expected a timeout, got {other}"),
        }
        assert!(e.to_string().contains("waiting for rank(s) [2]"), "{e}");
    }
}

#[test]
fn a_departed_rank_is_named_at_once() {
    let t0 = Instant::now();
    let results = local::run(3, |c| {
        if c.rank() == 1 {
            return None; // drops its ends: gone
        }
        let mut v = vec![1.0; 10];
        Some(c.all_reduce(&mut v).unwrap_err())
    });
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Rank 0 meets rank 1 first; rank 2 may meet rank 0 already gone too.
    assert!(matches!(results[0], Some(Error::PeerGone { peer: 1, .. })));
    for e in results.into_iter().flatten() {
        assert!(matches!(e, Error::PeerGone { .. }), "{e}");
    }
}

#[test]
fn mismatched_calls_are_errors_not_hangs() {
    let results = local::run(2, |c| {
        let c = c.with_timeout(Duration::from_secs(2));
        let mut v = vec![1.0; 10 + 2 * c.rank()];
        c.all_reduce(&mut v).unwrap_err()
    });
    for e in results {
        assert!(matches!(e, Error::Protocol { .. }), "{e}");
    }
    local::run(2, |c| {
        let mut shard = vec![0.0; 7];
        let e = c.reduce_scatter(&[1.0; 10], &mut shard).unwrap_err();
        assert!(e.to_string().contains("expected 5"), "{e}");
    });
}
