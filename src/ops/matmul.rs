//! Matrix products A·B, Aᵀ·B and A·Bᵀ, plain or batched (shaders/matmul_blocked.wgsl and
//! shaders/matmul_tiled.wgsl), forward and backward.
//!
//! The kernel is chosen per product by measurement (or forced, or the adapter's static default:
//! barrier-free register blocking on software adapters, workgroup-memory tiles on GPUs); the
//! texture kernels (`matmul_texture`) are candidates wherever the adapter has them. Operands larger than one binding are split over
//! the rows of C (or, for Aᵀ·B, over K with accumulation into C), and a K longer than `K_RANGE` is
//! summed over several launches that accumulate into C.

use super::{check_f32, chunks, matmul_texture, window, LOOP_BUDGET};
use crate::engine::{Engine, MatmulVariant};
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::{DType, Tensor};

/// Longest range of K one launch sums: each invocation loops over it (once per k in the scalar
/// kernel), and software Vulkan stops loops at `SOFTWARE_LOOP_LIMIT` iterations. A multiple of 16,
/// so every range but the last fills whole K slices of the vec4 and tiled kernels.
const K_RANGE: usize = LOOP_BUDGET / 16 * 16;

pub(crate) use super::gemm_shape::Gemm;

/// Records C = alpha·op(A)·op(B) + beta·C into an existing `c` (not on the tape).
pub(crate) fn gemm_into(
    engine: &Engine,
    g: Gemm,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    let max = engine.max_binding_words() as usize - 64;
    let (a_len, b_len, c_len) = (
        g.batch * g.m * g.k,
        g.batch * g.k * g.n,
        g.batch * g.m * g.n,
    );
    if a_len <= max && b_len <= max && c_len <= max {
        return launch(engine, g, [a, b, c], [0, 0, 0], alpha, beta);
    }
    if g.batch == 1 && !g.trans_a && b_len <= max {
        // Rows of A and C are contiguous: split over M.
        let rows = (max / g.k.max(g.n)).max(1);
        let mut m0 = 0;
        while m0 < g.m {
            let m = rows.min(g.m - m0);
            let part = Gemm { m, ..g };
            launch_windows(engine, part, a, b, c, [m0 * g.k, 0, m0 * g.n], alpha, beta)?;
            m0 += m;
        }
        return Ok(());
    }
    if g.batch == 1 && g.trans_a && !g.trans_b && c_len <= max {
        // A is K x M and B is K x N: slices over K are contiguous; accumulate into C.
        let ks = (max / g.m.max(g.n)).max(1);
        let mut k0 = 0;
        while k0 < g.k {
            let k = ks.min(g.k - k0);
            let part = Gemm { k, ..g };
            let beta_part = if k0 == 0 { beta } else { 1.0 };
            launch_windows(
                engine,
                part,
                a,
                b,
                c,
                [k0 * g.m, k0 * g.n, 0],
                alpha,
                beta_part,
            )?;
            k0 += k;
        }
        return Ok(());
    }
    Err(Error::Shape(format!(
        "matmul {g:?}: operands exceed the adapter's binding limit of {} floats and cannot be split this way",
        engine.max_binding_words()
    )))
}

crate::kernels::kernel_params! {
    /// `GemmParams` of shaders/common.wgsl, shared by the three matmul kernels.
    pub struct GemmParams {
        m: u32,
        n: u32,
        k: u32,
        batch: u32,
        a_stride: u32,
        b_stride: u32,
        c_stride: u32,
        a_base: u32,
        b_base: u32,
        c_base: u32,
        alpha: f32,
        beta: f32,
        /// This launch sums k in [k_begin, k_end) (long K is split over launches).
        k_begin: u32,
        k_end: u32,
    }
}

