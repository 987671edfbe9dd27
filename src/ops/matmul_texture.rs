//! The matrix product with both operands read through textures (shaders/matmul_pack.wgsl and
//! shaders/matmul_texture.wgsl): a candidate kernel of `ops::matmul`, whose forward and backward
//! (products again) it serves.
//!
//! Each operand is first packed into an rgba32float texture: op(A) as M rows of K, op(B) as K rows
//! of N, zero padded to whole blocks, transposes and unaligned windows resolved by the packing
//! pass. The product then reads only texels, which on llvmpipe cost a fraction of a storage-buffer
//! load, and needs no clamps. Three dispatches instead of one: it wins where the product is large
//! enough to amortize the two packing passes, and the tuner measures where that is.

use super::chunks;
use super::gemm_shape::Gemm;
use crate::engine::{BufSlice, Engine};
use crate::error::{Error, Result};

crate::kernels::kernel_params! {
    /// shaders/matmul_pack.wgsl: packs X'[b, r, c] = x[base + b·batch_stride + r·row_stride +
    /// c·col_stride] into rows of `cols4` texels, `rows_padded` rows per matrix.
    pub struct PackParams {
        rows: u32,
        cols: u32,
        rows_padded: u32,
        cols4: u32,
        batch: u32,
        base: u32,
        row_stride: u32,
        col_stride: u32,
        batch_stride: u32,
    }
}

crate::kernels::kernel_params! {
    /// shaders/matmul_texture.wgsl: C = alpha·op(A)·op(B) + beta·C from packed operands.
    pub struct TextureGemmParams {
        m: u32,
        n: u32,
        a_cols4: u32,
        b_cols4: u32,
        a_matrix: u32,
        b_matrix: u32,
        batch: u32,
        c_stride: u32,
        c_base: u32,
        alpha: f32,
        beta: f32,
        kq_begin: u32,
        kq_end: u32,
    }
}

/// Rows of C one invocation covers; op(A) is padded to a multiple of it.
const BLOCK_ROWS: usize = 8;
/// Columns of C the widest block covers; op(B) is padded to a multiple of it.
const BLOCK_COLS: usize = 16;

/// The packed sizes of a product: (rows of op(A) padded, K padded to 4, N padded).
fn padded(g: Gemm) -> (usize, usize, usize) {
    (
        g.m.next_multiple_of(BLOCK_ROWS),
        g.k.next_multiple_of(4),
        g.n.next_multiple_of(BLOCK_COLS),
    )
}

/// Texels of the packed op(A) and op(B).
fn texels(g: Gemm) -> (u64, u64) {
    let (mp, kp, np) = padded(g);
    let b = g.batch as u64;
    (b * (mp * kp / 4) as u64, b * (kp * np / 4) as u64)
}

/// Whether this adapter can run the texture kernels on this product.
pub(crate) fn fits(engine: &Engine, g: Gemm) -> bool {
    let (a, b) = texels(g);
    let cap = engine.operand_texture_capacity();
    // Texel indices are u32 in the shaders.
    engine.has_operand_textures() && a <= cap && b <= cap && a.max(b) < u32::MAX as u64
}

/// One packing pass: X' (rows x cols, strides in elements) into `slot`'s texture.
#[allow(clippy::too_many_arguments)]
fn pack(
    engine: &Engine,
    slot: usize,
    src: BufSlice,
    g: Gemm,
    (rows, cols): (usize, usize),
    (rows_padded, cols_padded): (usize, usize),
    base: u32,
    (row_stride, col_stride): (usize, usize),
) -> Result<wgpu::TextureView> {
    let cols4 = cols_padded / 4;
    let total = (g.batch * rows_padded * cols4) as u64;
    let view = engine.operand_texture(slot, total)?;
    let batch_stride = rows * cols;
    let params = PackParams {
        rows: rows as u32,
        cols: cols as u32,
        rows_padded: rows_padded as u32,
        cols4: cols4 as u32,
        batch: g.batch as u32,
        base,
        row_stride: row_stride as u32,
        col_stride: col_stride as u32,
        batch_stride: batch_stride as u32,
    };
    let whole_vec4 = col_stride == 1
        && cols.is_multiple_of(4)
        && base.is_multiple_of(4)
        && row_stride.is_multiple_of(4)
        && batch_stride.is_multiple_of(4);
    let entry = if whole_vec4 { "pack_vec4" } else { "pack" };
    engine.dispatch_1d_textured("matmul_pack", entry, &[], &params, &[src], &[&view], total)?;
    Ok(view)
}

/// Records C = alpha·op(A)·op(B) + beta·C, K summed in ranges of `k_range`, with `wide` (8 x 16
/// blocks) and `rows` (64 x 1 workgroups) as in matmul_vec4.wgsl.
#[allow(clippy::too_many_arguments)]
pub(crate) fn launch(
    engine: &Engine,
    g: Gemm,
    bufs: [BufSlice; 3],
    bases: [u32; 3],
    alpha: f32,
    beta: f32,
    (wide, rows): (bool, bool),
    k_range: usize,
) -> Result<()> {
    if !fits(engine, g) {
        return Err(Error::Shape(format!(
            "matmul {g:?}: the texture kernel cannot hold these operands on this adapter"
        )));
    }
    let (mp, kp, np) = padded(g);
    // op(A)[r, c]: A is M x K, or K x M when transposed.
    let a_strides = if g.trans_a { (1, g.m) } else { (g.k, 1) };
    // op(B)[r, c]: B is K x N, or N x K when transposed.
    let b_strides = if g.trans_b { (1, g.k) } else { (g.n, 1) };
    let a = pack(
        engine,
        0,
        bufs[0],
        g,
        (g.m, g.k),
        (mp, kp),
        bases[0],
        a_strides,
    )?;
    let b = pack(
        engine,
        1,
        bufs[1],
        g,
        (g.k, g.n),
        (kp, np),
        bases[1],
        b_strides,
    )?;
    let block_cols = if wide { 16 } else { 8 };
    let (gx, gy) = if rows { (64, 1) } else { (8, 8) };
    let constants = [
        ("WIDE", wide as u8 as f64),
        ("GROUP_X", gx as f64),
        ("GROUP_Y", gy as f64),
    ];
    let grid = [
        g.n.div_ceil(gx * block_cols) as u32,
        g.m.div_ceil(gy * BLOCK_ROWS) as u32,
        g.batch as u32,
    ];
    for (k0, len) in chunks(g.k, k_range) {
        let params = TextureGemmParams {
            m: g.m as u32,
            n: g.n as u32,
            a_cols4: (kp / 4) as u32,
            b_cols4: (np / 4) as u32,
            a_matrix: (mp * kp / 4) as u32,
            b_matrix: (kp * np / 4) as u32,
            batch: g.batch as u32,
            c_stride: (g.m * g.n) as u32,
            c_base: bases[2],
            alpha,
            beta: if k0 == 0 { beta } else { 1.0 },
            kq_begin: (k0 / 4) as u32,
            kq_end: (k0 + len).div_ceil(4) as u32,
        };
        engine.dispatch_textured(
            "matmul_texture",
            "matmul",
            &constants,
            &params,
            &[bufs[2]],
            &[&a, &b],
            grid,
        )?;
    }
    Ok(())
}
