//! Convolution as explicit GEMM ("unfold", PyTorch's name for im2col), shaders/conv2d_unfold.wgsl:
//! the input is unfolded into `col` [C·KH·KW, batch·OH·OW] once, and each pass is one product of
//! the fastest matmul kernel (`ops::matmul`), which on load-bound adapters beats gathering the
//! window inside the product:
//!   forward          Y' [O, pixels] = W [O, CK] · col,                 Y = Y' back to NCHW
//!   input gradient   dcol [CK, pixels] = Wᵀ · dY' (dY' = dY channel-major), dx = col2im(dcol)
//!   weight gradient  dW [O, CK] = dY' · colᵀ
//! col2im is a gather (each input pixel sums the taps that reach it), so it is deterministic and
//! skips, at any stride, the taps the stride skips. Batches are processed in groups of samples
//! whose unfolded matrix fits `UNFOLD_BUDGET` and one binding.

use super::conv2d_geometry::Geometry;
use super::matmul::{gemm_into, Gemm};
use super::window;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Floats one group's unfolded matrix may take (64 MiB).
const UNFOLD_BUDGET: usize = 16 << 20;
/// Invocations per workgroup of every kernel in the shader (along grid x).
const GROUP: usize = 64;

const SHADER: &str = "conv2d_unfold";

/// Samples per group, or `None` where not even one sample's matrices fit (the direct kernels
/// then run instead). Grids are (pixels of the group / 64, channel or row), and the shader splits
/// pixel indices exactly only below 2^23.
pub(super) fn samples_per_group(engine: &Engine, g: &Geometry) -> Option<usize> {
    let max = (engine.max_binding_words() as usize).saturating_sub(64);
    let max_groups = engine.gpu().limits.max_compute_workgroups_per_dimension as usize;
    let rows = g.c * g.kh * g.kw;
    let per = (rows * g.oh * g.ow)
        .max(g.in_per_sample())
        .max(g.out_per_sample());
    let plane = (g.h * g.w).max(g.oh * g.ow);
    let pixels = (max_groups * GROUP).min(1 << 23);
    let n = (max.min(UNFOLD_BUDGET) / per)
        .min(pixels / plane)
        .min(g.batch);
    (n > 0 && rows.max(g.o) <= max_groups).then_some(n)
}

/// The grid of one of the shader's kernels: `pixels` of every sample, `channels`.
fn grid(pixels: usize, channels: usize) -> [u32; 3] {
    [pixels.div_ceil(GROUP) as u32, channels as u32, 1]
}

fn groups(engine: &Engine, g: &Geometry) -> Result<impl Iterator<Item = (usize, usize)>> {
    let per = samples_per_group(engine, g).ok_or_else(|| {
        Error::Shape(format!(
            "conv2d {g:?}: one sample's unfolded matrix exceeds the adapter's binding limit"
        ))
    })?;
    Ok(super::chunks(g.batch, per))
}

/// The NCHW / channel-major copy `name`, four elements per invocation where a plane is whole
/// vec4s (then every base offset is a multiple of 4 too): (entry point, elements per invocation).
fn copy_kernel(name: &'static str, g: &Geometry) -> (&'static str, usize) {
    match (name, (g.oh * g.ow).is_multiple_of(4)) {
        ("to_channel_major", true) => ("to_channel_major4", 4),
        ("to_sample_major", true) => ("to_sample_major4", 4),
        _ => (name, 1),
    }
}

/// col [CK, n·OH·OW] of samples `n0..n0 + n` of x.
fn unfold(engine: &Engine, g: &Geometry, x: &Tensor, n0: usize, n: usize) -> Result<Tensor> {
    let rows = g.c * g.kh * g.kw;
    let cols = n * g.oh * g.ow;
    let col = Tensor::empty(engine, &[rows * cols], DType::F32)?;
    let (xs, xb) = window(engine, x, n0 * g.in_per_sample(), n * g.in_per_sample());
    let p = g.params(n, xb, 0, false, 0, 0);
    // Four columns per invocation where the rows of col are whole vec4s.
    let (entry, per) = if cols.is_multiple_of(4) {
        ("im2col4", 4)
    } else {
        ("im2col", 1)
    };
    let grid = grid(cols.div_ceil(per), rows);
    engine.dispatch(SHADER, entry, &[], &p, &[xs, col.slice()], grid)?;
    Ok(col)
}

