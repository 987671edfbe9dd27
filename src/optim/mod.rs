//! In-place parameter updates (shaders/optim.wgsl): SGD with momentum and LARS as one
//! [`Optimizer`] over a [`Rule`], and the EMA of a target network ([`ema`]), exactly as PyTorch
//! computes them. Not differentiable ops and never on the tape: they overwrite parameters and
//! momentum buffers on the GPU, recorded like any op (no submit, no download).
//!
//! The optimizer works on a `ParamSet` arena and reads its gradients in place from the arena's
//! gradient buffer, where backward wrote them (a gradient from anywhere else is copied in first).
//! One dispatch updates every parameter that has a gradient (LARS: three — per-chunk sums of
//! squares, per-parameter trust ratios, update). Arenas larger than one binding are processed in
//! windows, one dispatch each.

use crate::autograd::Grads;
use crate::engine::{BufSlice, Engine};
use crate::error::{Error, Result};
use crate::params::ParamSet;
use crate::tensor::{DType, Tensor};

pub mod ema;

/// The optimizer shader's parameter struct (see `ops::KERNEL_ABI`).
pub const KERNEL_ABI: &[crate::kernels::KernelAbi] =
    &[crate::kernels::KernelAbi::of::<OptimParams>("optim", true)];
pub use ema::{ema_update, ema_update_tensors};

/// Longest chunk one workgroup updates (`CHUNK` in shaders/optim.wgsl).
const CHUNK: usize = 1024;
// Table entry flags (as in shaders/optim.wgsl).
const FIRST: u32 = 1;
const DECAY: u32 = 2;
const TRUST: u32 = 4;
/// BYOL's LARS trust coefficient.
pub const LARS_ETA: f32 = 0.001;

crate::kernels::kernel_params! {
    /// shaders/optim.wgsl: `count` chunk-table entries from `base` (or `count` elements for the
    /// EMA), the update's scalars, and lars_trust's rounds of 256 chunks.
    pub struct OptimParams {
        count: u32,
        base: u32,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        eta: f32,
        tau: f32,
        rounds: u32,
    }
}

/// The parameter block for `count` entries from `base` with the scalars lr, momentum,
/// weight_decay, eta, tau (lars_trust sets its rounds itself).
pub(crate) fn kernel_params(count: usize, base: usize, scalars: [f32; 5]) -> OptimParams {
    let [lr, momentum, weight_decay, eta, tau] = scalars;
    OptimParams {
        count: count as u32,
        base: base as u32,
        lr,
        momentum,
        weight_decay,
        eta,
        tau,
        rounds: 0,
    }
}

fn check_finite(what: &str, v: f32) -> Result<()> {
    if !v.is_finite() {
        return Err(Error::Invalid(format!("{what} must be finite, got {v}")));
    }
    Ok(())
}

fn check_non_negative(what: &str, v: f32) -> Result<()> {
    check_finite(what, v)?;
    if v < 0.0 {
        return Err(Error::Invalid(format!("{what} must be >= 0, got {v}")));
    }
    Ok(())
}

// ---- SGD and LARS ----------------------------------------------------------------------------

/// How an optimizer turns a gradient into a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// The SGD with momentum of `torch.optim.SGD` (dampening 0, no Nesterov): g = grad + wd * p;
    /// buf = momentum * buf + g (buf = g at a parameter's first step); p = p - lr * buf.
    Sgd,
    /// LARS as in BYOL: for parameters not excluded, d = grad + wd * p scaled by the trust ratio
    /// eta * |p| / |d| (1 when either norm is 0); excluded parameters (by default the 1-D ones:
    /// biases and norm parameters) get neither. Then buf = momentum * buf + d; p = p - lr * buf.
    Lars { eta: f32 },
}

/// One launch: a binding window of the arena and the table entries (chunks) inside it.
struct Window {
    start: usize,
    len: usize,
    base: usize,
    chunks: usize,
}

