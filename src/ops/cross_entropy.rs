//! Softmax cross entropy over [N, K] logits with integer targets (shaders/cross_entropy.wgsl),
//! batch mean, forward and backward. Max-subtracted log-sum-exp keeps it stable for large logits;
//! it is taken per chunk of `COLS_PER_CHUNK` columns first, so long rows never make one invocation
//! loop past software Vulkan's `SOFTWARE_LOOP_LIMIT`.
//!
//! Targets live on the GPU, where an out-of-range label cannot raise an error: the kernel clamps it
//! (never reading out of bounds), and `check_targets` / `upload_targets` reject such labels on the
//! CPU before they are uploaded.

use super::check_f32;
use super::l2_normalize::{col_chunks, for_row_windows, matrix_dims};
use super::reduce::sum_raw;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::{DType, Tensor};

/// Errors unless every label is a class index below `classes`.
pub fn check_targets(targets: &[u32], classes: usize) -> Result<()> {
    match targets.iter().position(|&t| t as usize >= classes) {
        Some(i) => Err(Error::Invalid(format!(
            "cross_entropy: target {i} is class {} but there are only {classes} classes",
            targets[i]
        ))),
        None => Ok(()),
    }
}

/// Validates labels against `classes` and uploads them as a u32 tensor of shape [N].
pub fn upload_targets(engine: &Engine, targets: &[u32], classes: usize) -> Result<Tensor> {
    check_targets(targets, classes)?;
    Tensor::from_u32(engine, targets, &[targets.len()])
}

/// mean_i (logsumexp(logits_i) - logits_i[targets_i]) for logits [N, K] and u32 targets [N];
/// shape [1]. The gradient flows into the logits.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check_f32("cross_entropy", &[logits])?;
    let (rows, _) = matrix_dims("cross_entropy", logits)?;
    if targets.dtype() != DType::U32 {
        return Err(Error::Invalid(format!(
            "cross_entropy: targets {targets:?} must be u32 class indices"
        )));
    }
    if targets.shape() != [rows] {
        return Err(Error::Shape(format!(
            "cross_entropy: targets {:?} must be [{rows}] for logits {:?}",
            targets.shape(),
            logits.shape()
        )));
    }
    let (loss, stats) = forward_raw(logits, Some(targets), 1.0)?;
    let (sx, st) = (logits.clone(), targets.clone());
    tape::record(&loss, &[logits], move |dy| {
        Ok(vec![Some(backward_raw(&sx, Some(&st), &stats, dy, 1.0)?)])
    });
    Ok(loss)
}

/// The mean loss of `scale * logits` ([N, K]) against `targets`, or against the diagonal (target
/// of row i is i) when `targets` is `None`; returns it with the per-row (max, log-sum) statistics
/// the backward needs. Not recorded.
pub(crate) fn forward_raw(
    logits: &Tensor,
    targets: Option<&Tensor>,
    scale: f32,
) -> Result<(Tensor, Tensor)> {
    let (rows, cols) = matrix_dims("cross_entropy", logits)?;
    let engine = logits.engine();
    let (part, chunks) = lse_partials(logits, scale)?;
    let stats = Tensor::empty(engine, &[rows, 2], DType::F32)?;
    let loss_rows = Tensor::empty(engine, &[rows], DType::F32)?;
    let mut args = vec![(logits, cols)];
    args.extend(targets.map(|t| (t, 1)));
    args.extend([(&stats, 2), (&loss_rows, 1), (&part, 2 * chunks)]);
    let entry = if targets.is_some() {
        "forward"
    } else {
        "forward_diag"
    };
    for_row_windows(engine, "cross_entropy", rows, &args, |r0, n, bufs, b| {
        // Bases of (logits, targets, stats, loss rows, partials); no targets in the diagonal case.
        let (tb, rest) = if targets.is_some() {
            (b[1], &b[2..])
        } else {
            (0, &b[1..])
        };
        let p = CrossEntropyParams {
            chunk_len: 0,
            chunks: chunks as u32,
            part_base: rest[2],
            ..params(n, cols, scale, rows, r0, [b[0], tb, rest[0], rest[1]])
        };
        engine.dispatch_1d("cross_entropy", entry, &[], &p, bufs, n as u64)
    })?;
    let loss = sum_raw(&loss_rows, 1, rows, 1, 1.0 / rows as f32)?;
    Ok((loss, stats))
}

