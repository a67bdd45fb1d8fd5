//! Checkpoints: model weights and state, optimizer state and the position in
//! training, in one file written atomically and checked on reading.
//!
//! Layout (little-endian): `BDLCKPT\0`, version `u32` (1), payload length
//! `u64`, CRC-32 of the payload `u32`, payload: epoch, iteration and batch in
//! epoch (`u64` each), the flat weights, the optimizer's step count and
//! buffers, and the non-parameter state of every model replica in turn
//! (tensors in the tensor crate's `BDLT` encoding, counters as `u64`), each
//! list preceded by its length.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use bigdl_tensor::{Tensor, crc32};

use crate::error::{NnError, Result};
use crate::io::state::{StateItem, apply_state, decode_state, state_fits, state_shape};
use crate::module::Module;
use crate::optim::{OptimMethod, OptimState};

const MAGIC: &[u8; 8] = b"BDLCKPT\0";
const VERSION: u32 = 1;

/// Where training stood when a checkpoint was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Epochs completed.
    pub epoch: u64,
    /// Iterations completed (over all epochs).
    pub iteration: u64,
    /// Batches of the current epoch completed.
    pub batch: u64,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> NnError {
    NnError::Io {
        path: path.display().to_string(),
        what: e.to_string(),
    }
}

fn bad(path: &Path, what: impl Into<String>) -> NnError {
    NnError::Data {
        path: path.display().to_string(),
        what: what.into(),
    }
}

/// The checkpoint file name for `iteration` (sorted by name = by iteration).
pub fn file_name(iteration: u64) -> String {
    format!("checkpoint.{iteration:012}.bdl")
}

