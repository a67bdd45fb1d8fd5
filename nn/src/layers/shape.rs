//! Layers that move, select, pad or reduce elements: View, Squeeze,
//! Unsqueeze, Transpose, Narrow, Select, Contiguous, Reverse,
//! SpatialZeroPadding, Padding, SamePadding, Sum, Mean, Max.

use bigdl_tensor::Tensor;

use crate::activity::Activity;
use crate::error::{Result, invalid, shape};
use crate::io::Spec;
use crate::module::{Module, same_shape};

/// A layer whose output is a function of the input's layout only: the
/// backward pass writes the output gradient into the matching positions of a
/// zero input gradient, through the same function applied to it.
trait Relayout: Clone + Send + Sync + std::fmt::Debug + 'static {
    fn label(&self) -> &str;
    /// The output for input `x` (a view where possible).
    fn apply(&self, x: &Tensor<f32>) -> Result<Tensor<f32>>;
}

/// Wraps a [`Relayout`] as a module.
#[derive(Clone, Debug)]
struct Layout<R>(R);

impl<R: Relayout> Layout<R> {
    fn forward(&self, input: &Activity) -> Result<Activity> {
        let x = input.tensor(self.0.label())?;
        Ok(self.0.apply(x)?.contiguous().into())
    }

    fn backward(&self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let name = self.0.label();
        let x = input.tensor(name)?;
        let gx = Tensor::<f32>::zeros(x.sizes())?;
        let region = self.0.apply(&gx)?;
        let gy = grad_output.tensor(name)?;
        same_shape(name, gy, region.sizes())?;
        region.copy_from(gy)?;
        Ok(gx.into())
    }
}

macro_rules! relayout_module {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* }) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            label: String,
            $($field: $ty),*
        }

        impl Module for $name {
            fn name(&self) -> &str {
                &self.label
            }
            fn forward(&mut self, input: &Activity) -> Result<Activity> {
                Layout(self.clone()).forward(input)
            }
            fn update_grad_input(
                &mut self,
                input: &Activity,
                grad_output: &Activity,
            ) -> Result<Activity> {
                Layout(self.clone()).backward(input, grad_output)
            }
            fn clone_module(&self) -> Box<dyn Module> {
                Box::new(self.clone())
            }
            fn spec(&self) -> Option<Spec> {
                Some(self.spec_of())
            }
        }
    };
}

relayout_module!(
    /// The whole tensor viewed with `sizes`; one size may be `None`, inferred
    /// from the element count (PyTorch's `view(..., -1, ...)`).
    View { sizes: Vec<Option<usize>> }
);

impl View {
    /// View as `sizes` (`None` = inferred).
    pub fn new(sizes: &[Option<usize>]) -> View {
        View {
            label: format!("View({sizes:?})"),
            sizes: sizes.to_vec(),
        }
    }
}

impl View {
    fn spec_of(&self) -> Spec {
        let v: Vec<i64> = self
            .sizes
            .iter()
            .map(|s| s.map_or(-1, |x| x as i64))
            .collect();
        Spec::new("View").attr("sizes", crate::io::Attr::Ints(v))
    }
}

impl Relayout for View {
    fn label(&self) -> &str {
        &self.label
    }
    fn apply(&self, x: &Tensor<f32>) -> Result<Tensor<f32>> {
        let known: usize = self.sizes.iter().flatten().product();
        let free = self.sizes.iter().filter(|s| s.is_none()).count();
        let n = x.numel();
        let fits = match free {
            0 => known == n,
            1 => known > 0 && n.is_multiple_of(known),
            _ => false,
        };
        if !fits {
            return Err(shape(
                &self.label,
                format!("{n} elements viewable as {:?}", self.sizes),
                x.sizes(),
            ));
        }
        let sizes: Vec<usize> = self
            .sizes
            .iter()
            .map(|s| s.unwrap_or(n / known.max(1)))
            .collect();
        Ok(x.contiguous().view(&sizes)?)
    }
}

relayout_module!(
    /// `[N, ...]` to `[N, prod(...)]` (ONNX's `Flatten` with axis 1).
    Flatten {}
);

