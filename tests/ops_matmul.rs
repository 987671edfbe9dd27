//! Gradient checks of A·B, Aᵀ·B, A·Bᵀ (and Aᵀ·Bᵀ), 2-D and batched, for every kernel (scalar and
//! vec4 barrier-free blocks in each block and workgroup shape, workgroup-memory tiles, operands
//! packed into textures), at sizes that are not multiples of any tile.

mod common;
use byol::ops::matmul::gemm;
use byol::rng::Rng;
use byol::{Engine, EngineOptions, MatmulVariant};
use common::gemm_ref::cpu_gemm;
use common::{rand_vec, OpCheck};

fn transpose(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = x[r * cols + c];
        }
    }
    t
}

#[allow(clippy::too_many_arguments)] // the eight numbers that define one product
fn check_gemm(
    e: &Engine,
    rng: &mut Rng,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
) {
    let a_shape2 = if ta { [k, m] } else { [m, k] };
    let b_shape2 = if tb { [n, k] } else { [k, n] };
    let (a_shape, b_shape): (Vec<usize>, Vec<usize>) = if batch > 1 {
        (
            vec![batch, a_shape2[0], a_shape2[1]],
            vec![batch, b_shape2[0], b_shape2[1]],
        )
    } else {
        (a_shape2.to_vec(), b_shape2.to_vec())
    };
    let forward = move |x: &[Vec<f64>]| -> Vec<f64> {
        (0..batch)
            .flat_map(|bi| {
                let a = &x[0][bi * m * k..(bi + 1) * m * k];
                let b = &x[1][bi * k * n..(bi + 1) * k * n];
                cpu_gemm(a, b, m, n, k, ta, tb)
            })
            .collect()
    };
    let backward = move |x: &[Vec<f64>], dy: &[f64]| -> Vec<Vec<f64>> {
        let mut da = Vec::new();
        let mut db = Vec::new();
        for bi in 0..batch {
            let a = &x[0][bi * m * k..(bi + 1) * m * k];
            let b = &x[1][bi * k * n..(bi + 1) * k * n];
            let dc = &dy[bi * m * n..(bi + 1) * m * n];
            // With A' = op(A) (m x k) and B' = op(B) (k x n): dA' = dC·B'ᵀ, dB' = A'ᵀ·dC.
            let a_plain = if ta { transpose(a, k, m) } else { a.to_vec() };
            let b_plain = if tb { transpose(b, n, k) } else { b.to_vec() };
            let da_plain = cpu_gemm(dc, &b_plain, m, k, n, false, true);
            let db_plain = cpu_gemm(&a_plain, dc, k, n, m, true, false);
            da.extend(if ta {
                transpose(&da_plain, m, k)
            } else {
                da_plain
            });
            db.extend(if tb {
                transpose(&db_plain, k, n)
            } else {
                db_plain
            });
        }
        vec![da, db]
    };
    let name = format!("gemm b{batch} {m}x{n}x{k} ta={ta} tb={tb}");
    OpCheck {
        name: &name,
        inputs: vec![
            (rand_vec(rng, batch * m * k), a_shape),
            (rand_vec(rng, batch * k * n), b_shape),
        ],
        grad: vec![true, true],
        cpu_forward: &forward,
        cpu_backward: &backward,
        gpu_forward: &|t| gemm(&t[0], &t[1], ta, tb),
        rel: 1e-4,
    }
    .run_on(e, rng);
}

const SHAPES: &[(usize, usize, usize, usize)] = &[
    (1, 1, 1, 1),
    (1, 7, 33, 257),
    (1, 33, 1, 7),
    (1, 65, 33, 9),
    (1, 257, 7, 33),
    (3, 7, 33, 9),
    // Multiples of 4 on the contiguous axes: the vec4 barrier-free kernel, with edge blocks.
    (1, 4, 4, 4),
    (1, 36, 20, 12),
    (1, 132, 68, 8),
    (1, 12, 1100, 8), // more than one 1024-column workgroup of vec4-rows-wide
    (2, 8, 12, 4),
];

fn all_shapes(variant: MatmulVariant) {
    let e = common::engine_variant(variant);
    let mut rng = Rng::new(21);
    for &(batch, m, n, k) in SHAPES {
        for ta in [false, true] {
            for tb in [false, true] {
                check_gemm(&e, &mut rng, batch, m, n, k, ta, tb);
            }
        }
    }
}

#[test]
fn blocked_kernel_matches_reference() {
    all_shapes(MatmulVariant::Blocked);
}

#[test]
fn tiled_kernel_matches_reference() {
    all_shapes(MatmulVariant::Tiled);
}

#[test]
fn vec4_wide_blocks_match_reference() {
    all_shapes(MatmulVariant::Vec4Wide);
}

#[test]
fn vec4_row_workgroups_match_reference() {
    all_shapes(MatmulVariant::Vec4Rows);
}

#[test]
fn vec4_row_workgroups_with_wide_blocks_match_reference() {
    all_shapes(MatmulVariant::Vec4RowsWide);
}

// The texture kernels pack any operands (transposed, unaligned, offset windows), so every shape
// runs them; the adapter must have them (the tests fail rather than fall back silently).
fn texture_shapes(variant: MatmulVariant) {
    let e = common::engine_variant(variant);
    assert!(
        e.has_operand_textures(),
        "{} has no rgba32float storage textures",
        e.adapter_name()
    );
    all_shapes(variant);
}

#[test]
fn texture_kernel_matches_reference() {
    texture_shapes(MatmulVariant::Texture);
}

#[test]
fn texture_wide_blocks_match_reference() {
    texture_shapes(MatmulVariant::TextureWide);
}

#[test]
fn texture_row_workgroups_with_wide_blocks_match_reference() {
    texture_shapes(MatmulVariant::TextureRowsWide);
}

#[test]
fn operands_larger_than_a_binding_are_split() {
    // A 4 KiB binding limit forces the row split (A·B) and the K split with accumulation (Aᵀ·B).
    for variant in [
        MatmulVariant::Blocked,
        MatmulVariant::Tiled,
        MatmulVariant::Vec4Wide,
        MatmulVariant::Vec4Rows,
        MatmulVariant::Vec4RowsWide,
        MatmulVariant::Texture,
        MatmulVariant::TextureWide,
        MatmulVariant::TextureRowsWide,
    ] {
        let e = common::engine_with(EngineOptions {
            binding_limit: Some(4096),
            matmul: variant,
            ..Default::default()
        });
        let mut rng = Rng::new(22);
        check_gemm(&e, &mut rng, 1, 300, 7, 33, false, false);
        check_gemm(&e, &mut rng, 1, 9, 7, 300, true, false);
        check_gemm(&e, &mut rng, 1, 300, 8, 32, false, false);
        check_gemm(&e, &mut rng, 1, 12, 8, 300, true, false);
    }
}

#[test]
fn shapes_that_do_not_chain_are_errors() {
    let e = common::engine();
    let a = byol::Tensor::zeros(&e, &[3, 4]).unwrap();
    let b = byol::Tensor::zeros(&e, &[5, 6]).unwrap();
    assert!(matches!(
        byol::ops::matmul(&a, &b),
        Err(byol::Error::Shape(_))
    ));
    let v = byol::Tensor::zeros(&e, &[4]).unwrap();
    assert!(matches!(
        byol::ops::matmul(&a, &v),
        Err(byol::Error::Shape(_))
    ));
}
