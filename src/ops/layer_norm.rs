//! Layer norm over the last (feature) axis, forward and backward. It is group norm with one group
//! and one position per channel, so it runs on `group_norm`'s kernels (shaders/group_norm.wgsl)
//! rather than a copy of them.

use super::check_f32;
use super::group_norm::{grouped_norm, Grouping};
use super::moments::{check_affine, check_eps};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Layer norm of `x` ([N, D], or any [..., D]) over its last axis, with optional affine `gamma`,
/// `beta` ([D]): y = (x - mean) / sqrt(var + eps) * gamma + beta, biased variance.
pub fn layer_norm(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    let op = "layer_norm";
    check_f32(op, &[x])?;
    check_eps(op, eps)?;
    let Some(&features) = x.shape().last().filter(|_| x.numel() > 0) else {
        return Err(Error::Shape(format!(
            "{op}: input {:?} must be a non-empty [N, D]",
            x.shape()
        )));
    };
    check_affine(op, "gamma", gamma, features)?;
    check_affine(op, "beta", beta, features)?;
    let g = Grouping {
        samples: x.numel() / features,
        channels: features,
        inner: 1,
        groups: 1,
    };
    grouped_norm(x, g, gamma, beta, eps)
}
