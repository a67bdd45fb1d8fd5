//! Recurrent layers: `Recurrent` over an RNN, LSTM or GRU cell, `BiRecurrent`
//! and `TimeDistributed`.

use bigdl_tensor::Tensor;
use bigdl_tensor::kernels::gemm::{Gemm, Transpose};

use crate::activity::Activity;
use crate::error::{Result, invalid, shape};
use crate::io::Spec;
use crate::module::{Module, init_generator, same_shape, uniform_init};

/// Which recurrence a [`Cell`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// `h = tanh(W_ih x + b_ih + W_hh h' + b_hh)`.
    Rnn,
    /// LSTM with gates in PyTorch's order (input, forget, cell, output).
    Lstm,
    /// GRU with gates in PyTorch's order (reset, update, new). PyTorch's
    /// (and ONNX's `linear_before_reset = 1`) new gate is
    /// `tanh(W_in x + b_in + r * (W_hn h' + b_hn))`; with
    /// [`Cell::gru_with`]`(.., false)` it is the original
    /// `tanh(W_in x + b_in + W_hn (r * h') + b_hn)` (ONNX's default).
    Gru,
}

impl CellKind {
    fn gates(self) -> usize {
        match self {
            CellKind::Rnn => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
}

/// The parameters of a recurrent cell, laid out as PyTorch's
/// (`weight_ih [G H, D]`, `weight_hh [G H, H]`, `bias_ih`, `bias_hh`
/// `[G H]`, G gates), initialised `U(-1/sqrt(H), 1/sqrt(H))`; an LSTM with
/// peepholes ([`Cell::lstm_peephole`]) has a fifth, `[3 H]`.
#[derive(Clone, Debug)]
pub struct Cell {
    kind: CellKind,
    input: usize,
    hidden: usize,
    /// GRU only: the reset gate scales `W_hn h' + b_hn` (true, PyTorch's)
    /// or `h'` before the product (false).
    linear_before_reset: bool,
    /// `[w_ih, w_hh, b_ih, b_hh]` (and the peepholes) and their gradients.
    params: Vec<Tensor<f32>>,
    grads: Vec<Tensor<f32>>,
}

impl Cell {
    fn new(kind: CellKind, input: usize, hidden: usize) -> Result<Cell> {
        Cell::with_params(kind, input, hidden, false)
    }

    fn with_params(kind: CellKind, input: usize, hidden: usize, peephole: bool) -> Result<Cell> {
        let gh = kind.gates() * hidden;
        let shapes = [vec![gh, input], vec![gh, hidden], vec![gh], vec![gh]];
        let mut c = Cell {
            kind,
            input,
            hidden,
            linear_before_reset: true,
            params: Vec::new(),
            grads: Vec::new(),
        };
        let peepholes = [vec![3 * hidden]];
        let extra = if peephole { &peepholes[..] } else { &[] };
        let mut g = init_generator();
        for s in shapes.iter().chain(extra) {
            c.params.push(uniform_init(s, hidden, &mut g)?);
            c.grads.push(Tensor::zeros(s)?);
        }
        Ok(c)
    }

    /// A cell of `kind`.
    pub fn of_kind(kind: CellKind, input: usize, hidden: usize) -> Result<Cell> {
        Cell::new(kind, input, hidden)
    }

    /// A tanh RNN cell from `input` to `hidden` features.
    pub fn rnn(input: usize, hidden: usize) -> Result<Cell> {
        Cell::new(CellKind::Rnn, input, hidden)
    }

    /// An LSTM cell.
    pub fn lstm(input: usize, hidden: usize) -> Result<Cell> {
        Cell::new(CellKind::Lstm, input, hidden)
    }

    /// An LSTM cell with peephole connections (Gers and Schmidhuber; ONNX's
    /// `P`): the input and forget gates also see `p_i * c'` and `p_f * c'`,
    /// the output gate `p_o * c`, from a fifth parameter `[p_i p_f p_o]`
    /// (`[3 H]`).
    pub fn lstm_peephole(input: usize, hidden: usize) -> Result<Cell> {
        Cell::with_params(CellKind::Lstm, input, hidden, true)
    }

    /// Whether this is an LSTM cell with peepholes.
    fn peephole(&self) -> bool {
        self.params.len() == 5
    }

    /// The peephole weights `[p_i p_f p_o]` (zeros without peepholes).
    fn peepholes(&self) -> Vec<f32> {
        match self.params.get(4) {
            Some(p) => p.to_vec(),
            None => vec![0.0; 3 * self.hidden],
        }
    }

    /// A GRU cell (PyTorch's: the reset gate after the hidden product).
    pub fn gru(input: usize, hidden: usize) -> Result<Cell> {
        Cell::new(CellKind::Gru, input, hidden)
    }

    /// A GRU cell with the reset gate after (`linear_before_reset`, as
    /// [`Cell::gru`]) or before the hidden product of the new gate.
    pub fn gru_with(input: usize, hidden: usize, linear_before_reset: bool) -> Result<Cell> {
        let mut c = Cell::new(CellKind::Gru, input, hidden)?;
        c.linear_before_reset = linear_before_reset;
        Ok(c)
    }

    /// GRU with the reset gate applied to `h'` before the hidden product.
    fn reset_before(&self) -> bool {
        self.kind == CellKind::Gru && !self.linear_before_reset
    }
}

impl Cell {
    fn spec(&self) -> Spec {
        let kind = match self.kind {
            CellKind::Rnn => "RnnCell",
            CellKind::Lstm => "LSTM",
            CellKind::Gru => "GRU",
        };
        let mut s = Spec::new(kind)
            .int("input", self.input)
            .int("hidden", self.hidden);
        if self.reset_before() {
            s = s.flag("linear_before_reset", false);
        }
        if self.peephole() {
            s = s.flag("peephole", true);
        }
        s
    }

    /// The cell a spec of [`Cell`]'s kinds describes.
    pub(crate) fn from_spec(s: &Spec) -> Result<Cell> {
        let (i, h) = (s.get_usize("input")?, s.get_usize("hidden")?);
        match s.kind.as_str() {
            "RnnCell" => Cell::rnn(i, h),
            "LSTM" if s.get_bool_or("peephole", false)? => Cell::lstm_peephole(i, h),
            "LSTM" => Cell::lstm(i, h),
            "GRU" => {
                // Files from before the flag hold PyTorch's GRU.
                Cell::gru_with(i, h, s.get_bool_or("linear_before_reset", true)?)
            }
            k => Err(invalid("model file", format!("unknown recurrent cell {k}"))),
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// What the forward pass keeps for the backward pass. States and per-step
/// values are in processing order (reversed in time for a reversed
/// recurrence); the gate gradients `d_gx` are in time order, as the input.
#[derive(Clone, Debug, Default)]
struct Saved {
    n: usize,
    t: usize,
    /// Each sequence's length (`t` without lengths).
    lens: Vec<usize>,
    /// How many initial states the input gave.
    states: usize,
    /// Hidden states `h_0 .. h_T` (`h_0` the initial state), each `[N, H]`.
    h: Vec<Vec<f32>>,
    /// LSTM: cell states `c_0 .. c_T`; per step activated gates `[N, G H]`
    /// (LSTM: i, f, g, o; GRU: r, z, n); GRU: the hidden side of the new
    /// gate (`W_hn h' + b_hn`, or with the reset gate before the product
    /// `W_hn (r * h') + b_hn`); and then `r * h'`.
    c: Vec<Vec<f32>>,
    gates: Vec<Vec<f32>>,
    gh_n: Vec<Vec<f32>>,
    rh: Vec<Vec<f32>>,
    /// Gradients of the gate pre-activations, per step, from the last
    /// `update_grad_input` (x side and h side: they differ for the GRU).
    d_gx: Vec<f32>,
    d_gh: Vec<Vec<f32>>,
}

/// Runs a [`Cell`] over the time dimension of `[N, T, D]` input (batch first,
/// as BigDL); the output is every step's hidden state, `[N, T, H]`.
/// Gradients by back-propagation through time; results match PyTorch's
/// `nn.RNN`, `nn.LSTM` and `nn.GRU` (`batch_first=True`).
///
/// Options, for ONNX's recurrences and padded batches:
/// - [`Recurrent::reversed`]: over time backwards, from the last step;
/// - [`Recurrent::with_lengths`]: the input table's second activity holds
///   each sequence's length (`[N]`, whole numbers up to `T`): a sequence's
///   steps from its length on leave its state as it is and output zeros (a
///   reversed recurrence starts at the sequence's own last step);
/// - [`Recurrent::with_final_states`]: the output is `[y, h_T]` (`[y, h_T,
///   c_T]` for an LSTM), the last states too (`[N, H]`).
///
/// The recurrence starts from zeros, or from the initial states that follow
/// the input (and the lengths) in a table: `[x, h0]`, or `[x, h0, c0]` for
/// an LSTM (each `[N, H]`). A table input gets a gradient table of the same
/// form (zeros for the lengths).
#[derive(Clone, Debug)]
pub struct Recurrent {
    name: String,
    cell: Cell,
    reverse: bool,
    lengths: bool,
    final_states: bool,
    saved: Saved,
}

/// A [`Recurrent`]'s input, taken apart.
struct Parts {
    x: Tensor<f32>,
    n: usize,
    t: usize,
    lens: Vec<usize>,
    /// The initial hidden and cell states (zeros where not given).
    h0: Vec<f32>,
    c0: Vec<f32>,
    /// How many states the input gave.
    states: usize,
}

impl Recurrent {
    /// The recurrence of `cell`.
    pub fn new(cell: Cell) -> Recurrent {
        Recurrent {
            name: format!(
                "Recurrent({:?}, {} -> {})",
                cell.kind, cell.input, cell.hidden
            ),
            cell,
            reverse: false,
            lengths: false,
            final_states: false,
            saved: Saved::default(),
        }
    }

    /// Runs over time backwards (ONNX's `reverse` direction); the output
    /// stays in the input's time order.
    pub fn reversed(mut self) -> Recurrent {
        self.reverse = true;
        self
    }

    /// Takes each sequence's length as the input table's second activity.
    pub fn with_lengths(mut self) -> Recurrent {
        self.lengths = true;
        self
    }

    /// Outputs the last states too: `[y, h_T]`, `[y, h_T, c_T]` for an LSTM.
    pub fn with_final_states(mut self) -> Recurrent {
        self.final_states = true;
        self
    }

    /// The time step processed `k`-th of `t`.
    fn step(&self, k: usize, t: usize) -> usize {
        if self.reverse { t - 1 - k } else { k }
    }

    /// The input sequence (a tensor, or a table's first activity) with its
    /// batch size and length.
    fn input(&self, input: &Activity) -> Result<(Tensor<f32>, usize, usize)> {
        let x = match input {
            Activity::Table(t) => t
                .first()
                .ok_or_else(|| invalid(&self.name, "an empty input table"))?
                .tensor(&self.name)?,
            x => x.tensor(&self.name)?,
        };
        match x.sizes() {
            &[n, t, d] if d == self.cell.input => Ok((x.contiguous(), n, t)),
            s => Err(shape(&self.name, format!("[N, T, {}]", self.cell.input), s)),
        }
    }

    fn parts(&self, input: &Activity) -> Result<Parts> {
        let (x, n, t) = self.input(input)?;
        let hd = self.cell.hidden;
        let mut rest = match input {
            Activity::Table(a) => &a[1..],
            _ => &[],
        };
        let form = match (self.lengths, self.cell.kind == CellKind::Lstm) {
            (true, true) => "[x, lengths, h0, c0]",
            (true, false) => "[x, lengths, h0]",
            (false, true) => "[x, h0, c0]",
            (false, false) => "[x, h0]",
        };
        let mut lens = vec![t; n];
        if self.lengths {
            let Some((l, more)) = rest.split_first() else {
                return Err(invalid(
                    &self.name,
                    format!("no lengths: the input is {form}"),
                ));
            };
            let l = l.tensor(&self.name)?;
            same_shape(&self.name, l, &[n])?;
            for (len, &v) in lens.iter_mut().zip(&l.contiguous().to_vec()) {
                if !(v >= 0.0 && v <= t as f32 && v.fract() == 0.0) {
                    return Err(invalid(
                        &self.name,
                        format!("a sequence length {v} (whole numbers up to {t})"),
                    ));
                }
                *len = v as usize;
            }
            rest = more;
        }
        let most = if self.cell.kind == CellKind::Lstm {
            2
        } else {
            1
        };
        if rest.len() > most {
            return Err(invalid(
                &self.name,
                format!(
                    "an input table of {} activities ({form})",
                    input.table(&self.name)?.len()
                ),
            ));
        }
        let mut st = [vec![0.0; n * hd], vec![0.0; n * hd]];
        for (o, a) in st.iter_mut().zip(rest) {
            let a = a.tensor(&self.name)?;
            same_shape(&self.name, a, &[n, hd])?;
            *o = a.contiguous().to_vec();
        }
        let [h0, c0] = st;
        Ok(Parts {
            x,
            n,
            t,
            lens,
            h0,
            c0,
            states: rest.len(),
        })
    }

    /// Back-propagation through time: the input gradient, keeping the gate
    /// gradients for `acc_grad_parameters`.
    fn bptt(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let (_, n, t) = self.input(input)?;
        let (hd, kind) = (self.cell.hidden, self.cell.kind);
        let gh = kind.gates() * hd;
        let lstm = kind == CellKind::Lstm;
        let (gy, g_last): (&Tensor<f32>, Vec<&Tensor<f32>>) = if self.final_states {
            let g = grad_output.table(&self.name)?;
            if g.len() != 2 + usize::from(lstm) {
                return Err(invalid(
                    &self.name,
                    format!(
                        "a gradient table of {} activities for the output's {}",
                        g.len(),
                        2 + usize::from(lstm)
                    ),
                ));
            }
            let g: Vec<&Tensor<f32>> = g
                .iter()
                .map(|a| a.tensor(&self.name))
                .collect::<Result<_>>()?;
            (g[0], g[1..].to_vec())
        } else {
            (grad_output.tensor(&self.name)?, Vec::new())
        };
        same_shape(&self.name, gy, &[n, t, hd])?;
        // The gradients of the last states start the recurrence backwards.
        let mut last = [vec![0.0f32; n * hd], vec![0.0f32; n * hd]];
        for (d, g) in last.iter_mut().zip(&g_last) {
            same_shape(&self.name, g, &[n, hd])?;
            *d = g.contiguous().to_vec();
        }
        let [mut dh_next, mut dc_next] = last;
        if self.saved.n != n || self.saved.t != t || self.saved.h.len() != t + 1 {
            return Err(invalid(&self.name, "backward before forward on this input"));
        }
        let gy = gy.contiguous().to_vec();
        let w_hh = self.cell.params[1].to_vec();
        let reset_before = self.cell.reset_before();
        let peep = self.cell.peepholes();
        let steps: Vec<usize> = (0..t).map(|k| self.step(k, t)).collect();
        let s = &mut self.saved;
        s.d_gx = vec![0.0; n * t * gh];
        s.d_gh = vec![Vec::new(); t];
        for pk in (0..t).rev() {
            let step = steps[pk];
            let mut dgx = vec![0.0f32; n * gh];
            let mut dgh = vec![0.0f32; n * gh];
            let mut dh_prev = vec![0.0f32; n * hd];
            let g = &s.gates[pk];
            for b in 0..n {
                if step >= s.lens[b] {
                    // Past the sequence's end: the state passed through.
                    dh_prev[b * hd..][..hd].copy_from_slice(&dh_next[b * hd..][..hd]);
                    continue;
                }
                for j in 0..hd {
                    let k = b * hd + j;
                    let dh = gy[(b * t + step) * hd + j] + dh_next[k];
                    let row = b * gh;
                    match kind {
                        CellKind::Rnn => {
                            let h = s.h[pk + 1][k];
                            let da = dh * (1.0 - h * h);
                            dgx[row + j] = da;
                            dgh[row + j] = da;
                        }
                        CellKind::Lstm => {
                            let (i, f, gg, o) = (
                                g[row + j],
                                g[row + hd + j],
                                g[row + 2 * hd + j],
                                g[row + 3 * hd + j],
                            );
                            let (cp, tc) = (s.c[pk][k], s.c[pk + 1][k].tanh());
                            // The output gate sees c through its peephole.
                            let dao = dh * tc * o * (1.0 - o);
                            let dc = dc_next[k] + dh * o * (1.0 - tc * tc) + dao * peep[2 * hd + j];
                            let da = [
                                dc * gg * i * (1.0 - i),
                                dc * cp * f * (1.0 - f),
                                dc * i * (1.0 - gg * gg),
                                dao,
                            ];
                            for (q, &v) in da.iter().enumerate() {
                                dgx[row + q * hd + j] = v;
                                dgh[row + q * hd + j] = v;
                            }
                            dc_next[k] = dc * f + da[0] * peep[j] + da[1] * peep[hd + j];
                        }
                        CellKind::Gru => {
                            let (r, z, nn) = (g[row + j], g[row + hd + j], g[row + 2 * hd + j]);
                            let hp = s.h[pk][k];
                            let dan = dh * (1.0 - z) * (1.0 - nn * nn);
                            let daz = dh * (hp - nn) * z * (1.0 - z);
                            dgx[row + hd + j] = daz;
                            dgx[row + 2 * hd + j] = dan;
                            dgh[row + hd + j] = daz;
                            dh_prev[k] = dh * z;
                            if !reset_before {
                                let dar = dan * s.gh_n[pk][k] * r * (1.0 - r);
                                dgx[row + j] = dar;
                                dgh[row + j] = dar;
                                dgh[row + 2 * hd + j] = dan * r;
                            } else {
                                // The reset gate's share follows below.
                                dgh[row + 2 * hd + j] = dan;
                            }
                        }
                    }
                }
            }
            if reset_before {
                // d(r * h') = dgh_n (N x H) * W_hn (H x H); then r's gradient
                // (zero past a sequence's end, where dgh is).
                let mut drh = vec![0.0f32; n * hd];
                Gemm::new(n, hd, hd)
                    .lda(gh)
                    .run(&dgh[2 * hd..], &w_hh[2 * hd * hd..], &mut drh)?;
                for b in 0..n {
                    for j in 0..hd {
                        let (k, row) = (b * hd + j, b * gh);
                        let r = g[row + j];
                        let dar = drh[k] * s.h[pk][k] * r * (1.0 - r);
                        dgx[row + j] = dar;
                        dgh[row + j] = dar;
                        dh_prev[k] += drh[k] * r;
                    }
                }
            }
            // dh_prev += dgh (N x GH') * W_hh (GH' x H), over every gate whose
            // hidden-side input is h' (not the new gate's when reset before).
            let gates_on_h = if reset_before { 2 * hd } else { gh };
            Gemm::new(n, hd, gates_on_h).lda(gh).beta(1.0).run(
                &dgh,
                &w_hh[..gates_on_h * hd],
                &mut dh_prev,
            )?;
            for b in 0..n {
                s.d_gx[(b * t + step) * gh..][..gh].copy_from_slice(&dgx[b * gh..][..gh]);
            }
            s.d_gh[pk] = dgh;
            dh_next = dh_prev;
        }
        // dx (N T x D) = d_gx (N T x GH) * W_ih (GH x D).
        let mut dx = vec![0.0f32; n * t * self.cell.input];
        Gemm::new(n * t, self.cell.input, gh).run(
            &s.d_gx,
            &self.cell.params[0].as_slice()?,
            &mut dx,
        )?;
        let dx = Tensor::from_vec(dx, &[n, t, self.cell.input])?.into();
        // A table input gets the gradients of what else it gave.
        if !matches!(input, Activity::Table(_)) {
            return Ok(dx);
        }
        let mut out = vec![dx];
        if self.lengths {
            out.push(Tensor::<f32>::zeros(&[n])?.into());
        }
        for d in [dh_next, dc_next].into_iter().take(s.states) {
            out.push(Tensor::from_vec(d, &[n, hd])?.into());
        }
        Ok(Activity::Table(out))
    }
}

impl Module for Recurrent {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let Parts {
            x,
            n,
            t,
            lens,
            h0,
            c0,
            states,
        } = self.parts(input)?;
        let peep = self.cell.peepholes();
        let (d, hd, kind) = (self.cell.input, self.cell.hidden, self.cell.kind);
        let gh = kind.gates() * hd;
        let p = &self.cell.params;
        let (w_hh, b_ih, b_hh) = (p[1].to_vec(), p[2].to_vec(), p[3].to_vec());
        // The input side of every step in one product: [N T, GH].
        let mut gx = vec![0.0f32; n * t * gh];
        Gemm::new(n * t, gh, d).trans_b(Transpose::Yes).run(
            &x.as_slice()?,
            &p[0].as_slice()?,
            &mut gx,
        )?;
        let steps: Vec<usize> = (0..t).map(|k| self.step(k, t)).collect();
        let reset_before = self.cell.reset_before();
        let s = &mut self.saved;
        *s = Saved {
            n,
            t,
            lens,
            states,
            h: vec![h0],
            c: vec![c0],
            ..Saved::default()
        };
        let mut y = vec![0.0f32; n * t * hd];
        for (pk, &step) in steps.iter().enumerate() {
            // The hidden side: h' W_hh^T + b_hh, [N, GH].
            let mut ghs = vec![0.0f32; n * gh];
            for row in ghs.chunks_mut(gh) {
                row.copy_from_slice(&b_hh);
            }
            Gemm::new(n, gh, hd)
                .trans_b(Transpose::Yes)
                .beta(1.0)
                .run(&s.h[pk], &w_hh, &mut ghs)?;
            let mut h = vec![0.0f32; n * hd];
            let mut c = vec![0.0f32; if kind == CellKind::Lstm { n * hd } else { 0 }];
            let mut gates = vec![0.0f32; n * gh];
            let mut gh_n = vec![0.0f32; if kind == CellKind::Gru { n * hd } else { 0 }];
            // Reset before the product: W_hn (r * h') + b_hn, from every r.
            let mut rh = Vec::new();
            if reset_before {
                rh = vec![0.0f32; n * hd];
                for b in 0..n {
                    for j in 0..hd {
                        let a = gx[(b * t + step) * gh + j] + b_ih[j] + ghs[b * gh + j];
                        rh[b * hd + j] = sigmoid(a) * s.h[pk][b * hd + j];
                    }
                }
                for row in gh_n.chunks_mut(hd) {
                    row.copy_from_slice(&b_hh[2 * hd..]);
                }
                Gemm::new(n, hd, hd).trans_b(Transpose::Yes).beta(1.0).run(
                    &rh,
                    &w_hh[2 * hd * hd..],
                    &mut gh_n,
                )?;
            }
            for b in 0..n {
                if step >= s.lens[b] {
                    // Past the sequence's end: the state stays, the output
                    // is zero.
                    h[b * hd..][..hd].copy_from_slice(&s.h[pk][b * hd..][..hd]);
                    if kind == CellKind::Lstm {
                        c[b * hd..][..hd].copy_from_slice(&s.c[pk][b * hd..][..hd]);
                    }
                    continue;
                }
                let xrow = &gx[(b * t + step) * gh..][..gh];
                let hrow = &ghs[b * gh..][..gh];
                let a = |q: usize, j: usize| xrow[q * hd + j] + b_ih[q * hd + j] + hrow[q * hd + j];
                let row = b * gh;
                for j in 0..hd {
                    let k = b * hd + j;
                    match kind {
                        CellKind::Rnn => {
                            h[k] = a(0, j).tanh();
                        }
                        CellKind::Lstm => {
                            // Peepholes (zero without): c' into the input
                            // and forget gates, c into the output gate.
                            let cp = s.c[pk][k];
                            let i = sigmoid(a(0, j) + peep[j] * cp);
                            let f = sigmoid(a(1, j) + peep[hd + j] * cp);
                            let g = a(2, j).tanh();
                            c[k] = f * cp + i * g;
                            let o = sigmoid(a(3, j) + peep[2 * hd + j] * c[k]);
                            h[k] = o * c[k].tanh();
                            for (q, v) in [i, f, g, o].into_iter().enumerate() {
                                gates[row + q * hd + j] = v;
                            }
                        }
                        CellKind::Gru => {
                            let r = sigmoid(a(0, j));
                            let z = sigmoid(a(1, j));
                            let (hn, scale) = if reset_before {
                                (gh_n[k], 1.0)
                            } else {
                                (hrow[2 * hd + j], r)
                            };
                            let nn = (xrow[2 * hd + j] + b_ih[2 * hd + j] + scale * hn).tanh();
                            h[k] = (1.0 - z) * nn + z * s.h[pk][k];
                            gates[row + j] = r;
                            gates[row + hd + j] = z;
                            gates[row + 2 * hd + j] = nn;
                            gh_n[k] = hn;
                        }
                    }
                    y[(b * t + step) * hd + j] = h[k];
                }
            }
            s.h.push(h);
            if kind == CellKind::Lstm {
                s.c.push(c);
            }
            s.gates.push(gates);
            s.gh_n.push(gh_n);
            s.rh.push(rh);
        }
        let y = Tensor::from_vec(y, &[n, t, hd])?.into();
        if !self.final_states {
            return Ok(y);
        }
        let mut out = vec![y, Tensor::from_vec(s.h[t].clone(), &[n, hd])?.into()];
        if kind == CellKind::Lstm {
            out.push(Tensor::from_vec(s.c[t].clone(), &[n, hd])?.into());
        }
        Ok(Activity::Table(out))
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        self.bptt(input, grad_output)
    }

    fn acc_grad_parameters(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        let (x, n, t) = self.input(input)?;
        let (d, hd) = (self.cell.input, self.cell.hidden);
        let gh = self.cell.kind.gates() * hd;
        if self.saved.d_gh.len() != t || self.saved.d_gx.len() != n * t * gh {
            self.bptt(input, grad_output)?;
        }
        let s = &self.saved;
        let g = &self.cell.grads;
        // dW_ih += d_gx^T (GH x N T) * x (N T x D).
        Gemm::new(gh, d, n * t)
            .trans_a(Transpose::Yes)
            .alpha(scale)
            .beta(1.0)
            .run(&s.d_gx, &x.as_slice()?, &mut g[0].as_slice_mut()?)?;
        {
            let mut gw = g[1].as_slice_mut()?;
            // Gate rows whose hidden-side input is h' (all but the new gate's
            // when the reset comes before its product: that one's is r * h').
            let on_h = if self.cell.reset_before() { 2 * hd } else { gh };
            for pk in 0..t {
                // dW_hh += d_gh^T (GH x N) * h' (N x H).
                Gemm::new(on_h, hd, n)
                    .trans_a(Transpose::Yes)
                    .lda(gh)
                    .alpha(scale)
                    .beta(1.0)
                    .run(&s.d_gh[pk], &s.h[pk], &mut gw[..on_h * hd])?;
                if on_h < gh {
                    Gemm::new(hd, hd, n)
                        .trans_a(Transpose::Yes)
                        .lda(gh)
                        .alpha(scale)
                        .beta(1.0)
                        .run(&s.d_gh[pk][on_h..], &s.rh[pk], &mut gw[on_h * hd..])?;
                }
            }
        }
        let mut bi = vec![0.0f64; gh];
        for row in s.d_gx.chunks(gh) {
            bi.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64);
        }
        let mut bh = vec![0.0f64; gh];
        for row in s.d_gh.iter().flat_map(|m| m.chunks(gh)) {
            bh.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64);
        }
        // Peepholes: dp_i += da_i c', dp_f += da_f c', dp_o += da_o c.
        let mut dp = vec![0.0f64; if self.cell.peephole() { 3 * hd } else { 0 }];
        if !dp.is_empty() {
            for (r, row) in s.d_gx.chunks(gh).enumerate() {
                // Rows are in time order; `step` maps time to processing
                // order too (reversing is its own inverse).
                let (b, pk) = (r / t, self.step(r % t, t));
                let (cp, c) = (&s.c[pk][b * hd..], &s.c[pk + 1][b * hd..]);
                for j in 0..hd {
                    dp[j] += (row[j] * cp[j]) as f64;
                    dp[hd + j] += (row[hd + j] * cp[j]) as f64;
                    dp[2 * hd + j] += (row[3 * hd + j] * c[j]) as f64;
                }
            }
        }
        for (dst, src) in g[2..].iter().zip([&bi, &bh, &dp]) {
            let mut dst = dst.as_slice_mut()?;
            dst.iter_mut()
                .zip(src)
                .for_each(|(d, &v)| *d += scale * v as f32);
        }
        Ok(())
    }

    fn visit_parameters(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
        let (p, g) = (&mut self.cell.params, &mut self.cell.grads);
        for (p, g) in p.iter_mut().zip(g.iter_mut()) {
            f(p, g);
        }
    }

    fn spec(&self) -> Option<Spec> {
        let mut s = Spec::new("Recurrent").child(self.cell.spec());
        for (flag, on) in [
            ("reverse", self.reverse),
            ("lengths", self.lengths),
            ("final_states", self.final_states),
        ] {
            if on {
                s = s.flag(flag, true);
            }
        }
        Some(s)
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

/// A forward and a backward (time-reversed) [`Recurrent`] over the same
/// `[N, T, D]` input, their outputs joined along the features (`[N, T, 2 H]`,
/// as PyTorch's `bidirectional=True`).
#[derive(Clone, Debug)]
pub struct BiRecurrent {
    fwd: Recurrent,
    bwd: Recurrent,
}

impl BiRecurrent {
    /// `forward` runs over time as given, `backward` reversed; both cells
    /// must map the same input size to the same hidden size.
    pub fn new(forward: Cell, backward: Cell) -> Result<BiRecurrent> {
        if (forward.input, forward.hidden) != (backward.input, backward.hidden) {
            return Err(invalid(
                "BiRecurrent",
                format!(
                    "cells of sizes {} -> {} and {} -> {}",
                    forward.input, forward.hidden, backward.input, backward.hidden
                ),
            ));
        }
        Ok(BiRecurrent {
            fwd: Recurrent::new(forward),
            bwd: Recurrent::new(backward).reversed(),
        })
    }

    /// The two halves of the output gradient.
    fn split(&self, grad_output: &Activity) -> Result<(Activity, Activity)> {
        let gy = grad_output.tensor("BiRecurrent")?;
        let hd = self.fwd.cell.hidden;
        if gy.dim() != 3 || gy.sizes()[2] != 2 * hd {
            return Err(shape(
                "BiRecurrent",
                format!("[N, T, {}]", 2 * hd),
                gy.sizes(),
            ));
        }
        Ok((
            gy.narrow(2, 0, hd)?.contiguous().into(),
            gy.narrow(2, hd, hd)?.contiguous().into(),
        ))
    }
}

impl Module for BiRecurrent {
    fn name(&self) -> &str {
        "BiRecurrent"
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        // Initial states are not taken here (a table is an error).
        input.tensor("BiRecurrent")?;
        let a = self.fwd.forward(input)?.into_tensor("BiRecurrent")?;
        let b = self.bwd.forward(input)?.into_tensor("BiRecurrent")?;
        Ok(Tensor::cat(&[&a, &b], 2)?.into())
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let (ga, gb) = self.split(grad_output)?;
        let dx = self
            .fwd
            .update_grad_input(input, &ga)?
            .into_tensor("BiRecurrent")?;
        let dxb = self
            .bwd
            .update_grad_input(input, &gb)?
            .into_tensor("BiRecurrent")?;
        Ok(dx.add(&dxb)?.into())
    }

    fn acc_grad_parameters(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        let (ga, gb) = self.split(grad_output)?;
        self.fwd.acc_grad_parameters(input, &ga, scale)?;
        self.bwd.acc_grad_parameters(input, &gb, scale)
    }

    fn visit_parameters(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
        self.fwd.visit_parameters(f);
        self.bwd.visit_parameters(f);
    }

    fn spec(&self) -> Option<Spec> {
        Some(
            Spec::new("BiRecurrent")
                .child(self.fwd.cell.spec())
                .child(self.bwd.cell.spec()),
        )
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

/// Applies a module to every time step of `[N, T, ...]` input, as one batch
/// of `N T` samples; the output is `[N, T, ...]` again.
#[derive(Clone, Debug)]
pub struct TimeDistributed {
    inner: Box<dyn Module>,
}

impl TimeDistributed {
    /// Wraps `inner`.
    pub fn new(inner: impl Module + 'static) -> TimeDistributed {
        TimeDistributed {
            inner: Box::new(inner),
        }
    }

    /// Wraps a boxed module.
    pub fn boxed(inner: Box<dyn Module>) -> TimeDistributed {
        TimeDistributed { inner }
    }

    fn merged(&self, x: &Tensor<f32>) -> Result<(Tensor<f32>, [usize; 2])> {
        let s = x.sizes();
        if s.len() < 3 {
            return Err(shape("TimeDistributed", "[N, T, ...]", s));
        }
        let mut m = vec![s[0] * s[1]];
        m.extend_from_slice(&s[2..]);
        Ok((x.contiguous().view(&m)?, [s[0], s[1]]))
    }

    fn split(t: &Tensor<f32>, nt: [usize; 2]) -> Result<Tensor<f32>> {
        let mut s = nt.to_vec();
        s.extend_from_slice(&t.sizes()[1..]);
        Ok(t.contiguous().view(&s)?)
    }
}

impl Module for TimeDistributed {
    fn name(&self) -> &str {
        "TimeDistributed"
    }

    fn forward(&mut self, input: &Activity) -> Result<Activity> {
        let (x, nt) = self.merged(input.tensor("TimeDistributed")?)?;
        let y = self
            .inner
            .forward(&x.into())?
            .into_tensor("TimeDistributed")?;
        Ok(TimeDistributed::split(&y, nt)?.into())
    }

    fn update_grad_input(&mut self, input: &Activity, grad_output: &Activity) -> Result<Activity> {
        let (x, nt) = self.merged(input.tensor("TimeDistributed")?)?;
        let (gy, _) = self.merged(grad_output.tensor("TimeDistributed")?)?;
        let gx = self
            .inner
            .update_grad_input(&x.into(), &gy.into())?
            .into_tensor("TimeDistributed")?;
        Ok(TimeDistributed::split(&gx, nt)?.into())
    }

    fn acc_grad_parameters(
        &mut self,
        input: &Activity,
        grad_output: &Activity,
        scale: f32,
    ) -> Result<()> {
        let (x, _) = self.merged(input.tensor("TimeDistributed")?)?;
        let (gy, _) = self.merged(grad_output.tensor("TimeDistributed")?)?;
        self.inner.acc_grad_parameters(&x.into(), &gy.into(), scale)
    }

    fn visit_parameters(&mut self, f: &mut dyn FnMut(&mut Tensor<f32>, &mut Tensor<f32>)) {
        self.inner.visit_parameters(f);
    }

    fn set_training(&mut self, training: bool) {
        self.inner.set_training(training);
    }

    fn is_training(&self) -> bool {
        self.inner.is_training()
    }

    fn reseed(&mut self, seed: u64) {
        self.inner.reseed(seed);
    }

    fn visit_state(&mut self, f: &mut dyn FnMut(crate::StateMut<'_>)) {
        self.inner.visit_state(f);
    }

    fn spec(&self) -> Option<Spec> {
        Some(Spec::new("TimeDistributed").child(self.inner.spec()?))
    }

    fn clone_module(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}
