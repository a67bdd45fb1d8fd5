//! Mini-batches, transforms and the prefetching loader.

use std::sync::Arc;

use bigdl_tensor::Tensor;
use crossbeam_channel::bounded;

use super::ImageSet;
use crate::error::Result;
use crate::module::child_seed;

/// Per-image preprocessing: scale to [0, 1], normalise per channel and,
/// for training, random crops (from the image zero-padded by `crop_pad` on
/// every side) and random horizontal flips. Random choices depend only on
/// `(seed, epoch, image index)`, so every run and every thread count sees the
/// same batches.
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    /// Per-channel mean subtracted (after scaling to [0, 1]).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by.
    pub std: Vec<f32>,
    /// Zero padding for random crops (0: no cropping).
    pub crop_pad: usize,
    /// Random horizontal flips.
    pub hflip: bool,
}

impl Transform {
    /// Scaling to [0, 1] and normalisation with `mean` and `std` per channel.
    pub fn normalize(mean: &[f32], std: &[f32]) -> Transform {
        Transform {
            mean: mean.to_vec(),
            std: std.to_vec(),
            crop_pad: 0,
            hflip: false,
        }
    }

    /// Adds random crops from the image padded by `pad`.
    pub fn random_crop(mut self, pad: usize) -> Transform {
        self.crop_pad = pad;
        self
    }

    /// Adds random horizontal flips.
    pub fn random_hflip(mut self) -> Transform {
        self.hflip = true;
        self
    }

    /// Writes image `pixels` (`[c, h, w]`) transformed into `out`; `draw` is
    /// the image's random stream (ignored without augmentation).
    fn apply(&self, pixels: &[u8], [c, h, w]: [usize; 3], draw: u64, out: &mut [f32]) {
        let p = self.crop_pad;
        let (dy, dx) = if p > 0 {
            (
                (child_seed(draw, 0) % (2 * p as u64 + 1)) as usize,
                (child_seed(draw, 1) % (2 * p as u64 + 1)) as usize,
            )
        } else {
            (p, p)
        };
        let flip = self.hflip && child_seed(draw, 2) & 1 == 1;
        for ch in 0..c {
            let mean = self.mean.get(ch).copied().unwrap_or(0.0);
            let inv = 1.0 / self.std.get(ch).copied().unwrap_or(1.0);
            let zero = (0.0 - mean) * inv;
            for y in 0..h {
                // Source row in the padded image: y + dy - p.
                let sy = (y + dy).checked_sub(p).filter(|&v| v < h);
                for x in 0..w {
                    let xx = if flip { w - 1 - x } else { x };
                    let sx = (xx + dx).checked_sub(p).filter(|&v| v < w);
                    out[(ch * h + y) * w + x] = match (sy, sx) {
                        (Some(sy), Some(sx)) => {
                            (pixels[(ch * h + sy) * w + sx] as f32 / 255.0 - mean) * inv
                        }
                        _ => zero,
                    };
                }
            }
        }
    }
}

/// A batch of images `[B, C, H, W]` and their labels `[B]` (class indices as
/// floats, as the criterions take them).
#[derive(Clone, Debug)]
pub struct MiniBatch {
    /// The images.
    pub input: Tensor<f32>,
    /// The labels.
    pub target: Tensor<f32>,
}

impl MiniBatch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.target.numel()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.target.numel() == 0
    }
}

/// Cuts an [`ImageSet`] into mini-batches, in a fresh order every epoch
/// (seeded), transformed, built ahead of use on a background thread.
#[derive(Clone, Debug)]
pub struct DataLoader {
    set: Arc<ImageSet>,
    batch_size: usize,
    shuffle: Option<u64>,
    transform: Transform,
    prefetch: usize,
    /// This process's part of every batch: (rank, ranks).
    part: (usize, usize),
}

impl DataLoader {
    /// Batches of `batch_size` in storage order, scaled to [0, 1]; the last
    /// batch of an epoch may be smaller.
    pub fn new(set: Arc<ImageSet>, batch_size: usize) -> DataLoader {
        DataLoader {
            set,
            batch_size: batch_size.max(1),
            shuffle: None,
            transform: Transform::normalize(&[], &[]),
            prefetch: 4,
            part: (0, 1),
        }
    }

    /// Shuffles every epoch, from `seed`.
    pub fn shuffle(mut self, seed: u64) -> DataLoader {
        self.shuffle = Some(seed);
        self
    }

    /// Yields only part `rank` of `ranks` of every batch (the samples
    /// [`bigdl_comm::shard_range`] gives it), for distributed training: the
    /// batches, their order and the per-image transforms stay those of the
    /// whole data set, so the ranks together see exactly its batches.
    pub fn part(mut self, rank: usize, ranks: usize) -> DataLoader {
        self.part = (rank.min(ranks.max(1) - 1), ranks.max(1));
        self
    }

    /// The number of samples in batch `b` of an epoch over all parts.
    pub fn global_batch_len(&self, b: usize) -> usize {
        self.set
            .len()
            .saturating_sub(b * self.batch_size)
            .min(self.batch_size)
    }

    /// Sets the per-image transform.
    pub fn transform(mut self, t: Transform) -> DataLoader {
        self.transform = t;
        self
    }

    /// The data set.
    pub fn set(&self) -> &ImageSet {
        &self.set
    }

    /// Batches in an epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.set.len().div_ceil(self.batch_size)
    }

    /// The order of the images in `epoch` (Fisher-Yates from the seed).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.set.len()).collect();
        if let Some(seed) = self.shuffle {
            let s = child_seed(seed, epoch as usize);
            for i in (1..order.len()).rev() {
                let j = (child_seed(s, i) % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
        }
        order
    }

    /// Batch `b` of an epoch whose order is `order`.
    fn build(&self, order: &[usize], epoch: u64, b: usize) -> Result<MiniBatch> {
        let ids = &order[b * self.batch_size..((b + 1) * self.batch_size).min(order.len())];
        let ids = &ids[bigdl_comm::shard_range(ids.len(), self.part.1, self.part.0)];
        let n = self.set.image_len();
        let mut x = vec![0.0f32; ids.len() * n];
        let mut y = Vec::with_capacity(ids.len());
        let epoch_seed = child_seed(self.shuffle.unwrap_or(0) ^ 0xA11CE, epoch as usize);
        for (k, &i) in ids.iter().enumerate() {
            self.transform.apply(
                self.set.image(i),
                self.set.shape,
                child_seed(epoch_seed, i),
                &mut x[k * n..(k + 1) * n],
            );
            y.push(self.set.labels[i] as f32);
        }
        let [c, h, w] = self.set.shape;
        Ok(MiniBatch {
            input: Tensor::from_vec(x, &[ids.len(), c, h, w])?,
            target: Tensor::from_vec(y, &[ids.len()])?,
        })
    }

    /// The batches of `epoch` from batch `skip` on (to resume mid-epoch),
    /// built on a background thread a few batches ahead.
    pub fn epoch(
        &self,
        epoch: u64,
        skip: usize,
    ) -> impl Iterator<Item = Result<MiniBatch>> + use<> {
        let (tx, rx) = bounded(self.prefetch);
        let me = self.clone();
        std::thread::spawn(move || {
            let order = me.order(epoch);
            for b in skip..me.batches_per_epoch() {
                // A closed channel means the consumer stopped: stop too.
                if tx.send(me.build(&order, epoch, b)).is_err() {
                    return;
                }
            }
        });
        rx.into_iter()
    }
}
