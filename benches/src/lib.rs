//! # bigdl-benches
//!
//! Bench-only crate: runs bigdl-rs kernels side by side with peer libraries in the
//! same process, on the same data. Peers for SGEMM: every compiled-in bigdl
//! backend (native, MKL, OpenBLAS), the `gemm` crate, and `matrixmultiply`.
//!
//! - `cargo bench -p bigdl-benches --features mkl,openblas` (criterion, ids
//!   `peer/sgemm/MxNxK/tT`).
//! - `benches/gemm_peers.sh`: the markdown table of `BENCHMARKS.md`.
#![deny(missing_docs)]

use std::time::{Duration, Instant};

use bigdl_kernels::gemm::{Backend, Gemm, Parallelism};

/// A GEMM implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A bigdl-kernels backend.
    Bigdl(Backend),
    /// The `gemm` crate (sarah-quinones), stable-Rust kernels.
    GemmCrate,
    /// The `matrixmultiply` crate (bluss); threads from `MATMUL_NUM_THREADS`.
    MatrixMultiply,
}

impl Peer {
    /// Every peer that can run in this build, bigdl's native kernel first.
    pub fn available() -> Vec<Peer> {
        let mut v: Vec<Peer> = Backend::available().into_iter().map(Peer::Bigdl).collect();
        v.extend([Peer::GemmCrate, Peer::MatrixMultiply]);
        v
    }

    /// Short name for tables and benchmark ids.
    pub fn name(self) -> String {
        match self {
            Peer::Bigdl(b) => b.name().to_string(),
            Peer::GemmCrate => "gemm-crate".into(),
            Peer::MatrixMultiply => "matrixmultiply".into(),
        }
    }

    /// Row-major `C (m x n) = A (m x k) B (k x n)` on `threads` threads.
    ///
    /// # Panics
    /// If the slices do not match the shape, or a bigdl backend fails.
    pub fn sgemm(
        self,
        (m, n, k): (usize, usize, usize),
        threads: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) {
        assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
        match self {
            Peer::Bigdl(backend) => Gemm::new(m, n, k)
                .parallelism(Parallelism::Threads(threads))
                .run_on(backend, a, b, c)
                .expect("bigdl sgemm"),
            Peer::GemmCrate => {
                let par = if threads > 1 {
                    gemm::Parallelism::Rayon(threads)
                } else {
                    gemm::Parallelism::None
                };
                // SAFETY: row-major m x k, k x n and m x n matrices inside the
                // slices (asserted above); dst = 0 * dst + 1 * A B.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        1,
                        k as isize,
                        b.as_ptr(),
                        1,
                        n as isize,
                        0.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
                        par,
                    )
                }
            }
            Peer::MatrixMultiply => {
                // SAFETY: as above; strides (row, column) of row-major matrices.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            }
        }
    }
}

/// Deterministic inputs for a shape: values in [-0.8, 0.8].
pub fn inputs(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let a = (0..m * k)
        .map(|i| ((i * 7 + 3) % 17) as f32 * 0.1 - 0.8)
        .collect();
    let b = (0..k * n)
        .map(|i| ((i * 5 + 1) % 13) as f32 * 0.1 - 0.6)
        .collect();
    (a, b, vec![0.0; m * n])
}

/// Median seconds per call of `f`, after one warm-up call, over at least `min`
/// and at least 5 calls. `BIGDL_BENCH_QUANTILE=q` (0 to 1) reports that
/// quantile instead: a low one (0.1) compares two builds of ours on a machine
/// another tenant preempts, where medians move by 30%; peers' tables use the
/// median.
pub fn median_secs(min: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (start.elapsed() < min && times.len() < 100_000) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let q = std::env::var("BIGDL_BENCH_QUANTILE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|q| (0.0..=1.0).contains(q))
        .unwrap_or(0.5);
    times[((times.len() - 1) as f64 * q).round() as usize]
}

/// A layer of the convolution benchmark table.
#[derive(Clone, Copy, Debug)]
pub enum Layer {
    /// Square convolution: batch, in channels, input size, out channels,
    /// kernel, stride, padding.
    #[allow(missing_docs)]
    Conv {
        name: &'static str,
        n: usize,
        c: usize,
        hw: usize,
        oc: usize,
        k: usize,
        s: usize,
        p: usize,
    },
    /// Spatial batch normalisation, training mode.
    #[allow(missing_docs)]
    BatchNorm {
        name: &'static str,
        n: usize,
        c: usize,
        hw: usize,
    },
    /// Local response normalisation across 5 channels.
    #[allow(missing_docs)]
    Lrn {
        name: &'static str,
        n: usize,
        c: usize,
        hw: usize,
    },
    /// Max pooling.
    #[allow(missing_docs)]
    MaxPool {
        name: &'static str,
        n: usize,
        c: usize,
        hw: usize,
        k: usize,
        s: usize,
        p: usize,
        ceil: bool,
    },
}

impl Layer {
    /// The layer's name, e.g. `resnet50.res2.3x3`.
    pub fn name(&self) -> &'static str {
        match *self {
            Layer::Conv { name, .. }
            | Layer::BatchNorm { name, .. }
            | Layer::Lrn { name, .. }
            | Layer::MaxPool { name, .. } => name,
        }
    }
}

