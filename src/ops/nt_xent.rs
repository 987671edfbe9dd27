//! NT-Xent, SimCLR's contrastive loss (shaders/nt_xent.wgsl for the self mask), forward and
//! backward, composed from recorded ops so both views get gradients.
//!
//! The 2N normalized rows Z = [ẑ1; ẑ2] are compared with the same rows halves swapped,
//! W = [ẑ2; ẑ1]: logits Z·Wᵀ / T then hold every row's positive on the diagonal (the diagonal cross
//! entropy kernel needs no targets), and its similarity with itself in column (i + N) mod 2N, which
//! is masked out of the softmax.

use super::concat::concat0;
use super::cross_entropy;
use super::l2_normalize::{for_row_windows, l2_normalize, matrix_dims};
use super::matmul::matmul_nt;
use super::{check_f32, check_same_shape};
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::Tensor;

/// NT-Xent of two views `z1`, `z2` (both [N, D], normalized inside) at `temperature`: the mean over
/// the 2N rows of the cross entropy of row i against the other 2N - 1 rows, with the same sample's
/// other view as the positive. Shape [1]; gradients flow into both inputs.
pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f32) -> Result<Tensor> {
    check_f32("nt_xent", &[z1, z2])?;
    check_same_shape("nt_xent", z1, z2)?;
    let (n, _) = matrix_dims("nt_xent", z1)?;
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::Invalid(format!(
            "nt_xent: temperature must be positive, got {temperature}"
        )));
    }
    let (h1, h2) = (l2_normalize(z1)?, l2_normalize(z2)?);
    let logits = matmul_nt(&concat0(&[&h1, &h2])?, &concat0(&[&h2, &h1])?)?;
    // Cosines are >= -1, so once scaled by 1/T this sits over 1000 below every real logit: its exp
    // is exactly 0 in f32. Writing into the matmul's output is safe: its backward never reads it.
    let masked = -(2.0 + 1000.0 * temperature);
    mask_self(&logits, n, masked)?;
    let scale = 1.0 / temperature;
    let (loss, stats) = cross_entropy::forward_raw(&logits, None, scale)?;
    let saved = logits.clone();
    tape::record(&loss, &[&logits], move |dy| {
        // The masked entries' softmax is 0 and they are never targets, so their gradient is 0.
        let dlogits = cross_entropy::backward_raw(&saved, None, &stats, dy, scale)?;
        Ok(vec![Some(dlogits)])
    });
    Ok(loss)
}

crate::kernels::kernel_params! {
    /// shaders/nt_xent.wgsl: `rows` rows of [2n, 2n] logits from row `row0`, `half` = n.
    pub struct MaskParams {
        rows: u32,
        cols: u32,
        half: u32,
        row0: u32,
        base: u32,
        masked: f32,
    }
}

/// Overwrites each row's self-similarity, column (row + n) mod 2n of the [2n, 2n] logits.
fn mask_self(logits: &Tensor, n: usize, masked: f32) -> Result<()> {
    let (rows, cols) = matrix_dims("nt_xent", logits)?;
    let engine = logits.engine();
    let args = [(logits, cols)];
    for_row_windows(engine, "nt_xent", rows, &args, |r0, count, bufs, b| {
        let p = MaskParams {
            rows: count as u32,
            cols: cols as u32,
            half: n as u32,
            row0: r0 as u32,
            base: b[0],
            masked,
        };
        engine.dispatch_1d("nt_xent", "mask_self", &[], &p, bufs, count as u64)
    })
}
