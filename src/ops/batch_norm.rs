//! Batch norm of [N, C] and [N, C, H, W] (any [N, C, ...]) inputs (shaders/batch_norm.wgsl),
//! training and eval, forward and backward.
//!
//! The input is viewed as [N, C, inner]; statistics are per channel over N and inner (two-pass, from
//! `moments`). Training normalizes with the batch's biased variance and updates the running
//! statistics in place with its unbiased variance, as PyTorch does. The backward is the fused form:
//! one per-channel reduction of dy and dy * xhat, then one elementwise pass. `batch_norm_relu`
//! applies a following relu in the normalize pass. `ghost_batch_norm` normalizes each of G equal
//! slices of the batch with its own statistics (what R data-parallel ranks without `--sync-bn` do).

use super::check_f32;
use super::elementwise::{add_raw, copy_into, scale_into};
use super::moments::{
    check_affine, check_eps, group_grad_sums, group_stats, group_stats_across, run_chunked,
    run_chunked_vec4, sum_across, Bind, ChunkedParams, GroupView, RunningStats, NORM_EPS,
};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::{DType, Tensor};

/// The running statistics of one batch-norm layer. They are plain tensors (not on the tape) that
/// training-mode calls update in place: running = (1 - momentum) * running + momentum * batch.
#[derive(Clone)]
pub struct BatchNormState {
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub momentum: f32,
    pub eps: f32,
}

impl BatchNormState {
    /// PyTorch's starting point: running mean 0, running variance 1, momentum 0.1, eps 1e-5.
    pub fn new(engine: &Engine, channels: usize) -> Result<BatchNormState> {
        Ok(BatchNormState {
            running_mean: Tensor::zeros(engine, &[channels])?,
            running_var: Tensor::full(engine, 1.0, &[channels])?,
            momentum: 0.1,
            eps: NORM_EPS,
        })
    }
}

crate::kernels::kernel_params! {
    /// shaders/batch_norm.wgsl over [N, channels, inner]; `n` and `start` are the chunk of
    /// elements a launch covers (set by `run_chunked`).
    pub struct BatchNormParams {
        n: u32,
        start: u32,
        channels: u32,
        inner: u32,
        /// Values per channel (N * inner), as f32.
        count: f32,
        has_gamma: u32,
        has_beta: u32,
        momentum: f32,
        eps: f32,
        /// normalize: apply max(y, 0) too (`batch_norm_relu`).
        relu: u32,
    }
}

impl ChunkedParams for BatchNormParams {
    fn set_chunk(&mut self, len: u32, start: u32) {
        (self.n, self.start) = (len, start);
    }
}

fn params(
    c: usize,
    inner: usize,
    count: usize,
    gamma: bool,
    beta: bool,
    st: &BatchNormState,
) -> BatchNormParams {
    BatchNormParams {
        n: 0,
        start: 0,
        channels: c as u32,
        inner: inner as u32,
        count: count as f32,
        has_gamma: gamma as u32,
        has_beta: beta as u32,
        momentum: st.momentum,
        eps: st.eps,
        relu: 0,
    }
}

fn check(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    st: &BatchNormState,
) -> Result<GroupView> {
    let op = "batch_norm";
    check_f32(op, &[x, &st.running_mean, &st.running_var])?;
    if x.dims() < 2 || x.numel() == 0 {
        return Err(Error::Shape(format!(
            "{op}: input {:?} must be a non-empty [N, C] or [N, C, H, W]",
            x.shape()
        )));
    }
    let s = x.shape();
    let view = GroupView {
        outer: s[0],
        groups: s[1],
        inner: s[2..].iter().product(),
    };
    check_affine(op, "gamma", gamma, view.groups)?;
    check_affine(op, "beta", beta, view.groups)?;
    check_affine(op, "running mean", Some(&st.running_mean), view.groups)?;
    check_affine(op, "running variance", Some(&st.running_var), view.groups)?;
    check_eps(op, st.eps)?;
    // The [4, C] statistics are bound whole.
    if 4 * view.groups > x.engine().max_binding_words() as usize {
        return Err(Error::Shape(format!(
            "{op}: statistics of {} channels exceed the adapter's binding limit",
            view.groups
        )));
    }
    if !(0.0..=1.0).contains(&st.momentum) {
        return Err(Error::Invalid(format!(
            "{op}: momentum must be in [0, 1], got {}",
            st.momentum
        )));
    }
    Ok(view)
}

