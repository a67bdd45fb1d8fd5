//! CIFAR-10 in its binary batches.

use std::path::Path;

use super::{ImageSet, Split, format_error, read_file};
use crate::error::Result;

const HINT: &str = "run `bigdl data cifar10` to put CIFAR-10 in place";
const RECORD: usize = 1 + 3 * 32 * 32;

/// Reads CIFAR-10's binary batches from `dir` (`data_batch_1.bin` ..
/// `data_batch_5.bin` for training, `test_batch.bin` for testing): records of
/// one label byte and 3 x 32 x 32 pixel bytes.
pub fn read_cifar10(dir: &Path, split: Split) -> Result<ImageSet> {
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    let mut set = ImageSet {
        pixels: Vec::new(),
        labels: Vec::new(),
        shape: [3, 32, 32],
        classes: 10,
    };
    for f in files {
        let path = dir.join(&f);
        let bytes = read_file(&path, HINT)?;
        if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
            return Err(format_error(
                &path,
                format!(
                    "{} bytes is not a whole number of {RECORD}-byte records",
                    bytes.len()
                ),
            ));
        }
        set.pixels.reserve(bytes.len() / RECORD * (RECORD - 1));
        for rec in bytes.chunks(RECORD) {
            if rec[0] > 9 {
                return Err(format_error(
                    &path,
                    format!("label {} outside 0..10", rec[0]),
                ));
            }
            set.labels.push(rec[0]);
            set.pixels.extend_from_slice(&rec[1..]);
        }
    }
    Ok(set)
}