impl Flatten {
    /// The layer.
    pub fn new() -> Flatten {
        Flatten {
            label: "Flatten".into(),
        }
    }

    fn spec_of(&self) -> Spec {
        Spec::new("Flatten")
    }
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten::new()
    }
}

impl Relayout for Flatten {
    fn label(&self) -> &str {
        &self.label
    }
    fn apply(&self, x: &Tensor<f32>) -> Result<Tensor<f32>> {
        let s = x.sizes();
        if s.is_empty() {
            return Err(shape(&self.label, "[N, ...]", s));
        }
        let rest: usize = s[1..].iter().product();
        Ok(x.contiguous().view(&[s[0], rest])?)
    }
}

relayout_module!(
    /// Removes dimension `dim` if its size is 1 (`None`: every size-1
    /// dimension).
    Squeeze { dim: Option<usize> }
);

impl Squeeze {
    /// Squeeze `dim`, or every size-1 dimension.
    pub fn new(dim: Option<usize>) -> Squeeze {
        Squeeze {
            label: format!("Squeeze({dim:?})"),
            dim,
        }
    }
}

impl Squeeze {
    fn spec_of(&self) -> Spec {
        Spec::new("Squeeze").attr(
            "dim",
            crate::io::Attr::Int(self.dim.map_or(-1, |d| d as i64)),
        )
    }
}

impl Relayout for Squeeze {
    fn label(&self) -> &str {
        &self.label
    }
    fn apply(&self, x: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(match self.dim {
            Some(d) => x.squeeze_dim(d)?,
            None => x.squeeze(),
        })
    }
}

relayout_module!(
    /// Inserts a dimension of size 1 at `dim`.
    Unsqueeze { dim: usize }
);

impl Unsqueeze {
    /// Insert at `dim`.
    pub fn new(dim: usize) -> Unsqueeze {
        Unsqueeze {
            label: format!("Unsqueeze({dim})"),
            dim,
        }
    }
}

impl Unsqueeze {
    fn spec_of(&self) -> Spec {
        Spec::new("Unsqueeze").int("dim", self.dim)
    }
}

impl Relayout for Unsqueeze {
    fn label(&self) -> &str {
        &self.label
    }
    fn apply(&self, x: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(x.unsqueeze(self.dim)?)
    }
}

relayout_module!(
    /// Swaps the given pairs of dimensions, in order.
    Transpose { pairs: Vec<(usize, usize)> }
);

impl Transpose {
    /// Swap each `(a, b)` in turn.
    pub fn new(pairs: &[(usize, usize)]) -> Transpose {
        Transpose {
            label: format!("Transpose({pairs:?})"),
            pairs: pairs.to_vec(),
        }
    }
}

impl Transpose {
    fn spec_of(&self) -> Spec {
        let flat: Vec<usize> = self.pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        Spec::new("Transpose").ints("pairs", &flat)
    }
}

impl Relayout for Transpose {
    fn label(&self) -> &str {
        &self.label
    }
    fn apply(&self, x: &Tensor<f32>) -> Result<Tensor<f32>> {
        let mut t = x.clone();
        for &(a, b) in &self.pairs {
            t = t.transpose(a, b)?;
        }
        Ok(t)
    }
}

relayout_module!(
    /// `length` entries of dimension `dim` from `offset`; a negative length
    /// counts from the end, as in BigDL (-1: up to the last entry).
    Narrow { dim: usize, offset: usize, length: i64 }
);

impl Narrow {
    /// Entries `offset..offset + length` of `dim`.
    pub fn new(dim: usize, offset: usize, length: usize) -> Narrow {
        Narrow::signed(dim, offset, length as i64)
    }

    /// Entries from `offset`: `length` of them, or up to `size + length + 1`
    /// when negative (-1: to the end).
    pub fn signed(dim: usize, offset: usize, length: i64) -> Narrow {
        Narrow {
            label: format!("Narrow({dim}, {offset}, {length})"),
            dim,
            offset,
            length,
        }
    }
}

