//! Mutation fuzzing of every model loader, on stable Rust: valid files
//! (the native format, ONNX, Caffe prototxt and caffemodel, Torch7, .npy)
//! are mutated (bit flips, random and extreme integers, truncation,
//! duplicated and inserted chunks) and fed to their loader. Each input must
//! give `Ok` or `Err`: never a panic, and never one allocation larger than
//! the input justifies (a counting allocator checks every request).
//!
//! `BIGDL_FUZZ_SECS` (default 2 per target) sets the time per target,
//! `BIGDL_FUZZ_SEED` the seed; a failing input is written to
//! `target/fuzz-failures/` and its seed printed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bigdl_nn::io;
use bigdl_tensor::Tensor;

/// Tracks the largest single allocation since the last reset.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn fixture(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four mutations of `seed`.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len().max(1);
        match rng.below(8) {
            7 => {
                // A large decimal number where a digit was (text formats).
                let digits: Vec<usize> = (0..v.len()).filter(|&i| v[i].is_ascii_digit()).collect();
                if !digits.is_empty() {
                    let at = digits[rng.below(digits.len())];
                    let big = ["99999999", "4294967296", "65536", "0"][rng.below(4)];
                    v.splice(at..at + 1, big.bytes());
                }
            }
            0 => {
                let i = rng.below(len);
                if let Some(b) = v.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => {
                let i = rng.below(len);
                if let Some(b) = v.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
            2 => {
                // An extreme integer over 1, 2, 4 or 8 bytes (lengths,
                // counts, dimensions, varints).
                let extremes: [u64; 6] =
                    [0, u64::MAX, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 40];
                let x = extremes[rng.below(extremes.len())].to_le_bytes();
                let w = 1 << rng.below(4);
                let i = rng.below(len);
                for (k, b) in x.iter().take(w).enumerate() {
                    if let Some(d) = v.get_mut(i + k) {
                        *d = *b;
                    }
                }
            }
            3 => v.truncate(rng.below(len)),
            4 => {
                let (a, b) = (rng.below(len), rng.below(len));
                let (a, b) = (a.min(b), a.max(b).min(a.min(b) + 64));
                let chunk: Vec<u8> = v.get(a..b).unwrap_or(&[]).to_vec();
                let at = rng.below(len).min(v.len());
                v.splice(at..at, chunk);
            }
            5 => {
                let at = rng.below(len).min(v.len());
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            _ => {
                let a = rng.below(len).min(v.len());
                let b = (a + 1 + rng.below(16)).min(v.len());
                v.drain(a..b);
            }
        }
    }
    v
}

/// Runs `load` on mutations of `seeds` for the time budget.
fn fuzz(name: &str, seeds: &[Vec<u8>], load: &dyn Fn(&[u8]) -> bool) {
    let secs: f64 = std::env::var("BIGDL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let base: u64 = std::env::var("BIGDL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00F0_2217);
    // The seeds themselves load.
    for s in seeds {
        assert!(load(s), "{name}: a seed input does not load");
    }
    let t0 = Instant::now();
    let (mut runs, mut ok) = (0u64, 0u64);
    while t0.elapsed() < Duration::from_secs_f64(secs) {
        let seed_no = base ^ (runs.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ 1;
        let mut rng = Rng(seed_no | 1);
        let input = mutate(&seeds[rng.below(seeds.len())], &mut rng);
        // Up to 16x the input and 16 MiB: copies, decoded numbers and
        // fresh layers' gradient buffers stay well within it.
        let limit = 16 * input.len() + (16 << 20);
        LARGEST.store(0, Ordering::Relaxed);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(&input)));
        let largest = LARGEST.load(Ordering::Relaxed);
        let failure = match &result {
            Err(_) => Some("panicked".to_string()),
            Ok(_) if largest > limit => Some(format!(
                "allocated {largest} bytes at once for a {}-byte input",
                input.len()
            )),
            Ok(_) => None,
        };
        if let Some(what) = failure {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{name}-{seed_no}"));
            let _ = std::fs::write(&path, &input);
            panic!("{name}: {what} (input {}, seed {seed_no})", path.display());
        }
        ok += u64::from(matches!(result, Ok(true)));
        runs += 1;
    }
    eprintln!("{name}: {runs} inputs in {secs} s, {ok} still loaded");
    assert!(runs > 0);
}

#[test]
fn native_format() {
    let mut lenet = bigdl_nn::models::lenet5(10).unwrap();
    let seed = io::encode(&mut lenet).unwrap();
    fuzz("native", &[seed], &|b| {
        // Half the inputs get their description checksum fixed, so that
        // mutations reach the decoder behind it.
        let mut v = b.to_vec();
        if v.len() % 2 == 0 && v.len() >= 24 {
            let len = u64::from_le_bytes(v[12..20].try_into().unwrap());
            if let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(24))
                && end <= v.len()
            {
                let crc = bigdl_tensor::crc32(&v[24..end]);
                v[20..24].copy_from_slice(&crc.to_le_bytes());
            }
        }
        io::decode(&v).is_ok()
    });
}

#[test]
fn onnx() {
    // A PyTorch export, our own export of LeNet-5, Constant nodes and an
    // LSTM with peepholes, sequence lengths and constant initial states.
    let mut lenet = bigdl_nn::models::lenet5(10).unwrap();
    let ours = io::export_onnx(&mut lenet, &[1, 1, 28, 28]).unwrap();
    let seeds = vec![
        fixture("onnx_models/cnn.onnx"),
        ours,
        fixture("onnx_node/test_bigdl_constant_nodes/model.onnx"),
        fixture("onnx_node/test_bigdl_lstm_constants/model.onnx"),
    ];
    fuzz("onnx", &seeds, &|b| io::onnx::import(b, &[]).is_ok());
}

#[test]
fn caffe_prototxt() {
    let weights = fixture("caffe/tiny.caffemodel");
    let seeds = vec![fixture("caffe/tiny.prototxt")];
    fuzz("caffe-prototxt", &seeds, &|b| {
        io::caffe::import(&String::from_utf8_lossy(b), &weights).is_ok()
    });
}

#[test]
fn caffemodel() {
    let proto = String::from_utf8(fixture("caffe/tiny.prototxt")).unwrap();
    let legacy = String::from_utf8(fixture("caffe/legacy.prototxt")).unwrap();
    let seeds = vec![
        fixture("caffe/tiny.caffemodel"),
        fixture("caffe/legacy.caffemodel"),
    ];
    fuzz("caffemodel", &seeds, &|b| {
        // Either network's definition; a seed matches one of them.
        let a = io::caffe::import(&proto, b).is_ok();
        io::caffe::import(&legacy, b).is_ok() || a
    });
}

#[test]
fn torch7() {
    let seeds = [fixture("torch7/net.t7"), fixture("torch7/net_ascii.t7")];
    fuzz("torch7", &seeds, &|b| io::torch7::import(b).is_ok());
}

#[test]
fn npy() {
    let seeds = vec![fixture("torch7/net.x.npy"), fixture("caffe/tiny.y.npy")];
    fuzz("npy", &seeds, &|b| Tensor::<f32>::from_npy_bytes(b).is_ok());
}