#[allow(clippy::too_many_arguments)]
fn launch_windows(
    engine: &Engine,
    g: Gemm,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    starts: [usize; 3],
    alpha: f32,
    beta: f32,
) -> Result<()> {
    let (sa, ba) = window(engine, a, starts[0], g.m * g.k);
    let (sb, bb) = window(engine, b, starts[1], g.k * g.n);
    let (sc, bc) = window(engine, c, starts[2], g.m * g.n);
    dispatch(engine, g, [sa, sb, sc], [ba, bb, bc], alpha, beta)
}

fn launch(
    engine: &Engine,
    g: Gemm,
    t: [&Tensor; 3],
    bases: [u32; 3],
    alpha: f32,
    beta: f32,
) -> Result<()> {
    dispatch(
        engine,
        g,
        [t[0].slice(), t[1].slice(), t[2].slice()],
        bases,
        alpha,
        beta,
    )
}

/// One matmul kernel: its shader and how its invocations and workgroups cover C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kernel {
    name: &'static str,
    shader: &'static str,
    /// matmul_vec4: 8 x 16 blocks per invocation instead of 8 x 8.
    wide: bool,
    /// matmul_vec4: 64 x 1 workgroups (8 rows of C) instead of 8 x 8.
    rows: bool,
}

const BLOCKED: Kernel = Kernel {
    name: "blocked",
    shader: "matmul_blocked",
    wide: false,
    rows: false,
};
const TILED: Kernel = Kernel {
    name: "tiled",
    shader: "matmul_tiled",
    wide: false,
    rows: false,
};
const fn vec4(name: &'static str, wide: bool, rows: bool) -> Kernel {
    Kernel {
        name,
        shader: "matmul_vec4",
        wide,
        rows,
    }
}
const VEC4: Kernel = vec4("vec4", false, false);
const VEC4_WIDE: Kernel = vec4("vec4-wide", true, false);
const VEC4_ROWS: Kernel = vec4("vec4-rows", false, true);
const VEC4_ROWS_WIDE: Kernel = vec4("vec4-rows-wide", true, true);
const fn texture(name: &'static str, wide: bool, rows: bool) -> Kernel {
    Kernel {
        name,
        shader: "matmul_texture",
        wide,
        rows,
    }
}
const TEXTURE: Kernel = texture("texture", false, false);
const TEXTURE_WIDE: Kernel = texture("texture-wide", true, false);
const TEXTURE_ROWS_WIDE: Kernel = texture("texture-rows-wide", true, true);

impl Kernel {
    /// Columns and rows of C one workgroup covers.
    fn tile(self) -> (usize, usize) {
        match self.shader {
            "matmul_blocked" => (32, 32),
            "matmul_tiled" => (64, 64),
            _ => {
                let block_cols = if self.wide { 16 } else { 8 };
                let (gx, gy) = if self.rows { (64, 1) } else { (8, 8) };
                (gx * block_cols, gy * 8)
            }
        }
    }
}

/// The kernels this product may run, the static default first: what the options force, else
/// (tuned by measurement) every kernel that can read these operands. Barrier-free kernels lead on
/// software adapters, tiles on GPUs; the texture kernels, which read any operands the adapter's
/// textures can hold, follow.
fn candidates(engine: &Engine, g: Gemm, bases: [u32; 3]) -> Vec<Kernel> {
    let vec4_fits = vec4_ok(g, bases);
    let or_blocked = |k: Kernel| if vec4_fits { k } else { BLOCKED };
    let textures_fit = matmul_texture::fits(engine, g);
    let or_vec4 = |k: Kernel| if textures_fit { k } else { or_blocked(VEC4) };
    match engine.matmul_option() {
        MatmulVariant::Texture => vec![or_vec4(TEXTURE)],
        MatmulVariant::TextureWide => vec![or_vec4(TEXTURE_WIDE)],
        MatmulVariant::TextureRowsWide => vec![or_vec4(TEXTURE_ROWS_WIDE)],
        MatmulVariant::Blocked => vec![or_blocked(VEC4)],
        MatmulVariant::Tiled => vec![TILED],
        MatmulVariant::Vec4Wide => vec![or_blocked(VEC4_WIDE)],
        MatmulVariant::Vec4Rows => vec![or_blocked(VEC4_ROWS)],
        MatmulVariant::Vec4RowsWide => vec![or_blocked(VEC4_ROWS_WIDE)],
        MatmulVariant::Auto => {
            let free: Vec<Kernel> = if vec4_fits {
                vec![VEC4, VEC4_WIDE, VEC4_ROWS, VEC4_ROWS_WIDE]
            } else {
                vec![BLOCKED]
            };
            let textures: &[Kernel] = if textures_fit {
                &[TEXTURE, TEXTURE_WIDE, TEXTURE_ROWS_WIDE]
            } else {
                &[]
            };
            let all: Vec<Kernel> = if engine.gpu().is_software() {
                free.into_iter().chain([TILED]).collect()
            } else {
                [TILED].into_iter().chain(free).collect()
            };
            all.into_iter().chain(textures.iter().copied()).collect()
        }
    }
}

