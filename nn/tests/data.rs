//! Data readers against synthetic files (valid and malformed) and the
//! loader's order, transforms and prefetching.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bigdl_nn::NnError;
use bigdl_nn::data::{DataLoader, ImageSet, Split, Transform, read_cifar10, read_mnist};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bigdl-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(data);
    v
}

fn write_mnist(dir: &Path, prefix: &str, n: u32, labels: &[u8]) {
    let pixels: Vec<u8> = (0..n * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(
        dir.join(format!("{prefix}-images-idx3-ubyte")),
        idx(0x803, &[n, 4, 3], &pixels),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{prefix}-labels-idx1-ubyte")),
        idx(0x801, &[n], labels),
    )
    .unwrap();
}

#[test]
fn mnist_reads_valid_files_and_rejects_bad_ones() {
    let d = tmpdir("mnist");
    write_mnist(&d, "train", 3, &[1, 9, 0]);
    let set = read_mnist(&d, Split::Train).unwrap();
    assert_eq!(
        (set.len(), set.shape, set.labels.clone()),
        (3, [1, 4, 3], vec![1, 9, 0])
    );
    assert_eq!(set.image(1)[0], 12 * 7);
    // Missing files say how to get the data.
    let err = read_mnist(&d, Split::Test).unwrap_err().to_string();
    assert!(
        err.contains("t10k-images-idx3-ubyte") && err.contains("bigdl data mnist"),
        "{err}"
    );
    let bad = |name: &str, bytes: Vec<u8>| {
        let d = tmpdir(name);
        write_mnist(&d, "train", 3, &[1, 2, 3]);
        std::fs::write(d.join("train-images-idx3-ubyte"), bytes).unwrap();
        let e = read_mnist(&d, Split::Train).unwrap_err();
        assert!(matches!(e, NnError::Data { .. }), "{name}: {e}");
        e.to_string()
    };
    assert!(bad("magic", idx(0x801, &[3, 4, 3], &[0; 36])).contains("magic"));
    assert!(bad("short", idx(0x803, &[3, 4, 3], &[0; 35])).contains("header says"));
    // A header claiming 4 billion^3 images allocates nothing.
    bad(
        "huge",
        idx(0x803, &[u32::MAX, u32::MAX, u32::MAX], &[0; 36]),
    );
    bad("tiny", vec![0, 0, 8]);
    // Label count and range.
    let d2 = tmpdir("labels");
    write_mnist(&d2, "train", 3, &[1, 2, 3]);
    std::fs::write(
        d2.join("train-labels-idx1-ubyte"),
        idx(0x801, &[2], &[1, 2]),
    )
    .unwrap();
    assert!(
        read_mnist(&d2, Split::Train)
            .unwrap_err()
            .to_string()
            .contains("2 labels for 3 images")
    );
    std::fs::write(
        d2.join("train-labels-idx1-ubyte"),
        idx(0x801, &[3], &[1, 2, 10]),
    )
    .unwrap();
    assert!(
        read_mnist(&d2, Split::Train)
            .unwrap_err()
            .to_string()
            .contains("label 10")
    );
}

#[test]
fn cifar_reads_records_and_rejects_partial_ones() {
    let d = tmpdir("cifar");
    let mut rec = vec![7u8];
    rec.extend((0..3072).map(|i| (i % 251) as u8));
    std::fs::write(
        d.join("test_batch.bin"),
        [rec.clone(), rec.clone()].concat(),
    )
    .unwrap();
    let set = read_cifar10(&d, Split::Test).unwrap();
    assert_eq!((set.len(), set.shape, set.labels[1]), (2, [3, 32, 32], 7));
    assert_eq!(set.image(1)[3071], (3071 % 251) as u8);
    std::fs::write(d.join("test_batch.bin"), &rec[..100]).unwrap();
    assert!(
        read_cifar10(&d, Split::Test)
            .unwrap_err()
            .to_string()
            .contains("records")
    );
    assert!(
        read_cifar10(&d, Split::Train)
            .unwrap_err()
            .to_string()
            .contains("bigdl data cifar10")
    );
}

fn toy(n: usize) -> Arc<ImageSet> {
    Arc::new(ImageSet {
        pixels: (0..n * 2 * 3 * 3).map(|i| (i % 256) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        shape: [2, 3, 3],
        classes: 10,
    })
}

#[test]
fn loader_orders_transforms_and_prefetches() {
    let set = toy(10);
    let plain = DataLoader::new(set.clone(), 4);
    assert_eq!(plain.batches_per_epoch(), 3);
    let batches: Vec<_> = plain.epoch(0, 0).map(Result::unwrap).collect();
    assert_eq!(
        batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [4, 4, 2]
    );
    assert_eq!(batches[0].input.sizes(), &[4, 2, 3, 3]);
    assert_eq!(batches[2].target.to_vec(), [8.0, 9.0]);
    assert_eq!(batches[0].input.to_vec()[19], 19.0 / 255.0);
    // Shuffled: a permutation, the same for the same seed and epoch, another
    // for the next epoch; skipping resumes mid-epoch.
    let sh = DataLoader::new(set.clone(), 4).shuffle(5);
    let mut o = sh.order(0);
    assert_eq!(o, sh.order(0));
    assert_ne!(o, sh.order(1));
    o.sort();
    assert_eq!(o, (0..10).collect::<Vec<_>>());
    let all: Vec<_> = sh.epoch(3, 0).map(|b| b.unwrap().target.to_vec()).collect();
    let rest: Vec<_> = sh.epoch(3, 1).map(|b| b.unwrap().target.to_vec()).collect();
    assert_eq!(all[1..], rest[..]);
    // Normalisation, and augmentation that repeats for a seed.
    let t = Transform::normalize(&[0.5, 0.25], &[2.0, 4.0]);
    let b = DataLoader::new(set.clone(), 10)
        .transform(t.clone())
        .epoch(0, 0)
        .next()
        .unwrap()
        .unwrap();
    assert!((b.input.to_vec()[9] - (9.0 / 255.0 - 0.25) / 4.0).abs() < 1e-6);
    let aug = DataLoader::new(set.clone(), 10)
        .shuffle(1)
        .transform(t.random_crop(1).random_hflip());
    let a1 = aug.epoch(2, 0).next().unwrap().unwrap().input.to_vec();
    let a2 = aug.epoch(2, 0).next().unwrap().unwrap().input.to_vec();
    let a3 = aug.epoch(3, 0).next().unwrap().unwrap().input.to_vec();
    assert_eq!(a1, a2);
    assert_ne!(a1, a3);
    // Dropping the iterator early stops the producer (no hang).
    let mut it = DataLoader::new(toy(1000), 1).epoch(0, 0);
    it.next().unwrap().unwrap();
    drop(it);
}

/// The real MNIST, when `BIGDL_MNIST_DIR` points at it (CI sets it).
#[test]
fn real_mnist_when_available() {
    let Some(dir) = std::env::var_os("BIGDL_MNIST_DIR") else {
        eprintln!("BIGDL_MNIST_DIR not set: skipping the real MNIST check");
        return;
    };
    let train = read_mnist(Path::new(&dir), Split::Train).unwrap();
    let test = read_mnist(Path::new(&dir), Split::Test).unwrap();
    assert_eq!(
        (train.len(), test.len(), train.shape),
        (60000, 10000, [1, 28, 28])
    );
    let (mean, std) = train.channel_stats()[0];
    assert!(
        (mean - 0.1307).abs() < 1e-3 && (std - 0.3081).abs() < 1e-3,
        "{mean} {std}"
    );
}