/// The chunk table for one pattern of which parameters have gradients and momentum.
struct Plan {
    /// Per parameter: 0 no gradient, 1 first step, 2 has momentum.
    key: Vec<u8>,
    table: Tensor,
    windows: Vec<Window>,
    /// LARS: entries (parameter, first chunk, end chunk, 0), their count, and the rounds of 256
    /// chunks that cover the longest.
    norms: Option<(Tensor, usize, usize)>,
}

/// SGD or LARS over one parameter arena. Momentum and gathered gradients are laid out like the
/// arena, and every buffer a step needs is allocated at construction.
pub struct Optimizer {
    params: ParamSet,
    rule: Rule,
    momentum: f32,
    weight_decay: f32,
    exclude: Vec<bool>,
    momentum_buf: Tensor,
    initialized: Vec<bool>,
    grad_flat: Tensor,
    /// LARS: per-chunk sums of squares and per-parameter trust ratios.
    partials: Option<Tensor>,
    trust: Option<Tensor>,
    chunk_len: usize,
    plan: Option<Plan>,
}

impl Optimizer {
    /// SGD with momentum and weight decay (see [`Rule::Sgd`]).
    pub fn sgd(params: &ParamSet, momentum: f32, weight_decay: f32) -> Result<Optimizer> {
        let exclude = vec![false; params.len()];
        Optimizer::new(params, Rule::Sgd, momentum, weight_decay, exclude)
    }

    /// LARS with eta = `LARS_ETA` and the 1-D parameters excluded (see [`Rule::Lars`]).
    pub fn lars(params: &ParamSet, momentum: f32, weight_decay: f32) -> Result<Optimizer> {
        let exclude = params.tensors().iter().map(|t| t.dims() == 1).collect();
        let rule = Rule::Lars { eta: LARS_ETA };
        Optimizer::new(params, rule, momentum, weight_decay, exclude)
    }

    /// LARS's trust coefficient (an error for SGD, which has none).
    pub fn with_eta(mut self, eta: f32) -> Result<Optimizer> {
        if !matches!(self.rule, Rule::Lars { .. }) {
            return Err(Error::Invalid("only LARS has a trust coefficient".into()));
        }
        if !(eta.is_finite() && eta > 0.0) {
            return Err(Error::Invalid(format!("LARS eta must be > 0, got {eta}")));
        }
        self.rule = Rule::Lars { eta };
        Ok(self)
    }

    /// Which parameters get no weight decay and no trust scaling (LARS), one flag per parameter.
    pub fn with_exclude(mut self, exclude: Vec<bool>) -> Result<Optimizer> {
        if !matches!(self.rule, Rule::Lars { .. }) {
            return Err(Error::Invalid("only LARS excludes parameters".into()));
        }
        if exclude.len() != self.params.len() {
            return Err(Error::Invalid(format!(
                "LARS: {} exclusion flags for {} parameters",
                exclude.len(),
                self.params.len()
            )));
        }
        self.exclude = exclude;
        self.plan = None;
        Ok(self)
    }

    pub fn params(&self) -> &ParamSet {
        &self.params
    }