/// Batch norm of `x` ([N, C, ...]) with optional affine `gamma`, `beta` ([C]). In training mode it
/// normalizes with the batch statistics and updates `state`'s running statistics in place; in eval
/// mode it normalizes with the running statistics.
pub fn batch_norm(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    state: &BatchNormState,
    training: bool,
) -> Result<Tensor> {
    batch_norm_with(x, gamma, beta, state, training, false)
}

/// relu(batch_norm(...)) with the relu applied in the normalize pass: one pass over the
/// activation fewer. The backward masks dy by the output's sign, then runs batch norm's.
pub fn batch_norm_relu(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    state: &BatchNormState,
    training: bool,
) -> Result<Tensor> {
    batch_norm_with(x, gamma, beta, state, training, true)
}

/// Ghost batch norm in training mode: each of `groups` equal, contiguous slices of the batch
/// (along axis 0) is normalized with its own statistics, as `groups` data-parallel ranks without
/// synchronized batch norm would each normalize their shard. The running statistics move by the
/// mean of the slices' updates (the update is linear, so this is the mean of what each rank
/// would hold). `relu` applies max(y, 0) as `batch_norm_relu` does.
pub fn ghost_batch_norm(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    state: &BatchNormState,
    groups: usize,
    relu: bool,
) -> Result<Tensor> {
    check(x, gamma, beta, state)?;
    let n = x.shape()[0];
    if groups == 0 || !n.is_multiple_of(groups) {
        return Err(Error::Shape(format!(
            "batch_norm: a batch of {n} does not split into {groups} equal groups"
        )));
    }
    if groups == 1 {
        return batch_norm_over(x, gamma, beta, state, true, relu, None);
    }
    if x.engine().batch_norm_ranks().is_some() {
        return Err(Error::Invalid(
            "batch_norm: ghost groups and statistics across ranks (--sync-bn) exclude each other"
                .into(),
        ));
    }
    let slices = super::split0(x, &vec![n / groups; groups])?;
    let mut outs = Vec::with_capacity(groups);
    let mut sums: Option<(Tensor, Tensor)> = None;
    for slice in &slices {
        // Each slice updates its own copy of the running statistics.
        let own = BatchNormState {
            running_mean: state.running_mean.empty_like()?,
            running_var: state.running_var.empty_like()?,
            ..state.clone()
        };
        copy_into(&own.running_mean, &state.running_mean)?;
        copy_into(&own.running_var, &state.running_var)?;
        outs.push(batch_norm_over(slice, gamma, beta, &own, true, relu, None)?);
        sums = Some(match sums {
            None => (own.running_mean, own.running_var),
            Some((m, v)) => (
                add_raw(&m, &own.running_mean)?,
                add_raw(&v, &own.running_var)?,
            ),
        });
    }
    let (m, v) = sums.expect("at least two groups");
    // Summed then scaled, in the order the ranks' average takes (`dist::mean_in_place`).
    let inv = 1.0 / groups as f32;
    scale_into(&state.running_mean, &m, inv)?;
    scale_into(&state.running_var, &v, inv)?;
    let refs: Vec<&Tensor> = outs.iter().collect();
    super::concat0(&refs)
}

fn batch_norm_with(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    state: &BatchNormState,
    training: bool,
    relu: bool,
) -> Result<Tensor> {
    let engine = x.engine();
    let groups = engine.batch_norm_groups();
    if training && groups > 1 {
        return ghost_batch_norm(x, gamma, beta, state, groups, relu);
    }
    // Synchronized batch norm: statistics (and backward sums) over every rank's batch.
    let ranks = if training {
        engine.batch_norm_ranks()
    } else {
        None
    };
    batch_norm_over(x, gamma, beta, state, training, relu, ranks)
}

