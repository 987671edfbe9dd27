//! InfoNCE (SimCLR/MoCo-style contrastive loss) and the MoCo queue of negatives
//! (shaders/info_nce.wgsl), forward and backward. Gradients flow into the queries only.
//!
//! Without a queue the logits are q̂·k̂ᵀ / T ([N, N], positives on the diagonal) and the loss is
//! cross entropy with targets 0..N. With a queue [Q, D] of (already normalized) keys, row i's logits
//! are [q̂_i·k̂_i, q̂_i·queue_j for all j] / T with target 0: one matmul q̂·queueᵀ gives the negatives
//! and the positives stay a separate column, so neither the queue nor the logits are copied.
//!
//! With a queue, the gradient per unit upstream gradient is computed in the forward, while the
//! queue still holds the keys the loss saw: MoCo pushes this step's keys (`queue_push`) before
//! calling backward, and the backward must not read the overwritten rows.

use super::concat::copy_elems;
use super::cross_entropy;
use super::l2_normalize::{for_row_windows, l2_normalize, matrix_dims, normalize_raw, row_dot_raw};
use super::matmul::{gemm_into, Gemm};
use super::reduce::sum_raw;
use super::{check_f32, check_same_shape};
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::{DType, Tensor};

/// InfoNCE of queries `q` against keys `k` (both [N, D], normalized inside) at `temperature`,
/// batch mean, shape [1]. With `queue` ([Q, D] normalized keys) the negatives are the queue's rows
/// (MoCo); without it they are the other rows of `k` (in-batch). Gradients flow into `q` only.
pub fn info_nce(
    q: &Tensor,
    k: &Tensor,
    temperature: f32,
    queue: Option<&Tensor>,
) -> Result<Tensor> {
    check_f32("info_nce", &[q, k])?;
    check_same_shape("info_nce", q, k)?;
    let (_, d) = matrix_dims("info_nce", q)?;
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::Invalid(format!(
            "info_nce: temperature must be positive, got {temperature}"
        )));
    }
    if let Some(queue) = queue {
        check_f32("info_nce queue", &[queue])?;
        let (_, qd) = matrix_dims("info_nce queue", queue)?;
        if qd != d {
            return Err(Error::Shape(format!(
                "info_nce: queue {:?} must have the {d} features of q {:?}",
                queue.shape(),
                q.shape()
            )));
        }
    }
    let q_hat = l2_normalize(q)?;
    let (k_hat, _) = normalize_raw(k)?;
    let scale = 1.0 / temperature;
    match queue {
        None => in_batch(&q_hat, k_hat, scale),
        Some(queue) => against_queue(&q_hat, &k_hat, queue, scale),
    }
}

/// Cross entropy of q̂·k̂ᵀ·scale with the diagonal as targets.
fn in_batch(q_hat: &Tensor, k_hat: Tensor, scale: f32) -> Result<Tensor> {
    let (n, d) = matrix_dims("info_nce", q_hat)?;
    let engine = q_hat.engine();
    let logits = Tensor::empty(engine, &[n, n], DType::F32)?;
    let g = gemm(n, n, d, false, true);
    gemm_into(engine, g, q_hat, &k_hat, &logits, 1.0, 0.0)?;
    let (loss, stats) = cross_entropy::forward_raw(&logits, None, scale)?;
    tape::record(&loss, &[q_hat], move |dy| {
        let dlogits = cross_entropy::backward_raw(&logits, None, &stats, dy, scale)?;
        let engine = dlogits.engine();
        let dq = Tensor::empty(engine, &[n, d], DType::F32)?;
        gemm_into(
            engine,
            gemm(n, d, n, false, false),
            &dlogits,
            &k_hat,
            &dq,
            1.0,
            0.0,
        )?;
        Ok(vec![Some(dq)])
    });
    Ok(loss)
}

