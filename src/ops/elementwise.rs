//! Elementwise add, sub, mul, scale, relu and the fused add + relu of a residual block's end
//! (shaders/elementwise.wgsl), forward and backward.
//! Tensors larger than one binding are processed in aligned chunks.

use super::{check_f32, check_same_shape, chunks};
use crate::error::Result;
use crate::kernels::ElementwiseParams;
use crate::tape;
use crate::tensor::Tensor;

/// Runs `entry` over the chunks of `out`, binding the same range of each input: its vec4 form
/// (`entry` + "4", four elements per invocation) where the chunk's bindings allow it.
fn launch(entry: &str, inputs: &[&Tensor], out: &Tensor, scalar: u32) -> Result<()> {
    let engine = out.engine();
    let max = engine.max_binding_words() as usize;
    for (start, len) in chunks(out.numel(), max) {
        let mut bufs: Vec<_> = inputs.iter().map(|t| t.slice_elems(start, len)).collect();
        bufs.push(out.slice_elems(start, len));
        let vec4 = format!("{entry}4");
        let (entry, n) = if engine.vec4_fits(&bufs) {
            (vec4.as_str(), len / 4)
        } else {
            (entry, len)
        };
        let params = ElementwiseParams {
            n: n as u32,
            a: scalar,
        };
        engine.dispatch_1d("elementwise", entry, &[], &params, &bufs, n as u64)?;
    }
    Ok(())
}

fn binary_raw(op: &str, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_f32(op, &[a, b])?;
    check_same_shape(op, a, b)?;
    let out = a.empty_like()?;
    launch(op, &[a, b], &out, 0)?;
    Ok(out)
}

pub(crate) fn scale_raw(x: &Tensor, s: f32) -> Result<Tensor> {
    check_f32("scale", &[x])?;
    let out = x.empty_like()?;
    launch("scale", &[x], &out, s.to_bits())?;
    Ok(out)
}

/// out <- a + b into an existing tensor (not recorded): backward sums a parameter's gradient
/// contributions straight into its gradient slot.
pub(crate) fn add_into(out: &Tensor, a: &Tensor, b: &Tensor) -> Result<()> {
    check_f32("add_into", &[out, a, b])?;
    check_same_shape("add_into", a, b)?;
    check_same_shape("add_into", out, a)?;
    launch("add", &[a, b], out, 0)
}

/// out <- x into an existing tensor (not recorded), as a dispatch (a buffer copy would end the
/// open compute pass). Multiplying by 1 is exact in f32.
pub(crate) fn copy_into(out: &Tensor, x: &Tensor) -> Result<()> {
    scale_into(out, x, 1.0)
}

/// out <- s * x into an existing tensor (not recorded).
pub(crate) fn scale_into(out: &Tensor, x: &Tensor, s: f32) -> Result<()> {
    check_f32("scale_into", &[out, x])?;
    check_same_shape("scale_into", out, x)?;
    launch("scale", &[x], out, s.to_bits())
}

/// a + b (not recorded).
pub(crate) fn add_raw(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary_raw("add", a, b)
}

/// a + b (same shape).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = binary_raw("add", a, b)?;
    tape::record(&out, &[a, b], |dy| {
        Ok(vec![Some(dy.clone()), Some(dy.clone())])
    });
    Ok(out)
}

/// a - b (same shape).
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = binary_raw("sub", a, b)?;
    tape::record(&out, &[a, b], |dy| {
        Ok(vec![Some(dy.clone()), Some(scale_raw(dy, -1.0)?)])
    });
    Ok(out)
}

/// a * b elementwise (same shape).
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = binary_raw("mul", a, b)?;
    let (sa, sb) = (a.clone(), b.clone());
    tape::record(&out, &[a, b], move |dy| {
        let da = if sa.requires_grad() {
            Some(binary_raw("mul", dy, &sb)?)
        } else {
            None
        };
        let db = if sb.requires_grad() {
            Some(binary_raw("mul", dy, &sa)?)
        } else {
            None
        };
        Ok(vec![da, db])
    });
    Ok(out)
}

/// s * x.
pub fn scale(x: &Tensor, s: f32) -> Result<Tensor> {
    let out = scale_raw(x, s)?;
    tape::record(&out, &[x], move |dy| Ok(vec![Some(scale_raw(dy, s)?)]));
    Ok(out)
}

/// max(x, 0); the gradient passes where x > 0.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    check_f32("relu", &[x])?;
    let out = x.empty_like()?;
    launch("relu", &[x], &out, 0)?;
    let sx = x.clone();
    tape::record(&out, &[x], move |dy| {
        let dx = sx.empty_like()?;
        launch("relu_backward", &[&sx, dy], &dx, 0)?;
        Ok(vec![Some(dx)])
    });
    Ok(out)
}

/// max(a + b, 0) in one pass (a residual block's end); the gradient dy where a + b > 0 goes to both.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = binary_raw("add_relu", a, b)?;
    // The output's sign is the sum's: the mask needs neither input kept.
    let so = out.clone();
    tape::record(&out, &[a, b], move |dy| {
        let d = relu_mask(&so, dy)?;
        Ok(vec![Some(d.clone()), Some(d)])
    });
    Ok(out)
}

/// dy where `out` > 0 (not recorded): the backward of a relu from its output (which has the sign of
/// its input), for ops that fuse a relu into their forward.
pub(crate) fn relu_mask(out: &Tensor, dy: &Tensor) -> Result<Tensor> {
    check_same_shape("relu_mask", out, dy)?;
    let d = out.empty_like()?;
    launch("relu_backward", &[out, dy], &d, 0)?;
    Ok(d)
}