/// Layers of LeNet-5 (BigDL's, batch 128), ResNet-20 on CIFAR-10 (batch 128),
/// ResNet-50 (batch 32, 224x224) and Inception-v1 (batch 32), plus their batch
/// normalisation and LRN layers.
pub const LAYERS: &[Layer] = &[
    Layer::Conv {
        name: "lenet5.conv1",
        n: 128,
        c: 1,
        hw: 28,
        oc: 6,
        k: 5,
        s: 1,
        p: 0,
    },
    Layer::MaxPool {
        name: "lenet5.pool1",
        n: 128,
        c: 6,
        hw: 24,
        k: 2,
        s: 2,
        p: 0,
        ceil: false,
    },
    Layer::Conv {
        name: "lenet5.conv2",
        n: 128,
        c: 6,
        hw: 12,
        oc: 12,
        k: 5,
        s: 1,
        p: 0,
    },
    Layer::Conv {
        name: "resnet20.conv1",
        n: 128,
        c: 3,
        hw: 32,
        oc: 16,
        k: 3,
        s: 1,
        p: 1,
    },
    Layer::Conv {
        name: "resnet20.stage1",
        n: 128,
        c: 16,
        hw: 32,
        oc: 16,
        k: 3,
        s: 1,
        p: 1,
    },
    Layer::Conv {
        name: "resnet20.stage2.down",
        n: 128,
        c: 16,
        hw: 32,
        oc: 32,
        k: 3,
        s: 2,
        p: 1,
    },
    Layer::Conv {
        name: "resnet20.stage3",
        n: 128,
        c: 64,
        hw: 8,
        oc: 64,
        k: 3,
        s: 1,
        p: 1,
    },
    Layer::Conv {
        name: "resnet50.conv1",
        n: 32,
        c: 3,
        hw: 224,
        oc: 64,
        k: 7,
        s: 2,
        p: 3,
    },
    Layer::MaxPool {
        name: "resnet50.pool1",
        n: 32,
        c: 64,
        hw: 112,
        k: 3,
        s: 2,
        p: 1,
        ceil: false,
    },
    Layer::Conv {
        name: "resnet50.res2.1x1",
        n: 32,
        c: 64,
        hw: 56,
        oc: 256,
        k: 1,
        s: 1,
        p: 0,
    },
    Layer::Conv {
        name: "resnet50.res2.3x3",
        n: 32,
        c: 64,
        hw: 56,
        oc: 64,
        k: 3,
        s: 1,
        p: 1,
    },
    Layer::Conv {
        name: "resnet50.res4.3x3",
        n: 32,
        c: 256,
        hw: 14,
        oc: 256,
        k: 3,
        s: 1,
        p: 1,
    },
    Layer::Conv {
        name: "resnet50.res5.3x3",
        n: 32,
        c: 512,
        hw: 7,
        oc: 512,
        k: 3,
        s: 1,
        p: 1,
    },
    Layer::Conv {
        name: "resnet50.res5.1x1",
        n: 32,
        c: 2048,
        hw: 7,
        oc: 512,
        k: 1,
        s: 1,
        p: 0,
    },
    Layer::Conv {
        name: "inception.conv2.3x3",
        n: 32,
        c: 64,
        hw: 56,
        oc: 192,
        k: 3,
        s: 1,
        p: 1,
    },
    Layer::Conv {
        name: "inception.3a.5x5",
        n: 32,
        c: 16,
        hw: 28,
        oc: 32,
        k: 5,
        s: 1,
        p: 2,
    },
    Layer::MaxPool {
        name: "inception.pool3",
        n: 32,
        c: 192,
        hw: 56,
        k: 3,
        s: 2,
        p: 0,
        ceil: true,
    },
    Layer::BatchNorm {
        name: "resnet20.bn",
        n: 128,
        c: 16,
        hw: 32,
    },
    Layer::BatchNorm {
        name: "resnet50.bn1",
        n: 32,
        c: 64,
        hw: 112,
    },
    Layer::Lrn {
        name: "inception.lrn1",
        n: 32,
        c: 64,
        hw: 56,
    },
];
