//! `bigdl predict` and `bigdl info --model`: run and describe saved models.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bigdl_nn::io::Spec;
use bigdl_nn::{Activity, Module};
use bigdl_tensor::Tensor;
use clap::Args;

/// Options of `bigdl predict`.
#[derive(Args)]
pub struct PredictArgs {
    /// A model: native (`bigdl train --save`), ONNX, Torch7 (.t7), or a
    /// Caffe prototxt with --weights.
    #[arg(long)]
    model: PathBuf,
    /// The Caffe weights (.caffemodel) for a prototxt given as --model.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Input samples, one per row of the first dimension (.npy, float32).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the outputs (.npy).
    #[arg(long)]
    output: PathBuf,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
}

/// Loads a model, detecting the format from its content: the native format
/// or ONNX, or with `weights` a Caffe prototxt + caffemodel.
pub fn load_model(path: &Path, weights: Option<&Path>) -> anyhow::Result<Box<dyn Module>> {
    if let Some(w) = weights {
        let proto = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let bytes = std::fs::read(w).with_context(|| format!("cannot read {}", w.display()))?;
        return bigdl_nn::io::caffe::import(&proto, &bytes)
            .with_context(|| format!("{} + {}", path.display(), w.display()));
    }
    // Files are memory-mapped where the OS allows: native models keep their
    // weights in the mapped pages, other formats are parsed from them.
    let map = bigdl_tensor::Mapping::open(path);
    if let Ok(map) = &map
        && bigdl_nn::io::is_native(map.bytes())
    {
        return bigdl_nn::io::load(path).with_context(|| path.display().to_string());
    }
    let read;
    let bytes = match &map {
        Ok(map) => map.bytes(),
        Err(_) => {
            read =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            &read[..]
        }
    };
    bigdl_nn::io::import_any(bytes)
        .with_context(|| format!("{} (Caffe models need --weights)", path.display()))
}

/// Options of `bigdl convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// The model to convert (native, ONNX, or a Caffe prototxt with --weights).
    #[arg(long)]
    model: PathBuf,
    /// The Caffe weights (.caffemodel) for a prototxt given as --model.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// The file to write.
    #[arg(long)]
    output: PathBuf,
    /// Write ONNX (opset 13, for the layers that map) instead of the native
    /// format, for inputs of this shape (e.g. 1,1,28,28; the first dimension,
    /// the batch, stays symbolic).
    #[arg(long, value_name = "SHAPE")]
    onnx: Option<String>,
}

pub fn convert(a: ConvertArgs) -> anyhow::Result<()> {
    let mut m = load_model(&a.model, a.weights.as_deref())?;
    if let Some(shape) = &a.onnx {
        let dims: Vec<usize> = shape
            .split(',')
            .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
            .collect::<Option<_>>()
            .with_context(|| format!("--onnx {shape:?}: expected positive sizes like 1,1,28,28"))?;
        let bytes = bigdl_nn::io::export_onnx(m.as_mut(), &dims)?;
        std::fs::write(&a.output, bytes)
            .with_context(|| format!("cannot write {}", a.output.display()))?;
    } else {
        bigdl_nn::io::save(m.as_mut(), &a.output)?;
    }
    println!("{} -> {}", a.model.display(), a.output.display());
    Ok(())
}

pub fn predict(a: PredictArgs) -> anyhow::Result<()> {
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let mut model = load_model(&a.model, a.weights.as_deref())?;
    model.evaluate();
    let x = Tensor::<f32>::read_npy(&a.input)?;
    if x.dim() == 0 {
        bail!(
            "{}: a scalar, expected samples along the first dimension",
            a.input.display()
        );
    }
    let n = x.sizes()[0];
    let mut outs = Vec::new();
    for start in (0..n).step_by(a.batch_size) {
        let len = a.batch_size.min(n - start);
        let y = model
            .predict(&Activity::from(x.narrow(0, start, len)?.contiguous()))?
            .into_tensor("bigdl predict")?;
        outs.push(y);
    }
    let refs: Vec<&Tensor<f32>> = outs.iter().collect();
    let y = if refs.is_empty() {
        Tensor::<f32>::zeros(&[0])?
    } else {
        Tensor::cat(&refs, 0)?
    };
    y.write_npy(&a.output)?;
    println!(
        "{}: {} samples -> {} {:?}",
        a.model.display(),
        n,
        a.output.display(),
        y.sizes()
    );
    Ok(())
}

/// Prints a model's layer tree with parameter counts.
pub fn info(path: &Path, weights: Option<&Path>) -> anyhow::Result<()> {
    let mut model = load_model(path, weights)?;
    let total: usize = model.parameters().iter().map(|(w, _)| w.numel()).sum();
    let spec = model.spec().context("the model has no description")?;
    println!("{}: {} parameters", path.display(), total);
    print_tree(&spec, 0);
    Ok(())
}

fn print_tree(s: &Spec, depth: usize) {
    let attrs: Vec<String> = s
        .attrs
        .iter()
        .map(|(k, v)| match v {
            bigdl_nn::io::Attr::Int(x) => format!("{k}={x}"),
            bigdl_nn::io::Attr::Float(x) => format!("{k}={x}"),
            bigdl_nn::io::Attr::Bool(x) => format!("{k}={x}"),
            bigdl_nn::io::Attr::Str(x) => format!("{k}={x:?}"),
            bigdl_nn::io::Attr::Ints(x) => format!("{k}={x:?}"),
        })
        .collect();
    println!("{}{} {}", "  ".repeat(depth), s.kind, attrs.join(" "));
    for c in &s.children {
        print_tree(c, depth + 1);
    }
}
