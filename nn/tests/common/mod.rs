//! Helpers shared by the training tests (`train.rs`, `distri.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use bigdl_nn::data::ImageSet;

/// A fresh (removed) temporary directory for test `name` of suite `suite`.
pub fn tmpdir(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bigdl-{suite}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// 96 images of 1 x 4 x 4; the class is which quarter of the image is brightest.
pub fn toy() -> Arc<ImageSet> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for i in 0..96u32 {
        let class = (i % 3) as usize;
        for p in 0..16usize {
            let noise = ((i as usize * 31 + p * 17) % 40) as u8;
            let bright = if p / 4 == class { 150 } else { 0 };
            pixels.push(noise + bright);
        }
        labels.push(class as u8);
    }
    Arc::new(ImageSet {
        pixels,
        labels,
        shape: [1, 4, 4],
        classes: 3,
    })
}