impl Narrow {
    fn spec_of(&self) -> Spec {
        Spec::new("Narrow")
            .int("dim", self.dim)
            .int("offset", self.offset)
            .attr("length", crate::io::Attr::Int(self.length))
    }
}

impl Relayout for Narrow {
    fn label(&self) -> &str {
        &self.label
    }
    fn apply(&self, x: &Tensor<f32>) -> Result<Tensor<f32>> {
        let size = x.sizes().get(self.dim).copied().unwrap_or(0) as i64;
        let len = if self.length < 0 {
            size + self.length + 1 - self.offset as i64
        } else {
            self.length
        };
        if len < 0 {
            return Err(shape(
                &self.label,
                format!("dimension {} of at least {} entries", self.dim, self.offset),
                x.sizes(),
            ));
        }
        Ok(x.narrow(self.dim, self.offset, len as usize)?)
    }
}

relayout_module!(
    /// Entry `index` of dimension `dim` (that dimension removed); a negative
    /// index counts from the end (-1: the last entry), as in BigDL.
    Select { dim: usize, index: i64 }
);

impl Select {
    /// Entry `index` of `dim`.
    pub fn new(dim: usize, index: usize) -> Select {
        Select::signed(dim, index as i64)
    }

    /// Entry `index` of `dim`, from the end when negative.
    pub fn signed(dim: usize, index: i64) -> Select {
        Select {
            label: format!("Select({dim}, {index})"),
            dim,
            index,
        }
    }
}

impl Select {
    fn spec_of(&self) -> Spec {
        Spec::new("Select")
            .int("dim", self.dim)
            .attr("index", crate::io::Attr::Int(self.index))
    }
}

impl Relayout for Select {
    fn label(&self) -> &str {
        &self.label
    }
    fn apply(&self, x: &Tensor<f32>) -> Result<Tensor<f32>> {
        let size = x.sizes().get(self.dim).copied().unwrap_or(0) as i64;
        let i = if self.index < 0 {
            self.index + size
        } else {
            self.index
        };
        if !(0..size).contains(&i) {
            return Err(shape(
                &self.label,
                format!(
                    "dimension {} of more than {} entries",
                    self.dim,
                    self.index.unsigned_abs()
                ),
                x.sizes(),
            ));
        }
        Ok(x.select(self.dim, i as usize)?)
    }
}

relayout_module!(
    /// A contiguous copy of its input (only when it is not contiguous).
    Contiguous {}
);

impl Contiguous {
    /// The layer.
    pub fn new() -> Contiguous {
        Contiguous {
            label: "Contiguous".into(),
        }
    }
}

impl Default for Contiguous {
    fn default() -> Self {
        Contiguous::new()
    }
}

impl Contiguous {
    fn spec_of(&self) -> Spec {
        Spec::new("Contiguous")
    }
}

impl Relayout for Contiguous {
    fn label(&self) -> &str {
        &self.label
    }
    fn apply(&self, x: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(x.clone())
    }
}

/// Pads (with `value`) or, in the backward pass, crops along one dimension.
#[derive(Clone, Debug)]
struct Pad {
    label: String,
    /// `(dim from the end, before, after)` per padded dimension.
    dims: Vec<(usize, usize, usize)>,
    value: f32,
}

impl Pad {
    /// The padded region of `out` holding the input.
    fn inner(&self, out: &Tensor<f32>) -> Result<Tensor<f32>> {
        let mut t = out.clone();
        for &(from_end, before, after) in &self.dims {
            let d = t.dim().checked_sub(from_end + 1).ok_or_else(|| {
                shape(
                    &self.label,
                    format!("at least {} dimensions", from_end + 1),
                    out.sizes(),
                )
            })?;
            let n = t.sizes()[d].checked_sub(before + after).ok_or_else(|| {
                shape(
                    &self.label,
                    format!("at least {} entries in dimension {d}", before + after),
                    out.sizes(),
                )
            })?;
            t = t.narrow(d, before, n)?;
        }
        Ok(t)
    }