fn dispatch(
    engine: &Engine,
    g: Gemm,
    bufs: [crate::engine::BufSlice; 3],
    bases: [u32; 3],
    alpha: f32,
    beta: f32,
) -> Result<()> {
    let kernels = candidates(engine, g, bases);
    let kernel = if kernels.len() == 1 {
        kernels[0]
    } else {
        let names: Vec<&'static str> = kernels.iter().map(|k| k.name).collect();
        let key = format!(
            "matmul {}{} b{} m{} n{} k{}{}",
            if g.trans_a { "T" } else { "N" },
            if g.trans_b { "T" } else { "N" },
            g.batch,
            g.m,
            g.n,
            g.k,
            if vec4_ok(g, bases) { "" } else { " unaligned" }
        );
        // Timed into a scratch C of its own (beta 0: nothing of C is read).
        let chosen = engine.choose_kernel(&key, &names, |name| {
            let k = kernels
                .iter()
                .find(|k| k.name == name)
                .copied()
                .unwrap_or(kernels[0]);
            let scratch = Tensor::empty(engine, &[g.batch * g.m * g.n], DType::F32)?;
            let out = [bufs[0], bufs[1], scratch.slice()];
            launch_kernel(engine, k, g, out, [bases[0], bases[1], 0], alpha, 0.0)
        })?;
        kernels
            .iter()
            .find(|k| k.name == chosen)
            .copied()
            .unwrap_or(kernels[0])
    };
    launch_kernel(engine, kernel, g, bufs, bases, alpha, beta)
}

fn launch_kernel(
    engine: &Engine,
    kernel: Kernel,
    g: Gemm,
    bufs: [crate::engine::BufSlice; 3],
    bases: [u32; 3],
    alpha: f32,
    beta: f32,
) -> Result<()> {
    if kernel.shader == "matmul_texture" {
        let shape = (kernel.wide, kernel.rows);
        return matmul_texture::launch(engine, g, bufs, bases, alpha, beta, shape, K_RANGE);
    }
    let (cols, rows) = kernel.tile();
    let (gx, gy) = if kernel.rows { (64.0, 1.0) } else { (8.0, 8.0) };
    let constants = [
        ("TRANS_A", g.trans_a as u8 as f64),
        ("TRANS_B", g.trans_b as u8 as f64),
        ("WIDE", kernel.wide as u8 as f64),
        ("GROUP_X", gx),
        ("GROUP_Y", gy),
    ];
    // Only matmul_vec4 has the block and workgroup shape constants.
    let constants = if kernel.shader == "matmul_vec4" {
        &constants[..]
    } else {
        &constants[..2]
    };
    let grid = [
        g.n.div_ceil(cols) as u32,
        g.m.div_ceil(rows) as u32,
        g.batch as u32,
    ];
    // A long K is summed in ranges, each launch adding its part into C (beta = 1 after the first).
    for (k0, len) in chunks(g.k, K_RANGE) {
        let beta = if k0 == 0 { beta } else { 1.0 };
        let params = GemmParams {
            m: g.m as u32,
            n: g.n as u32,
            k: g.k as u32,
            batch: g.batch as u32,
            a_stride: (g.m * g.k) as u32,
            b_stride: (g.k * g.n) as u32,
            c_stride: (g.m * g.n) as u32,
            a_base: bases[0],
            b_base: bases[1],
            c_base: bases[2],
            alpha,
            beta,
            k_begin: k0 as u32,
            k_end: (k0 + len) as u32,
        };
        engine.dispatch(kernel.shader, "matmul", constants, &params, &bufs, grid)?;
    }
    Ok(())
}

