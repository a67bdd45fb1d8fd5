//! The collectives over a block store (the in-memory one), ranks as
//! threads: closed forms at 1..4 ranks, no blocks left behind, deadlines,
//! damaged blocks, and jobs sharing a store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bigdl_comm::block::{BlockStore, BlockTransport, MemStore, world};
use bigdl_comm::{Collectives, Communicator, Error, shard_range};

fn run<R: Send>(
    ranks: Vec<Collectives<BlockTransport<Arc<MemStore>>>>,
    f: impl Fn(Collectives<BlockTransport<Arc<MemStore>>>) -> R + Sync,
) -> Vec<R> {
    let f = &f;
    std::thread::scope(|s| {
        let hs: Vec<_> = ranks.into_iter().map(|c| s.spawn(move || f(c))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn collectives_match_closed_forms() {
    for n in 1..=4 {
        for len in [0usize, 1, 5, 1000, 30_001] {
            let store = MemStore::new();
            run(world(&store, "job", n).unwrap(), |c| {
                let r = c.rank();
                let data: Vec<f32> = (0..len).map(|i| ((r + 1) * (i % 97) + r) as f32).collect();
                let want: Vec<f32> = (0..len)
                    .map(|i| ((i % 97) * n * (n + 1) / 2 + n * (n - 1) / 2) as f32)
                    .collect();
                let mine = shard_range(len, n, r);
                let mut shard = vec![0.0; mine.len()];
                c.reduce_scatter(&data, &mut shard).unwrap();
                assert_eq!(shard, want[mine.clone()]);
                let mut v = data.clone();
                c.all_reduce(&mut v).unwrap();
                assert_eq!(v, want);
                let mut b = if r == 0 { want.clone() } else { vec![0.0; len] };
                c.broadcast(&mut b, 0).unwrap();
                assert_eq!(b, want);
                c.barrier().unwrap();
            });
            assert!(store.is_empty(), "{} blocks left behind", store.len());
        }
    }
}

#[test]
fn jobs_share_a_store_without_mixing() {
    let store = MemStore::new();
    let mut ranks = world(&store, "a", 2).unwrap();
    ranks.extend(world(&store, "b", 2).unwrap());
    let sums = run(ranks, |c| {
        let mut v = vec![c.rank() as f32 + 1.0; 10];
        c.all_reduce(&mut v).unwrap();
        v[0]
    });
    assert_eq!(sums, vec![3.0, 3.0, 3.0, 3.0]);
}

#[test]
fn a_missing_rank_times_out_with_its_name() {
    let store = MemStore::new();
    let t0 = Instant::now();
    let errs = run(world(&store, "job", 3).unwrap(), |c| {
        let c = c.with_timeout(Duration::from_millis(300));
        if c.rank() == 1 {
            return None;
        }
        Some(c.all_reduce(&mut [1.0; 8]).unwrap_err())
    });
    assert!(t0.elapsed() < Duration::from_secs(5));
    for e in errs.into_iter().flatten() {
        assert!(
            matches!(&e, Error::Timeout { missing, .. } if missing == &vec![1]),
            "{e}"
        );
    }
}

#[test]
fn damaged_blocks_are_errors() {
    let store = MemStore::new();
    // Rank 1 of a 2-rank job, with a block from rank 0 whose payload was
    // altered after its checksum was written.
    let t = BlockTransport::new(store.clone(), "job", 1, 2).unwrap();
    let c = Collectives::new(t).with_timeout(Duration::from_millis(200));
    let mut block = b"BDLB".to_vec();
    block.extend(0u64.to_le_bytes());
    block.extend(4u64.to_le_bytes());
    block.extend(0u32.to_le_bytes());
    block.extend(1.0f32.to_le_bytes());
    store.put("job/0/0-1", 1, block).unwrap();
    let e = c.broadcast(&mut [0.0], 0).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    store.put("job/1/0-1", 1, b"junk".to_vec()).unwrap();
    let e = c.broadcast(&mut [0.0], 0).unwrap_err();
    assert!(e.to_string().contains("header"), "{e}");
    assert!(BlockTransport::new(store, "job", 2, 2).is_err());
}
