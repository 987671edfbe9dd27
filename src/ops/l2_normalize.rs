//! Row-wise L2 normalization of [N, D] features (shaders/l2_normalize.wgsl), forward and backward,
//! plus the row-window launcher that the loss ops share.
//!
//! y = x / max(||x||, eps) with eps = 1e-12, as torch.nn.functional.normalize.
//!
//! Kernels that loop along a row (here the row sums, and the loss ops' per-row passes) cover at
//! most `COLS_PER_CHUNK` columns per invocation, so long rows are summed in chunks: software Vulkan
//! stops an invocation's loops at `SOFTWARE_LOOP_LIMIT` iterations.

use super::reduce::sum_raw;
use super::{check_f32, chunks, window, LOOP_BUDGET};
use crate::engine::{BufSlice, Engine};
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::{DType, Tensor};

/// The smallest norm divided by, as in torch.nn.functional.normalize.
pub const L2_NORM_EPS: f32 = 1e-12;

/// Columns one invocation of a row kernel loops over (at most twice: a maximum, then a sum).
pub(crate) const COLS_PER_CHUNK: usize = LOOP_BUDGET / 2;

/// (columns per chunk, chunks per row) for rows of `cols` columns.
pub(crate) fn col_chunks(cols: usize) -> (usize, usize) {
    let len = cols.clamp(1, COLS_PER_CHUNK);
    (len, cols.div_ceil(len))
}

/// (rows, cols) of a non-empty 2-D tensor.
pub(crate) fn matrix_dims(op: &str, x: &Tensor) -> Result<(usize, usize)> {
    match *x.shape() {
        [r, c] if r > 0 && c > 0 => Ok((r, c)),
        _ => Err(Error::Shape(format!(
            "{op}: expected a non-empty [N, D] matrix, got {:?}",
            x.shape()
        ))),
    }
}

/// Calls `launch(row0, rows, slices, bases)` for windows of rows that fit in one binding each.
/// `args` are the tensors to bind, in binding order, with the elements each row holds in them;
/// 0 elements per row binds the whole tensor (a scalar such as an upstream gradient of shape [1]).
/// `bases` are the element offsets of the window's first row inside each binding.
pub(crate) fn for_row_windows<'a>(
    engine: &Engine,
    op: &str,
    rows: usize,
    args: &[(&'a Tensor, usize)],
    mut launch: impl FnMut(usize, usize, &[BufSlice<'a>], &[u32]) -> Result<()>,
) -> Result<()> {
    let align = (engine.gpu().limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    let room = (engine.max_binding_words() as usize).saturating_sub(align);
    let widest = args.iter().map(|(_, w)| *w).max().unwrap_or(1).max(1);
    let per_launch = room / widest;
    if per_launch == 0 {
        return Err(Error::Shape(format!(
            "{op}: one row of {widest} elements exceeds the adapter's binding limit"
        )));
    }
    for (r0, n) in chunks(rows, per_launch) {
        let mut slices = Vec::with_capacity(args.len());
        let mut bases = Vec::with_capacity(args.len());
        for (t, per_row) in args {
            let (s, b) = if *per_row == 0 {
                (t.slice(), 0)
            } else {
                window(engine, t, r0 * per_row, n * per_row)
            };
            slices.push(s);
            bases.push(b);
        }
        launch(r0, n, &slices, &bases)?;
    }
    Ok(())
}

/// out[r] = sum_j a[r, j] * b[r, j] for [rows, cols] matrices `a` and `b` (not recorded). Long
/// rows are summed in chunks, then the chunk sums are added.
pub(crate) fn row_dot_raw(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (rows, cols) = matrix_dims("row_dot", a)?;
    let engine = a.engine();
    let (chunk_len, chunks) = col_chunks(cols);
    let out = Tensor::empty(engine, &[rows * chunks], DType::F32)?;
    let args = [(a, cols), (b, cols), (&out, chunks)];
    for_row_windows(engine, "row_dot", rows, &args, |_, n, bufs, bases| {
        let params = L2NormalizeParams {
            chunk_len: chunk_len as u32,
            chunks: chunks as u32,
            ..params(n, cols, [bases[0], bases[1], 0, 0, bases[2]])
        };
        let count = (n * chunks) as u64;
        engine.dispatch_1d("l2_normalize", "row_dot", &[], &params, bufs, count)
    })?;
    if chunks == 1 {
        return Ok(out);
    }
    sum_raw(&out, rows, chunks, 1, 1.0)
}

/// The normalized rows of `x` and the per-row sums of squares (kept for the backward).
pub(crate) fn normalize_raw(x: &Tensor) -> Result<(Tensor, Tensor)> {
    check_f32("l2_normalize", &[x])?;
    let (rows, cols) = matrix_dims("l2_normalize", x)?;
    let engine = x.engine();
    let sumsq = row_dot_raw(x, x)?;
    let y = x.empty_like()?;
    let args = [(x, cols), (&sumsq, 1), (&y, cols)];
    for_row_windows(engine, "l2_normalize", rows, &args, |_, n, bufs, bases| {
        let params = params(n, cols, [bases[0], 0, bases[1], 0, bases[2]]);
        engine.dispatch_1d(
            "l2_normalize",
            "normalize",
            &[],
            &params,
            bufs,
            (n * cols) as u64,
        )
    })?;
    Ok((y, sumsq))
}

/// dx from the forward output `y`, its row sums of squares and the upstream gradient `dy`.
fn normalize_backward_raw(y: &Tensor, sumsq: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let (rows, cols) = matrix_dims("l2_normalize backward", y)?;
    let engine = y.engine();
    let dots = row_dot_raw(dy, y)?;
    let dx = y.empty_like()?;
    let args = [(y, cols), (dy, cols), (sumsq, 1), (&dots, 1), (&dx, cols)];
    for_row_windows(engine, "l2_normalize", rows, &args, |_, n, bufs, b| {
        let params = params(n, cols, [b[0], b[1], b[2], b[3], b[4]]);
        engine.dispatch_1d(
            "l2_normalize",
            "normalize_backward",
            &[],
            &params,
            bufs,
            (n * cols) as u64,
        )
    })
    .map(|_| dx)
}

/// The shader's parameter block: rows, cols, eps, then the bases of a, b, sumsq, dots, out, then
/// row_dot's chunking (one chunk of all columns here).
fn params(rows: usize, cols: usize, bases: [u32; 5]) -> L2NormalizeParams {
    let [a_base, b_base, s_base, t_base, out_base] = bases;
    L2NormalizeParams {
        rows: rows as u32,
        cols: cols as u32,
        eps: L2_NORM_EPS,
        a_base,
        b_base,
        s_base,
        t_base,
        out_base,
        chunk_len: cols as u32,
        chunks: 1,
    }
}

crate::kernels::kernel_params! {
    /// shaders/l2_normalize.wgsl.
    pub struct L2NormalizeParams {
        rows: u32,
        cols: u32,
        eps: f32,
        a_base: u32,
        b_base: u32,
        s_base: u32,
        t_base: u32,
        out_base: u32,
        /// Columns per chunk of a long row, and chunks per row.
        chunk_len: u32,
        chunks: u32,
    }
}

/// Each row of an [N, D] matrix divided by its L2 norm (at least 1e-12).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let (y, sumsq) = normalize_raw(x)?;
    let saved_y = y.clone();
    tape::record(&y, &[x], move |dy| {
        Ok(vec![Some(normalize_backward_raw(&saved_y, &sumsq, dy)?)])
    });
    Ok(y)
}
