//! BYOL's loss (shaders/byol_loss.wgsl): the batch mean of 2 - 2 cos(p_i, z_i), forward and backward.
//!
//! Both inputs are normalized inside, so predictions may come normalized or not. The targets `z`
//! come from the target network: no gradient flows into them, even when they require one.

use super::l2_normalize::{col_chunks, for_row_windows, matrix_dims, L2_NORM_EPS};
use super::reduce::sum_raw;
use super::{check_f32, check_same_shape};
use crate::error::Result;
use crate::tape;
use crate::tensor::{DType, Tensor};

/// mean_i (2 - 2 cos(p_i, z_i)) over the rows of predictions `p` and targets `z`, both [N, D];
/// shape [1]. The gradient flows into `p` only.
pub fn byol_loss(p: &Tensor, z: &Tensor) -> Result<Tensor> {
    check_f32("byol_loss", &[p, z])?;
    check_same_shape("byol_loss", p, z)?;
    let (rows, cols) = matrix_dims("byol_loss", p)?;
    let engine = p.engine();
    // Per row (p·p, z·z, p·z): summed per chunk of a long row, then the chunks are added.
    let (chunk_len, chunks) = col_chunks(cols);
    let terms = Tensor::empty(engine, &[rows * chunks * 3], DType::F32)?;
    let args = [(p, cols), (z, cols), (&terms, 3 * chunks)];
    for_row_windows(engine, "byol_loss", rows, &args, |_, n, bufs, b| {
        let params = ByolLossParams {
            chunk_len: chunk_len as u32,
            chunks: chunks as u32,
            ..params(n, cols, rows, [b[0], b[1], b[2], 0])
        };
        let count = (n * chunks) as u64;
        engine.dispatch_1d("byol_loss", "row_terms", &[], &params, bufs, count)
    })?;
    let stats = if chunks == 1 {
        terms
    } else {
        sum_raw(&terms, rows, chunks, 3, 1.0)?
    };
    let loss_rows = Tensor::empty(engine, &[rows], DType::F32)?;
    let args = [(&loss_rows, 1), (&stats, 3)];
    for_row_windows(engine, "byol_loss", rows, &args, |_, n, bufs, b| {
        let params = params(n, cols, rows, [0, 0, b[1], b[0]]);
        engine.dispatch_1d("byol_loss", "row_loss", &[], &params, bufs, n as u64)
    })?;
    let loss = sum_raw(&loss_rows, 1, rows, 1, 1.0 / rows as f32)?;
    let (sp, sz) = (p.clone(), z.clone());
    // Only `p` is an input of the node: the tape never routes a gradient into `z`.
    tape::record(&loss, &[p], move |dy| {
        let engine = sp.engine();
        let dp = sp.empty_like()?;
        let args = [(&sp, cols), (&sz, cols), (&stats, 3), (dy, 0), (&dp, cols)];
        for_row_windows(engine, "byol_loss", rows, &args, |_, n, bufs, b| {
            let params = params(n, cols, rows, [b[0], b[1], b[2], b[4]]);
            engine.dispatch_1d(
                "byol_loss",
                "backward",
                &[],
                &params,
                bufs,
                (n * cols) as u64,
            )
        })?;
        Ok(vec![Some(dp)])
    });
    Ok(loss)
}

/// rows, cols, eps, -2 / N, then the bases of p, z, stats and the row output, then row_terms'
/// chunking (one chunk of all columns here).
fn params(rows: usize, cols: usize, batch: usize, bases: [u32; 4]) -> ByolLossParams {
    let [p_base, z_base, stats_base, out_base] = bases;
    ByolLossParams {
        rows: rows as u32,
        cols: cols as u32,
        eps: L2_NORM_EPS,
        grad_scale: -2.0 / batch as f32,
        p_base,
        z_base,
        stats_base,
        out_base,
        chunk_len: cols as u32,
        chunks: 1,
    }
}

crate::kernels::kernel_params! {
    /// shaders/byol_loss.wgsl.
    pub struct ByolLossParams {
        rows: u32,
        cols: u32,
        eps: f32,
        /// d loss / d cos of one row: -2 / N.
        grad_scale: f32,
        p_base: u32,
        z_base: u32,
        stats_base: u32,
        out_base: u32,
        /// row_terms: columns per chunk, and chunks per row.
        chunk_len: u32,
        chunks: u32,
    }
}
