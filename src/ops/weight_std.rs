//! Weight standardization of conv weights, forward and backward: per output channel, zero mean and
//! unit (biased) variance over the fan-in. It is group norm of the weights seen as
//! [O, fan_in] with one group and no affine, so it runs on `group_norm`'s kernels
//! (shaders/group_norm.wgsl) rather than a copy of them.

use super::check_f32;
use super::group_norm::{grouped_norm, Grouping};
use super::moments::check_eps;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// w_hat = (w - mean) / sqrt(var + eps) per output channel of `w` ([O, I, kh, kw] or [O, fan_in]),
/// statistics over the fan-in.
pub fn weight_std(w: &Tensor, eps: f32) -> Result<Tensor> {
    let op = "weight_std";
    check_f32(op, &[w])?;
    check_eps(op, eps)?;
    if w.dims() < 2 || w.numel() == 0 {
        return Err(Error::Shape(format!(
            "{op}: weights {:?} must be a non-empty [O, I, kh, kw] or [O, fan_in]",
            w.shape()
        )));
    }
    let outputs = w.shape()[0];
    let g = Grouping {
        samples: outputs,
        channels: w.numel() / outputs,
        inner: 1,
        groups: 1,
    };
    grouped_norm(w, g, None, None, eps)
}