/// Cross entropy of scale·[q̂_i·k̂_i | q̂_i·queueᵀ] with target 0 in every row.
fn against_queue(q_hat: &Tensor, k_hat: &Tensor, queue: &Tensor, scale: f32) -> Result<Tensor> {
    let (n, d) = matrix_dims("info_nce", q_hat)?;
    let negs = queue.shape()[0];
    let engine = q_hat.engine();
    let pos = row_dot_raw(q_hat, k_hat)?;
    let neg = Tensor::empty(engine, &[n, negs], DType::F32)?;
    gemm_into(
        engine,
        gemm(n, negs, d, false, true),
        q_hat,
        queue,
        &neg,
        1.0,
        0.0,
    )?;
    let (part, chunks) = cross_entropy::lse_partials(&neg, scale)?;
    let stats = Tensor::empty(engine, &[n, 2], DType::F32)?;
    let loss_rows = Tensor::empty(engine, &[n], DType::F32)?;
    let args = [(&pos, 1), (&stats, 2), (&loss_rows, 1), (&part, 2 * chunks)];
    for_row_windows(engine, "info_nce", n, &args, |_, rows, bufs, b| {
        let p = InfoNceParams {
            chunks: chunks as u32,
            part_base: b[3],
            ..params(rows, negs, scale, n, d, [b[0], 0, b[1], b[2]])
        };
        engine.dispatch_1d("info_nce", "pair_forward", &[], &p, bufs, rows as u64)
    })?;
    let loss = sum_raw(&loss_rows, 1, n, 1, 1.0 / n as f32)?;
    if !(engine.grad_enabled() && q_hat.requires_grad()) {
        return Ok(loss);
    }
    // d loss / d q̂ for an upstream gradient of 1, while the queue still holds these keys.
    let dpos = Tensor::empty(engine, &[n], DType::F32)?;
    let dneg = Tensor::empty(engine, &[n, negs], DType::F32)?;
    let args = [
        (&pos, 1),
        (&neg, negs),
        (&stats, 2),
        (&dpos, 1),
        (&dneg, negs),
    ];
    for_row_windows(engine, "info_nce", n, &args, |_, rows, bufs, b| {
        let p = params(rows, negs, scale, n, d, [b[0], b[1], b[2], 0]);
        let count = (rows * (negs + 1)) as u64;
        engine.dispatch_1d("info_nce", "pair_grad", &[], &p, bufs, count)
    })?;
    let dq_unit = Tensor::empty(engine, &[n, d], DType::F32)?;
    gemm_into(
        engine,
        gemm(n, d, negs, false, false),
        &dneg,
        queue,
        &dq_unit,
        1.0,
        0.0,
    )?;
    let args = [(&dpos, 1), (k_hat, d), (&dq_unit, d)];
    for_row_windows(engine, "info_nce", n, &args, |_, rows, bufs, b| {
        let p = params(rows, negs, scale, n, d, [b[0], b[1], 0, b[2]]);
        let count = (rows * d) as u64;
        engine.dispatch_1d("info_nce", "add_row_scaled", &[], &p, bufs, count)
    })?;
    tape::record(&loss, &[q_hat], move |dy| {
        let engine = dq_unit.engine();
        let dq = dq_unit.empty_like()?;
        let args = [(dy, 0), (&dq_unit, d), (&dq, d)];
        for_row_windows(engine, "info_nce", n, &args, |_, rows, bufs, b| {
            let p = params(rows, negs, scale, n, d, [0, b[1], 0, b[2]]);
            let count = (rows * d) as u64;
            engine.dispatch_1d("info_nce", "scale_by_dy", &[], &p, bufs, count)
        })?;
        Ok(vec![Some(dq)])
    });
    Ok(loss)
}

/// A single (unbatched) product of m x k by k x n.
fn gemm(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> Gemm {
    Gemm {
        batch: 1,
        m,
        n,
        k,
        trans_a,
        trans_b,
    }
}

/// rows, negatives, scale, scale / N, then the bases of pos, neg, stats and output, then cols, then
/// pair_forward's chunks and partials base (unused here: it fills them in).
fn params(
    rows: usize,
    negs: usize,
    scale: f32,
    batch: usize,
    cols: usize,
    bases: [u32; 4],
) -> InfoNceParams {
    let [pos_base, neg_base, stats_base, out_base] = bases;
    InfoNceParams {
        rows: rows as u32,
        negs: negs as u32,
        scale,
        grad_scale: scale / batch as f32,
        pos_base,
        neg_base,
        stats_base,
        out_base,
        cols: cols as u32,
        chunks: 1,
        part_base: 0,
    }
}

crate::kernels::kernel_params! {
    /// shaders/info_nce.wgsl.
    pub struct InfoNceParams {
        rows: u32,
        negs: u32,
        scale: f32,
        grad_scale: f32,
        pos_base: u32,
        neg_base: u32,
        stats_base: u32,
        out_base: u32,
        cols: u32,
        /// Chunks of the negatives per row, and the base of their partial statistics.
        chunks: u32,
        part_base: u32,
    }
}

/// Writes the rows of `keys` ([n, D]) into the ring buffer `queue` ([Q, D]) starting at row `pos`,
/// wrapping around its end, on the GPU; returns the next write position. Keys are stored as given
/// (push normalized keys). Commands recorded earlier still read the old rows.
pub fn queue_push(queue: &Tensor, keys: &Tensor, pos: usize) -> Result<usize> {
    check_f32("queue_push", &[queue, keys])?;
    let (slots, d) = matrix_dims("queue_push queue", queue)?;
    let (n, kd) = matrix_dims("queue_push keys", keys)?;
    if kd != d || n > slots {
        return Err(Error::Shape(format!(
            "queue_push: keys {:?} must be at most {slots} rows of {d} features for queue {:?}",
            keys.shape(),
            queue.shape()
        )));
    }
    if pos >= slots {
        return Err(Error::Invalid(format!(
            "queue_push: position {pos} is outside a queue of {slots} rows"
        )));
    }
    let first = n.min(slots - pos);
    copy_elems(keys, 0, queue, pos * d, first * d)?;
    if first < n {
        copy_elems(keys, first * d, queue, 0, (n - first) * d)?;
    }
    Ok((pos + n) % slots)
}
