//! MNIST in its IDX files.

use std::path::Path;

use super::{ImageSet, Split, format_error, read_file};
use crate::error::Result;

const HINT: &str = "run `bigdl data mnist` to put MNIST in place";

/// Reads MNIST's IDX files from `dir` (`train-images-idx3-ubyte`,
/// `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
/// `t10k-labels-idx1-ubyte`).
pub fn read_mnist(dir: &Path, split: Split) -> Result<ImageSet> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let ipath = dir.join(format!("{prefix}-images-idx3-ubyte"));
    let lpath = dir.join(format!("{prefix}-labels-idx1-ubyte"));
    let (dims, pixels) = idx(&ipath, 0x0803, 3)?;
    let (ldims, labels) = idx(&lpath, 0x0801, 1)?;
    if dims[0] != ldims[0] {
        return Err(format_error(
            &lpath,
            format!("{} labels for {} images", ldims[0], dims[0]),
        ));
    }
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        return Err(format_error(&lpath, format!("label {bad} outside 0..10")));
    }
    Ok(ImageSet {
        pixels,
        labels,
        shape: [1, dims[1], dims[2]],
        classes: 10,
    })
}

/// An IDX file of unsigned bytes: its dimensions and data, checked to match
/// the file's size exactly.
fn idx(path: &Path, magic: u32, rank: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read_file(path, HINT)?;
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(format_error(
            path,
            format!("{} bytes: no IDX header", bytes.len()),
        ));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    if word(0) != magic {
        return Err(format_error(
            path,
            format!("magic {:#010x}, expected {magic:#010x}", word(0)),
        ));
    }
    let dims: Vec<usize> = (1..=rank).map(|i| word(i) as usize).collect();
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_add(header));
    if want != Some(bytes.len()) {
        return Err(format_error(
            path,
            format!(
                "header says {dims:?} ({} bytes of data) but the file holds {}",
                want.map_or("too many".into(), |w| (w - header).to_string()),
                bytes.len() - header
            ),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}