    fn forward(&self, input: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.label)?;
        let mut sizes = x.sizes().to_vec();
        for &(from_end, before, after) in &self.dims {
            let d = sizes.len().checked_sub(from_end + 1).ok_or_else(|| {
                shape(
                    &self.label,
                    format!("at least {} dimensions", from_end + 1),
                    x.sizes(),
                )
            })?;
            sizes[d] += before + after;
        }
        let out = Tensor::full(&sizes, self.value)?;
        self.inner(&out)?.copy_from(x)?;
        Ok(out.into())
    }

    fn backward(&self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.label)?;
        let gy = grad_output.tensor(&self.label)?;
        let region = self.inner(gy)?;
        same_shape(&self.label, &region, x.sizes())?;
        Ok(region.contiguous().into())
    }
}

macro_rules! pad_module {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name(Pad);

        impl Module for $name {
            fn name(&self) -> &str {
                &self.0.label
            }
            fn forward(&mut self, input: &Activity) -> Result<Activity> {
                self.0.forward(input)
            }
            fn update_grad_input(
                &mut self,
                input: &Activity,
                grad_output: &Activity,
            ) -> Result<Activity> {
                self.0.backward(input, grad_output)
            }
            fn clone_module(&self) -> Box<dyn Module> {
                Box::new(self.clone())
            }
            fn spec(&self) -> Option<Spec> {
                let p = &self.0;
                let flat: Vec<usize> = p.dims.iter().flat_map(|&(d, a, b)| [d, a, b]).collect();
                Some(Spec::new(stringify!($name)).ints("dims", &flat).float("value", p.value))
            }
        }
    };
}

pad_module!(
    /// Zero padding of the last two dimensions (H, W) of `[..., H, W]` input.
    SpatialZeroPadding
);

impl SpatialZeroPadding {
    /// Pads `left`, `right` columns and `top`, `bottom` rows.
    pub fn new(left: usize, right: usize, top: usize, bottom: usize) -> SpatialZeroPadding {
        SpatialZeroPadding(Pad {
            label: format!("SpatialZeroPadding({left}, {right}, {top}, {bottom})"),
            dims: vec![(0, left, right), (1, top, bottom)],
            value: 0.0,
        })
    }
}

pad_module!(
    /// `value` padding of one dimension, counted from the end (0 = last),
    /// so the same layer serves batched and single inputs.
    Padding
);

impl Padding {
    /// Pads dimension `from_end` (0 = the last) with `before` and `after`
    /// entries of `value`.
    pub fn new(from_end: usize, before: usize, after: usize, value: f32) -> Padding {
        Padding(Pad {
            label: format!("Padding({from_end}, {before}, {after}, {value})"),
            dims: vec![(from_end, before, after)],
            value,
        })
    }
}

/// TensorFlow's `SAME` padding (ONNX's `auto_pad = SAME_UPPER` /
/// `SAME_LOWER`) of the last two dimensions, worked out from each input's
/// size so that a following layer with `kernel`, `stride` and `dilation` and
/// no padding of its own gives `ceil(size / stride)` outputs. The odd entry
/// goes after (upper) or before (`lower`). Pads with `value` (zero before a
/// convolution, minus infinity before max pooling).
#[derive(Clone, Debug)]
pub struct SamePadding {
    label: String,
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    lower: bool,
    value: f32,
}

impl SamePadding {
    /// The padding for a `kernel` / `stride` / `dilation` layer (each
    /// `(h, w)`, all positive).
    pub fn new(
        kernel: (usize, usize),
        stride: (usize, usize),
        dilation: (usize, usize),
        lower: bool,
        value: f32,
    ) -> Result<SamePadding> {
        let label = format!(
            "SamePadding(kernel {kernel:?}, stride {stride:?}, dilation {dilation:?}{})",
            if lower { ", lower" } else { "" }
        );
        if [kernel, stride, dilation]
            .iter()
            .any(|&(a, b)| a == 0 || b == 0 || a > 1 << 20 || b > 1 << 20)
            || value.is_nan()
        {
            return Err(invalid(
                &label,
                "sizes must be in 1..=2^20 and the value a number",
            ));
        }
        Ok(SamePadding {
            label,
            kernel,
            stride,
            dilation,
            lower,
            value,
        })
    }