/// Whether the vec4 barrier-free kernel can read this product's operands as vec4 rows.
fn vec4_ok(g: Gemm, bases: [u32; 3]) -> bool {
    g.k.is_multiple_of(4)
        && (!g.trans_a || g.m.is_multiple_of(4))
        && (g.trans_b || g.n.is_multiple_of(4))
        && bases[0].is_multiple_of(4)
        && bases[1].is_multiple_of(4)
}

/// Reads (batch, rows, cols) of a 2-D or 3-D operand.
fn dims3(t: &Tensor) -> Result<(usize, usize, usize)> {
    match *t.shape() {
        [r, c] => Ok((1, r, c)),
        [b, r, c] => Ok((b, r, c)),
        _ => Err(Error::Shape(format!(
            "matmul operands must be 2-D or 3-D, got {t:?}"
        ))),
    }
}

/// op(A)·op(B) for 2-D operands or batches of them (3-D, same batch), recorded on the tape.
pub fn gemm(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    check_f32("matmul", &[a, b])?;
    let (ba, ar, ac) = dims3(a)?;
    let (bb, br, bc) = dims3(b)?;
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
    if k != k2 || ba != bb || a.dims() != b.dims() {
        return Err(Error::Shape(format!(
            "matmul: {:?}{} · {:?}{} do not chain",
            a.shape(),
            if trans_a { "ᵀ" } else { "" },
            b.shape(),
            if trans_b { "ᵀ" } else { "" }
        )));
    }
    if m == 0 || n == 0 || k == 0 {
        return Err(Error::Shape(format!(
            "matmul with an empty dimension: {:?} · {:?}",
            a.shape(),
            b.shape()
        )));
    }
    let engine = a.engine();
    let shape: Vec<usize> = if a.dims() == 3 {
        vec![ba, m, n]
    } else {
        vec![m, n]
    };
    let out = Tensor::empty(engine, &shape, DType::F32)?;
    let g = Gemm {
        batch: ba,
        m,
        n,
        k,
        trans_a,
        trans_b,
    };
    gemm_into(engine, g, a, b, &out, 1.0, 0.0)?;
    let (sa, sb) = (a.clone(), b.clone());
    tape::record(&out, &[a, b], move |dc| {
        // C = op(A)·op(B): each case's gradients are again products of dC with A or B.
        let da = if sa.requires_grad() {
            Some(match (trans_a, trans_b) {
                (false, false) => gemm(dc, &sb, false, true)?,
                (false, true) => gemm(dc, &sb, false, false)?,
                (true, false) => gemm(&sb, dc, false, true)?,
                (true, true) => gemm(&sb, dc, true, true)?,
            })
        } else {
            None
        };
        let db = if sb.requires_grad() {
            Some(match (trans_a, trans_b) {
                (false, false) => gemm(&sa, dc, true, false)?,
                (false, true) => gemm(dc, &sa, true, false)?,
                (true, false) => gemm(&sa, dc, false, false)?,
                (true, true) => gemm(dc, &sa, true, true)?,
            })
        } else {
            None
        };
        Ok(vec![da, db])
    });
    Ok(out)
}

/// A·B.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    gemm(a, b, false, false)
}

/// Aᵀ·B.
pub fn matmul_tn(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    gemm(a, b, true, false)
}

/// A·Bᵀ.
pub fn matmul_nt(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    gemm(a, b, false, true)
}