    fn new(
        params: &ParamSet,
        rule: Rule,
        momentum: f32,
        weight_decay: f32,
        exclude: Vec<bool>,
    ) -> Result<Optimizer> {
        check_non_negative("momentum", momentum)?;
        check_non_negative("weight decay", weight_decay)?;
        let engine = params.engine();
        let window = engine.max_binding_words() as usize;
        let align = (engine.gpu().limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let chunk_len = CHUNK.min(window.saturating_sub(align));
        if chunk_len == 0 {
            return Err(Error::Invalid(format!(
                "optimizer: a binding of {window} floats is too small"
            )));
        }
        let flat_shape = params.flat().shape();
        // Every buffer the steps need is allocated here, so a step allocates nothing.
        let (partials, trust) = match rule {
            Rule::Sgd => (None, None),
            Rule::Lars { .. } => {
                let max_chunks: usize = params
                    .tensors()
                    .iter()
                    .map(|t| t.numel().div_ceil(chunk_len))
                    .sum();
                (
                    Some(Tensor::empty(engine, &[2 * max_chunks.max(1)], DType::F32)?),
                    Some(Tensor::empty(engine, &[params.len().max(1)], DType::F32)?),
                )
            }
        };
        Ok(Optimizer {
            params: params.clone(),
            rule,
            momentum,
            weight_decay,
            exclude,
            // Never read before a parameter's first step writes it.
            momentum_buf: Tensor::empty(engine, flat_shape, DType::F32)?,
            initialized: vec![false; params.len()],
            // Backward writes the gradients of an arena's parameters here already (see
            // `ParamSet::grad_flat`); only gradients from elsewhere are copied in.
            grad_flat: match params.grad_flat() {
                Some(g) => g.clone(),
                None => Tensor::empty(engine, flat_shape, DType::F32)?,
            },
            partials,
            trust,
            chunk_len,
            plan: None,
        })
    }

    fn engine(&self) -> &Engine {
        self.params.engine()
    }

    /// Updates every parameter that has a gradient in `grads` (the others are skipped, as PyTorch
    /// skips parameters whose `.grad` is None). `lr` may change every step.
    pub fn step(&mut self, grads: &Grads, lr: f32) -> Result<()> {
        check_finite("learning rate", lr)?;
        let mut key = Vec::with_capacity(self.params.len());
        let mut present = Vec::new();
        for (i, t) in self.params.tensors().iter().enumerate() {
            let Some(g) = grads.get(t) else {
                key.push(0);
                continue;
            };
            if g.shape() != t.shape() || g.dtype() != DType::F32 {
                return Err(Error::Shape(format!(
                    "optimizer: gradient {g:?} does not match parameter {:?} {t:?}",
                    self.params.names()[i]
                )));
            }
            key.push(if self.initialized[i] { 2 } else { 1 });
            present.push((i, g));
        }
        if present.is_empty() {
            return Ok(());
        }
        if self.plan.as_ref().is_none_or(|p| p.key != key) {
            self.plan = Some(self.build_plan(key)?);
        }
        self.gather(&present);
        let eta = match self.rule {
            Rule::Lars { eta } => eta,
            Rule::Sgd => 0.0,
        };
        self.record_update([lr, self.momentum, self.weight_decay, eta, 0.0])?;
        for (i, _) in present {
            self.initialized[i] = true;
        }
        Ok(())
    }

    /// Records the update of every parameter in the current plan, one launch per window.
    fn record_update(&self, scalars: [f32; 5]) -> Result<()> {
        let plan = self.plan.as_ref().expect("plan built before an update");
        let engine = self.engine();
        let (flat, grad, buf) = (self.params.flat(), &self.grad_flat, &self.momentum_buf);
        // Bindings in ascending order: table, grad, param (or param_in), [buf], then `last`.
        let per_window = |entry: &str, with_buf: bool, last: Option<BufSlice<'_>>| {
            for w in &plan.windows {
                let mut bufs = vec![
                    plan.table.slice(),
                    grad.slice_elems(w.start, w.len),
                    flat.slice_elems(w.start, w.len),
                ];
                if with_buf {
                    bufs.push(buf.slice_elems(w.start, w.len));
                }
                bufs.extend(last);
                let p = kernel_params(w.chunks, w.base, scalars);
                engine.dispatch_1d("optim", entry, &[], &p, &bufs, w.chunks as u64 * 256)?;
            }
            Ok(())
        };
        let (Some(partials), Some(trust)) = (&self.partials, &self.trust) else {
            return per_window("sgd_update", true, None);
        };
        per_window("norm_partials", false, Some(partials.slice()))?;
        if let Some((norm_table, count, rounds)) = &plan.norms {
            let p = OptimParams {
                rounds: *rounds as u32,
                ..kernel_params(*count, 0, scalars)
            };
            engine.dispatch_1d(
                "optim",
                "lars_trust",
                &[],
                &p,
                &[norm_table.slice(), partials.slice(), trust.slice()],
                *count as u64 * 256,
            )?;
        }
        per_window("lars_update", true, Some(trust.slice()))
    }