/// Per row of `scale * logits` ([N, K]) and chunk of its columns, the chunk's maximum m_c and
/// sum exp(l - m_c): a [N, 2 * chunks] tensor, and the chunks per row. The row log-sum-exp is
/// m + log sum_c s_c exp(m_c - m), m the largest m_c. Not recorded.
pub(crate) fn lse_partials(logits: &Tensor, scale: f32) -> Result<(Tensor, usize)> {
    let (rows, cols) = matrix_dims("cross_entropy", logits)?;
    let engine = logits.engine();
    let (chunk_len, chunks) = col_chunks(cols);
    let part = Tensor::empty(engine, &[rows, 2 * chunks], DType::F32)?;
    let args = [(logits, cols), (&part, 2 * chunks)];
    for_row_windows(engine, "cross_entropy", rows, &args, |r0, n, bufs, b| {
        let p = CrossEntropyParams {
            chunk_len: chunk_len as u32,
            chunks: chunks as u32,
            part_base: b[1],
            ..params(n, cols, scale, rows, r0, [b[0], 0, 0, 0])
        };
        let count = (n * chunks) as u64;
        engine.dispatch_1d("cross_entropy", "lse_partial", &[], &p, bufs, count)
    })?;
    Ok((part, chunks))
}

/// d loss / d logits = (softmax(scale * logits) - onehot) * scale * dy / N. Not recorded.
pub(crate) fn backward_raw(
    logits: &Tensor,
    targets: Option<&Tensor>,
    stats: &Tensor,
    dy: &Tensor,
    scale: f32,
) -> Result<Tensor> {
    let (rows, cols) = matrix_dims("cross_entropy", logits)?;
    let engine = logits.engine();
    let dx = logits.empty_like()?;
    let mut args = vec![(logits, cols)];
    args.extend(targets.map(|t| (t, 1)));
    args.extend([(stats, 2), (dy, 0), (&dx, cols)]);
    let entry = if targets.is_some() {
        "backward"
    } else {
        "backward_diag"
    };
    for_row_windows(engine, "cross_entropy", rows, &args, |r0, n, bufs, b| {
        // Bases of (logits, targets, stats, dy, dx); targets absent in the diagonal case.
        let (tb, rest) = if targets.is_some() {
            (b[1], &b[2..])
        } else {
            (0, &b[1..])
        };
        let p = params(n, cols, scale, rows, r0, [b[0], tb, rest[0], rest[2]]);
        engine.dispatch_1d("cross_entropy", entry, &[], &p, bufs, (n * cols) as u64)
    })?;
    Ok(dx)
}

/// rows, cols, scale, scale / N, first row, then the bases of logits, targets, stats and output,
/// then the chunking of the log-sum-exp (unused here: the callers that need it fill it in).
fn params(
    rows: usize,
    cols: usize,
    scale: f32,
    batch: usize,
    row0: usize,
    bases: [u32; 4],
) -> CrossEntropyParams {
    let [x_base, t_base, stats_base, out_base] = bases;
    CrossEntropyParams {
        rows: rows as u32,
        cols: cols as u32,
        scale,
        grad_scale: scale / batch as f32,
        row0: row0 as u32,
        x_base,
        t_base,
        stats_base,
        out_base,
        chunk_len: 0,
        chunks: 1,
        part_base: 0,
    }
}

crate::kernels::kernel_params! {
    /// shaders/cross_entropy.wgsl.
    pub struct CrossEntropyParams {
        rows: u32,
        cols: u32,
        scale: f32,
        grad_scale: f32,
        /// The window's first row in the whole batch (for the diagonal targets).
        row0: u32,
        x_base: u32,
        t_base: u32,
        stats_base: u32,
        out_base: u32,
        /// lse_partial: columns per chunk and chunks per row; forward: chunks and partials' base.
        chunk_len: u32,
        chunks: u32,
        part_base: u32,
    }
}