    /// The fixed padding for input `x`.
    fn pad(&self, x: &Tensor<f32>) -> Result<Pad> {
        let s = x.sizes();
        if s.len() < 2 {
            return Err(shape(&self.label, "at least 2 dimensions", s));
        }
        let split = |size: usize, k: usize, st: usize, d: usize| {
            let span = d * (k - 1) + 1;
            let total = ((size.div_ceil(st).max(1) - 1) * st + span).saturating_sub(size);
            let small = total / 2;
            if self.lower {
                (total - small, small)
            } else {
                (small, total - small)
            }
        };
        let n = s.len();
        let (t, b) = split(s[n - 2], self.kernel.0, self.stride.0, self.dilation.0);
        let (l, r) = split(s[n - 1], self.kernel.1, self.stride.1, self.dilation.1);
        Ok(Pad {
            label: self.label.clone(),
            dims: vec![(0, l, r), (1, t, b)],
            value: self.value,
        })
    }
}

impl Module for SamePadding {
    fn name(&self) -> &str {
        &self.label
    }
    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        self.pad(input.tensor(&self.label)?)?.forward(input)
    }
    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        self.pad(input.tensor(&self.label)?)?
            .backward(input, grad_output)
    }
    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
    fn spec(&self) -> Option<Spec> {
        let pair = |(a, b): (usize, usize)| [a, b];
        Some(
            Spec::new("SamePadding")
                .ints("kernel", &pair(self.kernel))
                .ints("stride", &pair(self.stride))
                .ints("dilation", &pair(self.dilation))
                .flag("lower", self.lower)
                .float("value", self.value),
        )
    }
}

/// `x` with dimension `dim` reversed.
pub(crate) fn reverse(x: &Tensor<f32>, dim: usize) -> Result<Tensor<f32>> {
    let steps: Vec<Tensor<f32>> = (0..x.sizes()[dim])
        .rev()
        .map(|s| x.narrow(dim, s, 1))
        .collect::<bigdl_tensor::Result<_>>()?;
    let refs: Vec<&Tensor<f32>> = steps.iter().collect();
    Ok(Tensor::cat(&refs, dim)?)
}

/// The input with dimension `dim` in reverse order (BigDL's `Reverse`, e.g.
/// time reversed for a recurrence that runs backwards); the gradient is
/// reversed the same way.
#[derive(Clone, Debug)]
pub struct Reverse {
    label: String,
    dim: usize,
}

impl Reverse {
    /// Reverses dimension `dim`.
    pub fn new(dim: usize) -> Reverse {
        Reverse {
            label: format!("Reverse({dim})"),
            dim,
        }
    }

    fn apply(&self, x: &Tensor<f32>) -> Result<Activity> {
        if x.dim() <= self.dim || x.sizes()[self.dim] == 0 {
            return Err(shape(
                &self.label,
                format!("a non-empty dimension {}", self.dim),
                x.sizes(),
            ));
        }
        Ok(reverse(x, self.dim)?.into())
    }
}

impl Module for Reverse {
    fn name(&self) -> &str {
        &self.label
    }
    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        self.apply(input.tensor(&self.label)?)
    }
    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.label)?;
        let gy = grad_output.tensor(&self.label)?;
        same_shape(&self.label, gy, x.sizes())?;
        self.apply(gy)
    }
    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("Reverse").int("dim", self.dim))
    }
}

/// Which reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reduce {
    Sum,
    Mean,
    Max,
}

/// A reduction along one dimension (removed from the output).
#[derive(Clone, Debug)]
struct Reduction {
    label: String,
    dim: usize,
    kind: Reduce,
    argmax: Vec<usize>,
}