/// dY' [O, n·OH·OW]: samples `n0..n0 + n` of dy, channel-major.
fn channel_major(
    engine: &Engine,
    g: &Geometry,
    dy: &Tensor,
    n0: usize,
    n: usize,
) -> Result<Tensor> {
    let out = Tensor::empty(engine, &[g.o * n * g.oh * g.ow], DType::F32)?;
    let (ys, yb) = window(engine, dy, n0 * g.out_per_sample(), n * g.out_per_sample());
    let p = g.params(n, 0, yb, false, 0, 0);
    let (entry, per) = copy_kernel("to_channel_major", g);
    let grid = grid(n * g.oh * g.ow / per, g.o);
    engine.dispatch(SHADER, entry, &[], &p, &[ys, out.slice()], grid)?;
    Ok(out)
}

/// y = conv(x, w) (+ bias) into the existing `y`.
pub(super) fn forward_into(
    engine: &Engine,
    g: &Geometry,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
) -> Result<()> {
    let rows = g.c * g.kh * g.kw;
    for (n0, n) in groups(engine, g)? {
        let col = unfold(engine, g, x, n0, n)?;
        let cols = n * g.oh * g.ow;
        let prod = Tensor::empty(engine, &[g.o * cols], DType::F32)?;
        let gemm = Gemm {
            batch: 1,
            m: g.o,
            n: cols,
            k: rows,
            trans_a: false,
            trans_b: false,
        };
        gemm_into(engine, gemm, w, &col, &prod, 1.0, 0.0)?;
        drop(col);
        let (ys, yb) = window(engine, y, n0 * g.out_per_sample(), n * g.out_per_sample());
        // Without a bias the product stands in for the (unread) bias binding.
        let bs = bias.unwrap_or(&prod).slice();
        let p = g.params(n, 0, yb, bias.is_some(), 0, 0);
        let (entry, per) = copy_kernel("to_sample_major", g);
        let grid = grid(n * g.oh * g.ow / per, g.o);
        engine.dispatch(SHADER, entry, &[], &p, &[prod.slice(), ys, bs], grid)?;
    }
    Ok(())
}

/// The input gradient, the weight gradient, or both (each only where asked for), sharing the
/// channel-major copy of dy.
pub(super) fn backward(
    g: &Geometry,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    need_dx: bool,
    need_dw: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let engine = dy.engine();
    let rows = g.c * g.kh * g.kw;
    let dx = need_dx
        .then(|| Tensor::empty(engine, &[g.batch, g.c, g.h, g.w], DType::F32))
        .transpose()?;
    let dw = need_dw
        .then(|| Tensor::empty(engine, &[g.o, g.c, g.kh, g.kw], DType::F32))
        .transpose()?;
    for (n0, n) in groups(engine, g)? {
        let cols = n * g.oh * g.ow;
        let dyc = channel_major(engine, g, dy, n0, n)?;
        if let Some(dw) = &dw {
            let col = unfold(engine, g, x, n0, n)?;
            let gemm = Gemm {
                batch: 1,
                m: g.o,
                n: rows,
                k: cols,
                trans_a: false,
                trans_b: true,
            };
            let beta = if n0 == 0 { 0.0 } else { 1.0 };
            gemm_into(engine, gemm, &dyc, &col, dw, 1.0, beta)?;
        }
        if let Some(dx) = &dx {
            let dcol = Tensor::empty(engine, &[rows * cols], DType::F32)?;
            let gemm = Gemm {
                batch: 1,
                m: rows,
                n: cols,
                k: g.o,
                trans_a: true,
                trans_b: false,
            };
            gemm_into(engine, gemm, w, &dyc, &dcol, 1.0, 0.0)?;
            let (xs, xb) = window(engine, dx, n0 * g.in_per_sample(), n * g.in_per_sample());
            let p = g.params(n, xb, 0, false, 0, 0);
            // Four pixels per invocation where a plane is whole vec4s.
            let (entry, per) = if (g.h * g.w).is_multiple_of(4) {
                ("col2im4", 4)
            } else {
                ("col2im", 1)
            };
            let grid = grid(n * g.h * g.w / per, g.c);
            engine.dispatch(SHADER, entry, &[], &p, &[dcol.slice(), xs], grid)?;
        }
    }
    Ok((dx, dw))
}
