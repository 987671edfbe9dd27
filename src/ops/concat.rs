//! Concatenation and narrowing along the batch axis (axis 0) with shaders/concat.wgsl, forward and
//! backward. Rows along axis 0 are contiguous, so each piece is one range copy (split into
//! binding-sized chunks for large tensors). BYOL concatenates its two views into one batch.

use super::{chunks, window};
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::Tensor;

crate::kernels::kernel_params! {
    /// shaders/concat.wgsl: copy `n` elements between windows starting at these offsets.
    pub struct CopyParams {
        n: u32,
        src_base: u32,
        dst_base: u32,
    }
}

/// Copies `len` elements of `src` starting at `src_start` into `dst` starting at `dst_start`
/// (32-bit words, any dtype). Not recorded on the tape.
pub(crate) fn copy_elems(
    src: &Tensor,
    src_start: usize,
    dst: &Tensor,
    dst_start: usize,
    len: usize,
) -> Result<()> {
    if src_start + len > src.numel() || dst_start + len > dst.numel() {
        return Err(Error::Shape(format!(
            "copy of {len} elements from {src:?} at {src_start} into {dst:?} at {dst_start} is out of range"
        )));
    }
    if src.buffer() == dst.buffer() {
        return Err(Error::Invalid(format!(
            "cannot copy between {src:?} and {dst:?}: they share storage"
        )));
    }
    let engine = dst.engine();
    let align = (engine.gpu().limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    let room = engine.max_binding_words() as usize - align;
    for (start, n) in chunks(len, room) {
        let (s, sb) = window(engine, src, src_start + start, n);
        let (d, db) = window(engine, dst, dst_start + start, n);
        engine.dispatch_1d(
            "concat",
            "copy",
            &[],
            &CopyParams {
                n: n as u32,
                src_base: sb,
                dst_base: db,
            },
            &[s, d],
            n as u64,
        )?;
    }
    Ok(())
}

/// Elements per index of axis 0 (the product of the trailing dimensions).
fn row_len(t: &Tensor) -> usize {
    t.shape()[1..].iter().product()
}

/// Tensors of equal trailing shape and dtype, joined along axis 0.
pub fn concat0(ts: &[&Tensor]) -> Result<Tensor> {
    let Some(first) = ts.first() else {
        return Err(Error::Shape("concat0 of no tensors".into()));
    };
    if first.dims() == 0 {
        return Err(Error::Shape(format!("concat0 of a 0-D tensor {first:?}")));
    }
    for t in ts {
        if t.dims() != first.dims() || t.shape()[1..] != first.shape()[1..] {
            return Err(Error::Shape(format!(
                "concat0: {:?} and {:?} differ beyond axis 0",
                first.shape(),
                t.shape()
            )));
        }
        if t.dtype() != first.dtype() {
            return Err(Error::Invalid(format!(
                "concat0: {first:?} and {t:?} have different dtypes"
            )));
        }
    }
    let mut shape = first.shape().to_vec();
    shape[0] = ts.iter().map(|t| t.shape()[0]).sum();
    let engine = first.engine();
    let out = Tensor::empty(engine, &shape, first.dtype())?;
    let mut at = 0;
    for t in ts {
        copy_elems(t, 0, &out, at, t.numel())?;
        at += t.numel();
    }
    let parts: Vec<(usize, usize, bool)> = ts
        .iter()
        .scan(0, |row, t| {
            let start = *row;
            *row += t.shape()[0];
            Some((start, t.shape()[0], t.requires_grad()))
        })
        .collect();
    tape::record(&out, ts, move |dy| {
        parts
            .iter()
            .map(|&(start, len, needed)| {
                if needed {
                    narrow_raw(dy, start, len).map(Some)
                } else {
                    Ok(None)
                }
            })
            .collect()
    });
    Ok(out)
}

/// Rows `start..start + len` of `x` along axis 0, copied into a new tensor. Not recorded.
fn narrow_raw(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    shape[0] = len;
    let out = Tensor::empty(x.engine(), &shape, x.dtype())?;
    let per = row_len(x);
    copy_elems(x, start * per, &out, 0, len * per)?;
    Ok(out)
}

/// Rows `start..start + len` of `x` along axis 0; the gradient is `dy` placed back among zeros.
pub fn narrow0(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    if x.dims() == 0 || start + len > x.shape()[0] {
        return Err(Error::Shape(format!(
            "narrow0: rows {start}..{} do not fit in {:?}",
            start + len,
            x.shape()
        )));
    }
    let out = narrow_raw(x, start, len)?;
    let (shape, per) = (x.shape().to_vec(), row_len(x));
    tape::record(&out, &[x], move |dy| {
        let dx = Tensor::zeros(dy.engine(), &shape)?;
        copy_elems(dy, 0, &dx, start * per, len * per)?;
        Ok(vec![Some(dx)])
    });
    Ok(out)
}

/// `x` cut along axis 0 into consecutive pieces of `sizes` rows (which must add up to x's rows).
pub fn split0(x: &Tensor, sizes: &[usize]) -> Result<Vec<Tensor>> {
    let rows = x.shape().first().copied().unwrap_or(0);
    if x.dims() == 0 || sizes.iter().sum::<usize>() != rows {
        return Err(Error::Shape(format!(
            "split0: pieces of {sizes:?} rows do not add up to {:?}",
            x.shape()
        )));
    }
    let mut start = 0;
    sizes
        .iter()
        .map(|&len| {
            let piece = narrow0(x, start, len);
            start += len;
            piece
        })
        .collect()
}
