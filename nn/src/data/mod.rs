//! Data: image sets (MNIST, CIFAR-10), mini-batches, transforms and a
//! prefetching, shuffling loader.
//!
//! Readers treat their files as hostile: headers are checked against the
//! actual file size before anything is allocated, and every error names the
//! file.

mod cifar;
mod loader;
mod mnist;

pub use cifar::read_cifar10;
pub use loader::{DataLoader, MiniBatch, Transform};
pub use mnist::read_mnist;

use std::path::Path;

use crate::error::{NnError, Result};

/// Which part of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training images.
    Train,
    /// The test (validation) images.
    Test,
}

/// Labelled images stored as bytes, `N x C x H x W` (channel-major, as the
/// tensors), with labels `0..classes`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// The pixels, image after image.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// Channels, height, width.
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Image `i`'s pixels.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Per-channel mean and standard deviation of the pixels scaled to [0, 1].
    pub fn channel_stats(&self) -> Vec<(f32, f32)> {
        let [c, h, w] = self.shape;
        let mut out = Vec::with_capacity(c);
        for ch in 0..c {
            let (mut s, mut s2, mut n) = (0.0f64, 0.0f64, 0u64);
            for i in 0..self.len() {
                for &p in &self.image(i)[ch * h * w..(ch + 1) * h * w] {
                    let v = p as f64 / 255.0;
                    s += v;
                    s2 += v * v;
                    n += 1;
                }
            }
            let mean = s / n.max(1) as f64;
            let var = (s2 / n.max(1) as f64 - mean * mean).max(0.0);
            out.push((mean as f32, var.sqrt() as f32));
        }
        out
    }
}

/// Largest data file a reader accepts (CIFAR-10's batches are 30 MiB,
/// MNIST's training images 45 MiB).
const MAX_FILE: u64 = 1 << 30;

/// Reads a whole data file, refusing ones over [`MAX_FILE`], with errors that
/// name the file and say how to get the data.
pub(crate) fn read_file(path: &Path, fetch_hint: &str) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| missing(path, &e.to_string(), fetch_hint))?;
    if meta.len() > MAX_FILE {
        return Err(format_error(
            path,
            format!("{} bytes, more than a data file can be", meta.len()),
        ));
    }
    std::fs::read(path).map_err(|e| missing(path, &e.to_string(), fetch_hint))
}

fn missing(path: &Path, why: &str, hint: &str) -> NnError {
    NnError::Data {
        path: path.display().to_string(),
        what: format!("{why}; {hint}"),
    }
}

pub(crate) fn format_error(path: &Path, what: impl Into<String>) -> NnError {
    NnError::Data {
        path: path.display().to_string(),
        what: what.into(),
    }
}
