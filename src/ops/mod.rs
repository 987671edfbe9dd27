//! Differentiable ops. Each file holds one op family: its forward, its backward and the shapes it
//! accepts, next to its shader in `shaders/`.

pub mod bias;
pub mod elementwise;
pub mod matmul;
pub mod reduce;

pub use bias::bias_add;
pub use elementwise::{add, mul, relu, scale, sub};
pub use matmul::{matmul, matmul_nt, matmul_tn};
pub use reduce::{mean, mean_axis, sum, sum_axis};

use crate::engine::{BufSlice, Engine};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Same data, new shape (same number of elements); the gradient is reshaped back.
pub fn reshape(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let out = x.view(shape)?;
    let in_shape = x.shape().to_vec();
    x.engine()
        .record(&out, &[x], move |dy| Ok(vec![Some(dy.view(&in_shape)?)]));
    Ok(out)
}

pub(crate) fn check_f32(op: &str, ts: &[&Tensor]) -> Result<()> {
    for t in ts {
        if t.dtype() != DType::F32 {
            return Err(Error::Invalid(format!("{op}: {t:?} must be f32")));
        }
    }
    Ok(())
}

pub(crate) fn check_same_shape(op: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::Shape(format!(
            "{op}: shapes {:?} and {:?} differ",
            a.shape(),
            b.shape()
        )));
    }
    Ok(())
}

/// A binding that covers elements `start..start + len` of `t`, beginning at the nearest legal
/// (aligned) offset at or below `start`; returns it with the element offset of `start` inside it.
/// Ops use it to split tensors larger than one binding into pieces.
pub(crate) fn window<'a>(
    engine: &Engine,
    t: &'a Tensor,
    start: usize,
    len: usize,
) -> (BufSlice<'a>, u32) {
    let align = (engine.gpu().limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    let aligned = start / align * align;
    let base = start - aligned;
    (t.slice_elems(aligned, base + len), base as u32)
}

/// Splits `0..n` into ranges of at most `max` (callers pass an aligned `max`).
pub(crate) fn chunks(n: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let max = max.max(1);
    (0..n.div_ceil(max)).map(move |i| (i * max, max.min(n - i * max)))
}
