//! Training summaries: CSV files and TensorBoard event files.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{NnError, Result};

fn io_err(path: &Path, e: impl std::fmt::Display) -> NnError {
    NnError::Io {
        path: path.display().to_string(),
        what: e.to_string(),
    }
}

/// Writes scalars to `DIR/train.csv` / `DIR/validation.csv` and to a
/// TensorBoard event file in `DIR` (tags `Train/Loss`, `Train/LearningRate`,
/// `Train/Throughput`, `Validation/<method>`; the file reads back with
/// TensorFlow's `summary_iterator`).
#[derive(Debug)]
pub struct Summary {
    dir: PathBuf,
    train: BufWriter<File>,
    validation: BufWriter<File>,
    events: BufWriter<File>,
}

impl Summary {
    /// Creates `dir` and the files (appending to existing CSV files, so a
    /// resumed run continues them).
    pub fn create(dir: &Path) -> Result<Summary> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let csv = |name: &str, header: &str| -> Result<BufWriter<File>> {
            let path = dir.join(name);
            let fresh = !path.exists();
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io_err(&path, e))?;
            let mut w = BufWriter::new(f);
            if fresh {
                writeln!(w, "{header}").map_err(|e| io_err(&path, e))?;
            }
            Ok(w)
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let epath = dir.join(format!("events.out.tfevents.{now}.bigdl"));
        let ef = File::create(&epath).map_err(|e| io_err(&epath, e))?;
        let mut s = Summary {
            dir: dir.to_path_buf(),
            train: csv(
                "train.csv",
                "iteration,epoch,loss,learning_rate,images_per_second",
            )?,
            validation: csv("validation.csv", "iteration,epoch,method,value")?,
            events: BufWriter::new(ef),
        };
        let mut first = Vec::new();
        proto_double(&mut first, 1, wall_time());
        proto_bytes(&mut first, 3, b"brain.Event:2");
        s.record(&first)?;
        Ok(s)
    }

    /// One training iteration's scalars.
    pub fn train(
        &mut self,
        iteration: u64,
        epoch: u64,
        loss: f32,
        lr: f32,
        ips: f64,
    ) -> Result<()> {
        writeln!(self.train, "{iteration},{epoch},{loss},{lr},{ips:.1}")
            .map_err(|e| io_err(&self.dir, e))?;
        self.scalar("Train/Loss", iteration, loss)?;
        self.scalar("Train/LearningRate", iteration, lr)?;
        self.scalar("Train/Throughput", iteration, ips as f32)
    }

    /// One validation score.
    pub fn validation(
        &mut self,
        iteration: u64,
        epoch: u64,
        method: &str,
        value: f32,
    ) -> Result<()> {
        writeln!(self.validation, "{iteration},{epoch},{method},{value}")
            .map_err(|e| io_err(&self.dir, e))?;
        self.scalar(&format!("Validation/{method}"), iteration, value)
    }

    /// Flushes every file.
    pub fn flush(&mut self) -> Result<()> {
        for w in [&mut self.train, &mut self.validation, &mut self.events] {
            w.flush().map_err(|e| io_err(&self.dir, e))?;
        }
        Ok(())
    }

    /// A TensorBoard `Event { wall_time, step, summary { value { tag,
    /// simple_value } } }`.
    fn scalar(&mut self, tag: &str, step: u64, value: f32) -> Result<()> {
        let mut v = Vec::new();
        proto_bytes(&mut v, 1, tag.as_bytes());
        v.push((2 << 3) | 5);
        v.extend(value.to_le_bytes());
        let mut summary = Vec::new();
        proto_bytes(&mut summary, 1, &v);
        let mut event = Vec::new();
        proto_double(&mut event, 1, wall_time());
        varint(&mut event, 2 << 3);
        varint(&mut event, step);
        proto_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    /// A TFRecord: length, masked CRC-32C of the length, data, masked CRC-32C.
    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut out = Vec::with_capacity(data.len() + 16);
        out.extend(len);
        out.extend(masked_crc32c(&len).to_le_bytes());
        out.extend(data);
        out.extend(masked_crc32c(data).to_le_bytes());
        self.events
            .write_all(&out)
            .map_err(|e| io_err(&self.dir, e))
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn proto_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, b.len() as u64);
    out.extend(b);
}

fn proto_double(out: &mut Vec<u8>, field: u64, v: f64) {
    varint(out, (field << 3) | 1);
    out.extend(v.to_le_bytes());
}

/// CRC-32C (Castagnoli), bitwise.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn varints() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xAC, 0x02]);
    }
}
