//! Sum and mean over one axis or over everything (shaders/reduce.wgsl), forward and backward.
//!
//! A tensor is viewed as [outer, axis, inner]. Long axes with little parallel work are first summed
//! in chunks, then the chunk sums are summed: deterministic, and no invocation loops more than
//! `LOOP_BUDGET` times.

use super::{check_f32, window, LOOP_BUDGET};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::{DType, Tensor};

crate::kernels::kernel_params! {
    /// shaders/reduce.wgsl: sums over the middle axis of [outer, axis, inner] in chunks of
    /// `chunk_len`, times `scale`.
    pub struct ReduceParams {
        outer: u32,
        axis: u32,
        inner: u32,
        chunk_len: u32,
        chunks: u32,
        scale: f32,
        x_base: u32,
        out_base: u32,
    }
}

/// Invocations a reduction launch should have at least, before chunking the axis pays off.
const TARGET_INVOCATIONS: usize = 16384;

/// out[o, i] = scale * sum_a x[o, a, i] over a flat [outer, axis, inner] view of `x`.
pub(crate) fn sum_raw(
    x: &Tensor,
    outer: usize,
    axis: usize,
    inner: usize,
    scale: f32,
) -> Result<Tensor> {
    let engine = x.engine();
    let chunk_len = chunk_len(axis, outer * inner);
    let chunks = axis.div_ceil(chunk_len.max(1)).max(1);
    let out = Tensor::empty(engine, &[outer * chunks * inner], DType::F32)?;
    let s = if chunks == 1 { scale } else { 1.0 };
    launch(
        "sum_axis",
        engine,
        x,
        &out,
        [outer, axis, inner],
        [chunk_len, chunks],
        s,
    )?;
    if chunks == 1 {
        return Ok(out);
    }
    sum_raw(&out, outer, chunks, inner, scale)
}

/// Axis elements one invocation sums, given `work` = outer * inner sums to compute: chunks of the
/// axis when there is too little parallel work otherwise, and never more than `LOOP_BUDGET` (the
/// kernel loops once per element; software Vulkan stops loops at `SOFTWARE_LOOP_LIMIT`).
fn chunk_len(axis: usize, work: usize) -> usize {
    let len = if axis >= 128 && work < TARGET_INVOCATIONS {
        let chunks_wanted = (TARGET_INVOCATIONS / work.max(1)).clamp(1, axis / 64);
        axis.div_ceil(chunks_wanted)
    } else {
        axis
    };
    len.min(LOOP_BUDGET)
}

/// out[o, a, i] = scale * dy[o, i]: the gradient of `sum_raw`.
pub(crate) fn broadcast_raw(
    dy: &Tensor,
    outer: usize,
    axis: usize,
    inner: usize,
    scale: f32,
) -> Result<Tensor> {
    let engine = dy.engine();
    let out = Tensor::empty(engine, &[outer * axis * inner], DType::F32)?;
    launch(
        "broadcast_axis",
        engine,
        dy,
        &out,
        [outer, axis, inner],
        [axis, 1],
        scale,
    )?;
    Ok(out)
}

/// Launches `entry` once per group of `outer` slabs that fits in one binding.
fn launch(
    entry: &str,
    engine: &Engine,
    x: &Tensor,
    out: &Tensor,
    [outer, axis, inner]: [usize; 3],
    [chunk_len, chunks]: [usize; 2],
    scale: f32,
) -> Result<()> {
    // Elements of x and out per outer slab.
    let (x_slab, out_slab) = if entry == "sum_axis" {
        (axis * inner, chunks * inner)
    } else {
        (inner, axis * inner)
    };
    let align = 64;
    let max = engine.max_binding_words() as usize - align;
    let per = (max / x_slab.max(out_slab).max(1)).min(outer);
    if per == 0 {
        return Err(Error::Shape(format!(
            "{entry}: one slab of {} elements exceeds the adapter's binding limit",
            x_slab.max(out_slab)
        )));
    }
    let mut o0 = 0;
    while o0 < outer {
        let n = per.min(outer - o0);
        let (xs, xb) = window(engine, x, o0 * x_slab, n * x_slab);
        let (os, ob) = window(engine, out, o0 * out_slab, n * out_slab);
        let params = ReduceParams {
            outer: n as u32,
            axis: axis as u32,
            inner: inner as u32,
            chunk_len: chunk_len as u32,
            chunks: chunks as u32,
            scale,
            x_base: xb,
            out_base: ob,
        };
        engine.dispatch_1d(
            "reduce",
            entry,
            &[],
            &params,
            &[xs, os],
            (n * out_slab) as u64,
        )?;
        o0 += n;
    }
    Ok(())
}

fn axis_view(x: &Tensor, axis: usize) -> Result<(usize, usize, usize)> {
    if axis >= x.dims() {
        return Err(Error::Shape(format!("axis {axis} out of range for {x:?}")));
    }
    let s = x.shape();
    Ok((
        s[..axis].iter().product(),
        s[axis],
        s[axis + 1..].iter().product(),
    ))
}

fn reduce_axis(x: &Tensor, axis: usize, mean: bool) -> Result<Tensor> {
    check_f32("sum_axis", &[x])?;
    let (outer, len, inner) = axis_view(x, axis)?;
    if len == 0 {
        return Err(Error::Shape(format!(
            "reducing over an empty axis of {x:?}"
        )));
    }
    let scale = if mean { 1.0 / len as f32 } else { 1.0 };
    let mut shape = x.shape().to_vec();
    shape.remove(axis);
    let out = sum_raw(x, outer, len, inner, scale)?.view(&shape)?;
    let in_shape = x.shape().to_vec();
    tape::record(&out, &[x], move |dy| {
        Ok(vec![Some(
            broadcast_raw(dy, outer, len, inner, scale)?.view(&in_shape)?,
        )])
    });
    Ok(out)
}

/// Sum over `axis`, which is removed from the shape.
pub fn sum_axis(x: &Tensor, axis: usize) -> Result<Tensor> {
    reduce_axis(x, axis, false)
}

/// Mean over `axis`, which is removed from the shape.
pub fn mean_axis(x: &Tensor, axis: usize) -> Result<Tensor> {
    reduce_axis(x, axis, true)
}

/// Sum of all elements, shape [1].
pub fn sum(x: &Tensor) -> Result<Tensor> {
    sum_axis(&super::reshape(x, &[1, x.numel()])?, 1)
}

/// Mean of all elements, shape [1].
pub fn mean(x: &Tensor) -> Result<Tensor> {
    mean_axis(&super::reshape(x, &[1, x.numel()])?, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_invocation_sums_more_than_the_loop_budget() {
        for axis in [1, 127, 128, 65_535, 70_000, 1 << 20, 1 << 30] {
            for work in [1, 10, 8192, 16_383, 16_384, 1 << 20] {
                let len = chunk_len(axis, work);
                assert!(
                    len <= LOOP_BUDGET,
                    "axis {axis}, work {work}: chunks of {len}"
                );
                assert!(len >= 1 && len * axis.div_ceil(len) >= axis);
            }
        }
    }
}