/// Writes a checkpoint into `dir` atomically: a temporary file, fsync,
/// rename, fsync of the directory. Returns its path.
pub fn save(
    dir: &Path,
    pos: Position,
    weights: &Tensor<f32>,
    optim: &OptimState,
    models: &mut [&mut dyn Module],
) -> Result<PathBuf> {
    let mut p = Vec::new();
    for v in [pos.epoch, pos.iteration, pos.batch] {
        p.extend(v.to_le_bytes());
    }
    weights.encode(&mut p);
    let st = optim;
    p.extend(st.steps.to_le_bytes());
    p.extend((st.buffers.len() as u64).to_le_bytes());
    for b in &st.buffers {
        Tensor::from_vec(b.clone(), &[b.len()])?.encode(&mut p);
    }
    crate::io::state::encode_state(models, &mut p)?;

    let mut file = Vec::with_capacity(p.len() + 24);
    file.extend(MAGIC);
    file.extend(VERSION.to_le_bytes());
    file.extend((p.len() as u64).to_le_bytes());
    file.extend(crc32(&p).to_le_bytes());
    file.extend(&p);

    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let path = dir.join(file_name(pos.iteration));
    let tmp = dir.join(format!(".{}.tmp", file_name(pos.iteration)));
    {
        let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(&file).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
    }
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

/// Reads a little-endian `u64` at `*at`, advancing it.
fn u64_at(path: &Path, p: &[u8], at: &mut usize) -> Result<u64> {
    let b = p
        .get(*at..*at + 8)
        .ok_or_else(|| bad(path, "truncated payload"))?;
    *at += 8;
    Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

fn tensor_at(path: &Path, p: &[u8], at: &mut usize) -> Result<Vec<f32>> {
    let (t, used) = Tensor::<f32>::decode(&p[*at..]).map_err(|e| bad(path, e.to_string()))?;
    *at += used;
    Ok(t.to_vec())
}

struct Contents {
    pos: Position,
    weights: Vec<f32>,
    optim: OptimState,
    state: Vec<StateItem>,
}

/// Reads and checks the checkpoint at `path` for `n_weights` weights:
/// magic, version, length and checksum, then every size.
fn parse(path: &Path, n_weights: usize) -> Result<Contents> {
    let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
    // A checkpoint holds the weights, at most a few optimizer buffers of the
    // same size, and small state: refuse anything far larger before reading.
    let limit = 64 + 8 * (n_weights as u64 * 4 + 64) + (1 << 24);
    if meta.len() > limit {
        return Err(bad(
            path,
            format!("{} bytes, too large for this model", meta.len()),
        ));
    }
    let file = fs::read(path).map_err(|e| io_err(path, e))?;
    if file.len() < 24 || &file[..8] != MAGIC {
        return Err(bad(path, "not a bigdl checkpoint"));
    }
    let version = u32::from_le_bytes(file[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(bad(
            path,
            format!("checkpoint version {version}, expected {VERSION}"),
        ));
    }
    let len = u64::from_le_bytes(file[12..20].try_into().expect("8 bytes"));
    let p = &file[24..];
    if len != p.len() as u64 {
        return Err(bad(
            path,
            format!("truncated: {} of {len} payload bytes", p.len()),
        ));
    }
    if crc32(p) != u32::from_le_bytes(file[20..24].try_into().expect("4 bytes")) {
        return Err(bad(path, "checksum mismatch"));
    }
    let mut at = 0;
    let pos = Position {
        epoch: u64_at(path, p, &mut at)?,
        iteration: u64_at(path, p, &mut at)?,
        batch: u64_at(path, p, &mut at)?,
    };
    let w = tensor_at(path, p, &mut at)?;
    if w.len() != n_weights {
        return Err(bad(
            path,
            format!("{} weights for a model of {n_weights}", w.len()),
        ));
    }
    let steps = u64_at(path, p, &mut at)?;
    let nbuf = u64_at(path, p, &mut at)?;
    if nbuf > 16 {
        return Err(bad(path, format!("{nbuf} optimizer buffers")));
    }
    let mut buffers = Vec::with_capacity(nbuf as usize);
    for _ in 0..nbuf {
        let b = tensor_at(path, p, &mut at)?;
        if b.len() != w.len() {
            return Err(bad(path, "optimizer buffer of another size"));
        }
        buffers.push(b);
    }
    let bad_here = |what: String| bad(path, what);
    let state = decode_state(p, &mut at, &bad_here)?;
    Ok(Contents {
        pos,
        weights: w,
        optim: OptimState { steps, buffers },
        state,
    })
}

/// Loads the checkpoint at `path` into `weights`, `optim` and the replicas
/// `models`, returning its position. Everything is checked (magic, version,
/// length, checksum, every size against the model and replicas) before
/// anything is changed.
pub fn load(
    path: &Path,
    weights: &Tensor<f32>,
    optim: &mut dyn OptimMethod,
    models: &mut [&mut dyn Module],
) -> Result<Position> {
    let c = parse(path, weights.numel())?;
    let expected = state_shape(models);
    if !state_fits(&expected, &c.state) {
        return Err(bad(
            path,
            format!(
                "its model state ({} items) does not match this model and {} replicas ({} items): \
                 resume with the same model and thread count",
                c.state.len(),
                models.len(),
                expected.len()
            ),
        ));
    }
    weights.as_slice_mut()?.copy_from_slice(&c.weights);
    optim.set_state(c.optim);
    apply_state(models, c.state);
    Ok(c.pos)
}

/// Loads a checkpoint's weights and the first replica's state into `model`
/// (compacted, with `weights` its flat weights), for evaluation or
/// inference; the optimizer state is ignored.
pub fn load_model(path: &Path, weights: &Tensor<f32>, model: &mut dyn Module) -> Result<Position> {
    let c = parse(path, weights.numel())?;
    let expected = state_shape(&mut [model]);
    let first: Vec<StateItem> = c.state.iter().take(expected.len()).cloned().collect();
    let replicas_fit = !expected.is_empty() || c.state.is_empty();
    if !replicas_fit
        || !state_fits(&expected, &first)
        || (!expected.is_empty() && !c.state.len().is_multiple_of(expected.len()))
    {
        return Err(bad(path, "its model state does not match this model"));
    }
    weights.as_slice_mut()?.copy_from_slice(&c.weights);
    apply_state(&mut [model], first);
    Ok(c.pos)
}

/// The checkpoint files in `dir`, oldest first (by iteration).
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("checkpoint.") && n.ends_with(".bdl"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(dir, e)),
    };
    files.sort();
    Ok(files)
}

/// The newest checkpoint in `dir` that loads; corrupt or foreign ones are
/// skipped with a warning naming them (through `warn`). `None` if there is
/// none.
pub fn resume(
    dir: &Path,
    weights: &Tensor<f32>,
    optim: &mut dyn OptimMethod,
    models: &mut [&mut dyn Module],
    warn: &mut dyn FnMut(String),
) -> Result<Option<(PathBuf, Position)>> {
    let files = list(dir)?;
    for f in files.iter().rev() {
        match load(f, weights, optim, models) {
            Ok(pos) => return Ok(Some((f.clone(), pos))),
            Err(e) => warn(format!("skipping checkpoint {}: {e}", f.display())),
        }
    }
    Ok(None)
}
