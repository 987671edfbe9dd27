//! Per-channel bias add over axis 1 (shaders/bias.wgsl); its bias gradient is a reduction.

use super::reduce::sum_raw;
use super::{check_f32, chunks};
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::Tensor;

crate::kernels::kernel_params! {
    /// shaders/bias.wgsl: `n` elements of [outer, channels, inner] from element `x_base` on.
    pub struct BiasParams {
        n: u32,
        channels: u32,
        inner: u32,
        x_base: u32,
    }
}

/// y[n, c, ...] = x[n, c, ...] + b[c], for x of shape [N, C] or [N, C, H, W, ...].
pub fn bias_add(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_f32("bias_add", &[x, b])?;
    if x.dims() < 2 || b.dims() != 1 || b.shape()[0] != x.shape()[1] {
        return Err(Error::Shape(format!(
            "bias_add: bias {:?} must be [C] for input {:?} of shape [N, C, ...]",
            b.shape(),
            x.shape()
        )));
    }
    let engine = x.engine();
    let (outer, channels) = (x.shape()[0], x.shape()[1]);
    let inner: usize = x.shape()[2..].iter().product();
    let out = x.empty_like()?;
    let max = engine.max_binding_words() as usize;
    for (start, len) in chunks(x.numel(), max) {
        let params = BiasParams {
            n: len as u32,
            channels: channels as u32,
            inner: inner as u32,
            x_base: start as u32,
        };
        let bufs = [
            x.slice_elems(start, len),
            b.slice(),
            out.slice_elems(start, len),
        ];
        engine.dispatch_1d("bias", "bias_add", &[], &params, &bufs, len as u64)?;
    }
    let needs_db = b.requires_grad();
    tape::record(&out, &[x, b], move |dy| {
        let db = if needs_db {
            Some(channel_sum(dy, outer, channels, inner)?)
        } else {
            None
        };
        Ok(vec![Some(dy.clone()), db])
    });
    Ok(out)
}

/// Sum of a [outer, channels, inner] tensor over outer and inner: the gradient of a per-channel
/// bias, shape [channels].
pub(crate) fn channel_sum(
    dy: &Tensor,
    outer: usize,
    channels: usize,
    inner: usize,
) -> Result<Tensor> {
    let per_channel = if inner > 1 {
        sum_raw(dy, outer * channels, inner, 1, 1.0)?
    } else {
        dy.clone()
    };
    sum_raw(&per_channel, 1, outer, channels, 1.0)?.view(&[channels])
}