/// Batch norm over the whole of `x` (and, with `ranks`, every rank's batch).
fn batch_norm_over(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    state: &BatchNormState,
    training: bool,
    relu: bool,
    ranks: Option<std::rc::Rc<dyn crate::engine::Collective>>,
) -> Result<Tensor> {
    let view = check(x, gamma, beta, state)?;
    let engine = x.engine();
    let world_size = ranks.as_ref().map_or(1, |w| w.size());
    let (c, inner, count) = (view.groups, view.inner, view.count() * world_size);
    let words = BatchNormParams {
        relu: relu as u32,
        ..params(c, inner, count, gamma.is_some(), beta.is_some(), state)
    };
    let running = [
        Bind::Whole(&state.running_mean),
        Bind::Whole(&state.running_var),
    ];
    let stats = if training {
        if count < 2 {
            return Err(Error::Shape(format!(
                "batch_norm: training needs more than one value per channel, input {:?}",
                x.shape()
            )));
        }
        match &ranks {
            Some(world) => {
                let stats = group_stats_across(x, view, state.eps, world.as_ref())?;
                let binds = [Bind::Whole(&stats), running[0], running[1]];
                run_chunked("batch_norm", "update_running", c, &words, &binds)?;
                stats
            }
            // The last statistics pass updates the running statistics too.
            None => group_stats(
                x,
                view,
                state.eps,
                Some(RunningStats {
                    mean: &state.running_mean,
                    var: &state.running_var,
                    momentum: state.momentum,
                }),
            )?,
        }
    } else {
        let stats = Tensor::empty(engine, &[4 * c], DType::F32)?;
        let binds = [running[0], running[1], Bind::Whole(&stats)];
        run_chunked("batch_norm", "eval_stats", c, &words, &binds)?;
        stats
    };

    let out = x.empty_like()?;
    // A missing gamma or beta is never read; the statistics stand in for its binding.
    let binds = [
        Bind::Chunk(x),
        Bind::Whole(&stats),
        Bind::Whole(gamma.unwrap_or(&stats)),
        Bind::Whole(beta.unwrap_or(&stats)),
        Bind::Chunk(&out),
    ];
    // Runs of four elements share a channel where inner % 4 == 0: the vec4 forms apply.
    let elementwise = if inner % 4 == 0 {
        run_chunked_vec4
    } else {
        run_chunked
    };
    elementwise("batch_norm", "normalize", x.numel(), &words, &binds)?;

    let mut inputs = vec![x];
    inputs.extend(gamma);
    inputs.extend(beta);
    let (sx, sgamma, sbeta) = (x.clone(), gamma.cloned(), beta.cloned());
    let sout = relu.then(|| out.clone());
    tape::record(&out, &inputs, move |dy| {
        // Through the relu (`sout`) inside the passes below: dy counts where the output is positive.
        let wants_affine = sgamma.iter().chain(&sbeta).any(|t| t.requires_grad());
        // Per channel: sum(dy) is dbeta and sum(dy * xhat) is dgamma.
        let sums = if training || wants_affine {
            Some(group_grad_sums(&sx, dy, &stats, view, None, sout.as_ref())?)
        } else {
            None
        };
        // Across ranks, dx needs the global sums; the affine gradients stay this rank's (the
        // gradient all-reduce sums them).
        let global = match (&ranks, &sums) {
            (Some(world), Some((a, b))) => Some(sum_across(&[a, b], world.as_ref())?),
            _ => None,
        };
        let dx_sums = match &global {
            Some(g) => Some((&g[0], &g[1])),
            None => sums.as_ref().map(|(a, b)| (a, b)),
        };
        let dx = if sx.requires_grad() {
            let dx = sx.empty_like()?;
            let g = sgamma.as_ref().unwrap_or(&stats);
            // Without the relu the mask binding is never read; x stands in for it.
            let mask = Bind::Chunk(sout.as_ref().unwrap_or(&sx));
            let binds: Vec<Bind> = match (dx_sums, training) {
                (Some((sum_dy, sum_dy_xhat)), true) => vec![
                    Bind::Chunk(&sx),
                    Bind::Chunk(dy),
                    mask,
                    Bind::Whole(&stats),
                    Bind::Whole(g),
                    Bind::Whole(sum_dy),
                    Bind::Whole(sum_dy_xhat),
                    Bind::Chunk(&dx),
                ],
                _ => vec![
                    Bind::Chunk(dy),
                    mask,
                    Bind::Whole(&stats),
                    Bind::Whole(g),
                    Bind::Chunk(&dx),
                ],
            };
            let entry = if training {
                "backward_train"
            } else {
                "backward_eval"
            };
            elementwise("batch_norm", entry, sx.numel(), &words, &binds)?;
            Some(dx)
        } else {
            None
        };
        let mut grads = vec![dx];
        if sgamma.is_some() {
            grads.push(sums.as_ref().map(|s| s.1.clone()));
        }
        if sbeta.is_some() {
            grads.push(sums.as_ref().map(|s| s.0.clone()));
        }
        Ok(grads)
    });
    Ok(out)
}