    /// Records copies of the gradients that are not already in place into `grad_flat` at their
    /// parameters' offsets (none in training: backward writes into the arena).
    fn gather(&self, present: &[(usize, &Tensor)]) {
        let dst = &self.grad_flat;
        for &(i, g) in present {
            let at = dst.elem_offset() + self.params.offsets()[i];
            if g.shares_storage(dst) && g.elem_offset() == at {
                continue;
            }
            self.engine().copy(
                g.buffer(),
                g.elem_offset() as u64 * 4,
                dst.buffer(),
                at as u64 * 4,
                g.numel() as u64 * 4,
            );
        }
    }

    /// Splits the parameters that have gradients into chunks, grouped into binding windows.
    fn build_plan(&self, key: Vec<u8>) -> Result<Plan> {
        let engine = self.engine();
        let window = engine.max_binding_words() as usize;
        let align = (engine.gpu().limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let lars = matches!(self.rule, Rule::Lars { .. });
        let mut entries: Vec<[u32; 4]> = Vec::new();
        let mut norms: Vec<[u32; 4]> = Vec::new();
        let mut windows: Vec<Window> = Vec::new();
        for (i, t) in self.params.tensors().iter().enumerate() {
            if key[i] == 0 {
                continue;
            }
            let scaled = lars && !self.exclude[i];
            let mut flags = if key[i] == 1 { FIRST } else { 0 };
            if !lars || scaled {
                flags |= DECAY;
            }
            if scaled {
                flags |= TRUST;
            }
            let first_chunk = entries.len();
            let (offset, n) = (self.params.offsets()[i], t.numel());
            let mut done = 0;
            while done < n {
                let len = self.chunk_len.min(n - done);
                let start = offset + done;
                let fits = windows
                    .last()
                    .is_some_and(|w| start + len <= w.start + window);
                if !fits {
                    windows.push(Window {
                        start: start / align * align,
                        len: 0,
                        base: entries.len(),
                        chunks: 0,
                    });
                }
                let w = windows.last_mut().expect("window pushed above");
                entries.push([i as u32, (start - w.start) as u32, len as u32, flags]);
                w.chunks += 1;
                w.len = start + len - w.start;
                done += len;
            }
            if scaled {
                norms.push([i as u32, first_chunk as u32, entries.len() as u32, 0]);
            }
        }
        let upload = |rows: &[[u32; 4]]| {
            let words: Vec<u32> = rows.iter().flatten().copied().collect();
            Tensor::from_u32(engine, &words, &[words.len()])
        };
        let norms = if norms.is_empty() {
            None
        } else {
            let longest = norms.iter().map(|e| e[2] - e[1]).max().unwrap_or(0);
            Some((upload(&norms)?, norms.len(), longest.div_ceil(256) as usize))
        };
        Ok(Plan {
            key,
            table: upload(&entries)?,
            windows,
            norms,
        })
    }

    /// How many parameters it updates.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Each parameter's momentum buffer, `None` before its first step (like PyTorch's state).
    pub fn momentum_buffers(&self) -> Result<Vec<Option<Tensor>>> {
        let offsets = self.params.offsets();
        self.params
            .tensors()
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if !self.initialized[i] {
                    return Ok(None);
                }
                Ok(Some(self.momentum_buf.sub_tensor(offsets[i], t.shape())?))
            })
            .collect()
    }

    /// Restores (or with `None` clears) a parameter's momentum buffer, e.g. from a checkpoint.
    pub fn set_momentum_buffer(&mut self, index: usize, values: Option<&[f32]>) -> Result<()> {
        let Some(t) = self.params.tensors().get(index) else {
            return Err(Error::Invalid(format!(
                "no parameter {index} (there are {})",
                self.params.len()
            )));
        };
        if let Some(values) = values {
            let view = self
                .momentum_buf
                .sub_tensor(self.params.offsets()[index], t.shape())?;
            view.write(values)?;
        }
        self.initialized[index] = values.is_some();
        Ok(())
    }
}