impl Reduction {
    /// `x` with `dim` moved last, contiguous, as `(rows, row length, shape
    /// with dim removed)`.
    fn rows(&self, x: &Tensor<f32>) -> Result<(Tensor<f32>, usize, Vec<usize>)> {
        if x.dim() <= self.dim {
            return Err(shape(
                &self.label,
                format!("at least {} dimensions", self.dim + 1),
                x.sizes(),
            ));
        }
        let last = x.dim() - 1;
        let n = x.sizes()[self.dim];
        let mut out = x.sizes().to_vec();
        out.remove(self.dim);
        Ok((x.transpose(self.dim, last)?.contiguous(), n, out))
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.label)?;
        let (t, n, out) = self.rows(x)?;
        if n == 0 && self.kind != Reduce::Sum {
            return Err(invalid(
                &self.label,
                format!("dimension {} is empty", self.dim),
            ));
        }
        let data = t.as_slice()?;
        let rows = data.chunks(n.max(1)).take(out.iter().product());
        let y: Vec<f32> = match self.kind {
            Reduce::Sum => rows
                .map(|r| r.iter().map(|&v| v as f64).sum::<f64>() as f32)
                .collect(),
            Reduce::Mean => rows
                .map(|r| (r.iter().map(|&v| v as f64).sum::<f64>() / n as f64) as f32)
                .collect(),
            Reduce::Max => {
                self.argmax.clear();
                rows.map(|r| {
                    let (i, v) =
                        r.iter()
                            .enumerate()
                            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                                if v > best.1 || (v.is_nan() && !best.1.is_nan()) {
                                    (i, v)
                                } else {
                                    best
                                }
                            });
                    self.argmax.push(i);
                    v
                })
                .collect()
            }
        };
        Ok(Tensor::from_vec(y, &out)?.into())
    }

    fn backward(&self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let x = input.tensor(&self.label)?;
        let (_, n, out) = self.rows(x)?;
        let gy = grad_output.tensor(&self.label)?;
        same_shape(&self.label, gy, &out)?;
        let gy = gy.to_vec();
        let mut g = vec![0.0f32; gy.len() * n];
        for (r, (row, &d)) in g.chunks_mut(n.max(1)).zip(&gy).enumerate() {
            match self.kind {
                Reduce::Sum => row.fill(d),
                Reduce::Mean => row.fill(d / n as f32),
                Reduce::Max => {
                    let i = *self.argmax.get(r).ok_or_else(|| {
                        invalid(&self.label, "backward before forward on this input")
                    })?;
                    row[i] = d;
                }
            }
        }
        // Rows were `x` with `dim` moved last: move it back.
        let mut moved = x.sizes().to_vec();
        let last = moved.len() - 1;
        moved.swap(self.dim, last);
        let g = Tensor::from_vec(g, &moved)?
            .transpose(self.dim, last)?
            .contiguous();
        Ok(g.into())
    }
}

macro_rules! reduction_module {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name(Reduction);

        impl $name {
            /// Along `dim` (removed from the output).
            pub fn new(dim: usize) -> $name {
                $name(Reduction {
                    label: format!("{}({dim})", stringify!($name)),
                    dim,
                    kind: $kind,
                    argmax: Vec::new(),
                })
            }
        }

        impl Module for $name {
            fn name(&self) -> &str {
                &self.0.label
            }
            fn forward(&mut self, input: &Activity) -> Result<Activity> {
                self.0.forward(input)
            }
            fn update_grad_input(
                &mut self,
                input: &Activity,
                grad_output: &Activity,
            ) -> Result<Activity> {
                self.0.backward(input, grad_output)
            }
            fn clone_module(&self) -> Box<dyn Module> {
                Box::new(self.clone())
            }
            fn spec(&self) -> Option<Spec> {
                Some(Spec::new(stringify!($name)).int("dim", self.0.dim))
            }
        }
    };
}

reduction_module!(
    /// Sum along a dimension.
    Sum,
    Reduce::Sum
);
reduction_module!(
    /// Mean along a dimension.
    Mean,
    Reduce::Mean
);
reduction_module!(
    /// Maximum along a dimension (the gradient goes to the first maximum).
    Max,
    Reduce::Max
);
