//! Symmetric eigenvalues (parallel Jacobi on the GPU) and the effective rank (RankMe) against an f64
//! reference: a plain cyclic Jacobi in f64, written here.
//!
//! Eigenvalues are compared sorted, at 1e-4 of the largest |eigenvalue| (an absolute tolerance: an
//! f32 eigensolver, like any backward-stable one, errs by a few epsilons times ||A||, so small
//! eigenvalues have no relative accuracy).

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{DType, Tensor};
use common::{as_f32_values, rand_vec, to_f32, upload};

/// The eigenvalues of a symmetric d x d matrix by cyclic (row-by-row) Jacobi in f64, unsorted.
fn jacobi_f64(a: &[f64], d: usize) -> Vec<f64> {
    let mut a = a.to_vec();
    for _sweep in 0..100 {
        let all: f64 = a.iter().map(|v| v * v).sum();
        let off: f64 = (0..d * d)
            .filter(|i| i / d != i % d)
            .map(|i| a[i] * a[i])
            .sum();
        if off <= 1e-30 * all {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = if theta >= 0.0 {
                    1.0 / (theta + (theta * theta + 1.0).sqrt())
                } else {
                    -1.0 / (-theta + (theta * theta + 1.0).sqrt())
                };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for j in 0..d {
                    let (ap, aq) = (a[p * d + j], a[q * d + j]);
                    a[p * d + j] = c * ap - s * aq;
                    a[q * d + j] = s * ap + c * aq;
                }
                for i in 0..d {
                    let (ap, aq) = (a[i * d + p], a[i * d + q]);
                    a[i * d + p] = c * ap - s * aq;
                    a[i * d + q] = s * ap + c * aq;
                }
            }
        }
    }
    (0..d).map(|i| a[i * d + i]).collect()
}

fn sorted_descending(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| b.total_cmp(a));
    v
}

/// A random symmetric matrix, its entries exactly representable in f32.
fn random_symmetric(rng: &mut Rng, d: usize) -> Vec<f64> {
    let b = rand_vec(rng, d * d);
    let mut a = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            a[i * d + j] = 0.5 * (b[i * d + j] + b[j * d + i]);
        }
    }
    as_f32_values(&a)
}

/// A random orthogonal d x d matrix (Gram–Schmidt of a Gaussian one), rows orthonormal.
fn random_orthogonal(rng: &mut Rng, d: usize) -> Vec<f64> {
    let mut q: Vec<f64> = (0..d * d).map(|_| rng.normal()).collect();
    for i in 0..d {
        for j in 0..i {
            let dot: f64 = (0..d).map(|k| q[i * d + k] * q[j * d + k]).sum();
            for k in 0..d {
                q[i * d + k] -= dot * q[j * d + k];
            }
        }
        let norm = (0..d).map(|k| q[i * d + k].powi(2)).sum::<f64>().sqrt();
        for k in 0..d {
            q[i * d + k] /= norm;
        }
    }
    q
}

/// Q · diag(values) · Qᵀ, rounded to f32 values.
fn with_spectrum(q: &[f64], values: &[f64]) -> Vec<f64> {
    let d = values.len();
    let mut a = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            a[i * d + j] = (0..d)
                .map(|k| q[i * d + k] * values[k] * q[j * d + k])
                .sum();
        }
    }
    // Symmetric after rounding too: round one triangle and mirror it.
    for i in 0..d {
        for j in 0..i {
            a[i * d + j] = a[j * d + i];
        }
    }
    as_f32_values(&a)
}

/// Uploads `a`, runs the GPU solver, checks the input is intact and the output is descending, and
/// compares with `expected` (any order) at `rel` of the largest |eigenvalue|.
fn check_eigenvalues(what: &str, a: &[f64], d: usize, expected: &[f64], rel: f64) {
    let e = common::engine();
    let t = upload(&e, a, &[d, d], false);
    let out = ops::symmetric_eigenvalues(&t).unwrap();
    assert_eq!(out.shape(), &[d], "{what}: shape");
    let got = out.to_vec().unwrap();
    assert_eq!(t.to_vec().unwrap(), to_f32(a), "{what}: the input changed");
    assert!(
        got.windows(2).all(|w| w[0] >= w[1]),
        "{what}: not descending: {got:?}"
    );
    let want = sorted_descending(expected.to_vec());
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= rel * scale,
            "{what}: eigenvalue {i}: gpu {g} vs reference {w} (scale {scale})"
        );
    }
}

#[test]
fn random_symmetric_matrices_match_f64_jacobi() {
    let mut rng = Rng::new(71);
    // On llvmpipe, d = 124 needs more loop iterations than one launch may run there, so its solve
    // is split over launches mid-sweep; d ≤ 33 runs in one launch everywhere.
    for d in [1, 2, 7, 33, 100, 124] {
        let a = random_symmetric(&mut rng, d);
        let want = jacobi_f64(&a, d);
        check_eigenvalues(&format!("random {d}x{d}"), &a, d, &want, 1e-4);
    }
}

#[test]
fn a_diagonal_matrix_gives_its_diagonal() {
    let values = [3.0, -1.0, 2.5, 0.5, -7.0, 0.0, 2.5, 1e-3, -0.25];
    let d = values.len();
    let mut a = vec![0.0; d * d];
    for (i, v) in values.iter().enumerate() {
        a[i * d + i] = *v;
    }
    check_eigenvalues("diagonal", &a, d, &values, 1e-6);
}

#[test]
fn the_largest_side_runs_on_an_already_diagonal_matrix() {
    // d = 1024 converges before the first rotation (a full solve is too slow on software Vulkan),
    // which still checks the copy, the scaling and the descending sort at the largest size.
    let d = ops::eigen::MAX_EIGEN_DIM;
    let values: Vec<f64> = (0..d).map(|i| ((i * 37) % d) as f64 - 300.0).collect();
    let mut a = vec![0.0; d * d];
    for (i, v) in values.iter().enumerate() {
        a[i * d + i] = *v;
    }
    check_eigenvalues("diagonal 1024", &a, d, &values, 1e-6);
}

#[test]
fn repeated_eigenvalues_are_found() {
    let mut rng = Rng::new(72);
    let values = [2.0, 2.0, 2.0, -1.0, -1.0, 5.0, 0.5, 2.0, 0.5, 0.5, -1.0];
    let q = random_orthogonal(&mut rng, values.len());
    let a = with_spectrum(&q, &values);
    check_eigenvalues("repeated", &a, values.len(), &values, 1e-4);
}

#[test]
fn a_rank_deficient_gram_matrix_has_zero_eigenvalues() {
    // G = Zᵀ Z for Z [3, 10]: rank 3, seven eigenvalues zero.
    let mut rng = Rng::new(73);
    let (n, d) = (3, 10);
    let z = rand_vec(&mut rng, n * d);
    let mut g = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            g[i * d + j] = (0..n).map(|k| z[k * d + i] * z[k * d + j]).sum();
        }
    }
    let g = as_f32_values(&g);
    let want = jacobi_f64(&g, d);
    assert_eq!(
        sorted_descending(want.clone())
            .iter()
            .filter(|v| v.abs() < 1e-6)
            .count(),
        7
    );
    check_eigenvalues("rank-deficient Gram", &g, d, &want, 1e-4);
}

/// RankMe in f64 from the singular values of z [n, d]: the square roots of the eigenvalues of zᵀz,
/// keeping the min(n, d) largest (the rest are zero by rank), p_k = σ_k / Σσ + 1e-7.
fn effective_rank_f64(z: &[f64], n: usize, d: usize) -> f64 {
    let mut g = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            g[i * d + j] = (0..n).map(|k| z[k * d + i] * z[k * d + j]).sum();
        }
    }
    let sigma: Vec<f64> = sorted_descending(jacobi_f64(&g, d))
        .into_iter()
        .take(n.min(d))
        .map(|l| l.max(0.0).sqrt())
        .collect();
    let total: f64 = sigma.iter().sum();
    let h: f64 = sigma
        .iter()
        .map(|s| {
            let p = s / total + 1e-7;
            -p * p.ln()
        })
        .sum();
    h.exp()
}

fn gpu_effective_rank(z: &[f64], n: usize, d: usize) -> f64 {
    let e = common::engine();
    let t = upload(&e, z, &[n, d], false);
    let out = ops::effective_rank(&t).unwrap();
    assert_eq!(out.shape(), &[1]);
    out.item().unwrap() as f64
}

#[test]
fn effective_rank_of_random_embeddings_matches_f64() {
    let mut rng = Rng::new(74);
    // [37, 9] takes zᵀz (D ≤ N), [7, 33] takes z·zᵀ (D > N).
    for (n, d) in [(37, 9), (7, 33), (12, 12)] {
        let z = as_f32_values(&rand_vec(&mut rng, n * d));
        let want = effective_rank_f64(&z, n, d);
        let got = gpu_effective_rank(&z, n, d);
        assert!(
            (got - want).abs() <= 1e-3 * want,
            "effective rank of [{n}, {d}]: gpu {got} vs reference {want}"
        );
    }
}

#[test]
fn identical_rows_give_rank_one() {
    let mut rng = Rng::new(75);
    for (n, d) in [(40, 9), (6, 33), (64, 128), (50, 2)] {
        let row = rand_vec(&mut rng, d);
        let z: Vec<f64> = (0..n).flat_map(|_| row.iter().copied()).collect();
        let got = gpu_effective_rank(&z, n, d);
        assert!(
            (got - 1.0).abs() < 1e-3,
            "identical rows [{n}, {d}]: effective rank {got}"
        );
    }
}

#[test]
fn equally_scaled_orthonormal_rows_give_full_rank() {
    let mut rng = Rng::new(76);
    let big = 12;
    let q = random_orthogonal(&mut rng, big);
    // [5, 12]: five orthonormal rows (z·zᵀ = 9 I); [12, 5]: five orthonormal columns (zᵀz = 9 I).
    let rows: Vec<f64> = q[..5 * big].iter().map(|v| 3.0 * v).collect();
    let mut cols = vec![0.0; big * 5];
    for i in 0..5 {
        for j in 0..big {
            cols[j * 5 + i] = rows[i * big + j];
        }
    }
    for (z, n, d) in [(rows, 5, big), (cols, big, 5)] {
        let got = gpu_effective_rank(&as_f32_values(&z), n, d);
        assert!(
            (got - 5.0).abs() < 5e-3,
            "orthonormal [{n}, {d}]: effective rank {got}"
        );
    }
}

#[test]
fn diagnostics_stay_off_the_tape() {
    let e = common::engine();
    let mut rng = Rng::new(77);
    let z = upload(&e, &rand_vec(&mut rng, 8 * 5), &[8, 5], true);
    let r = ops::effective_rank(&z).unwrap();
    assert!(!r.requires_grad());
    let a = upload(&e, &random_symmetric(&mut rng, 4), &[4, 4], true);
    let l = ops::symmetric_eigenvalues(&a).unwrap();
    assert!(!l.requires_grad());
    assert_eq!(e.tape_len(), 0);
    assert!(
        e.grad_enabled(),
        "effective_rank must restore the gradient mode"
    );
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let e = common::engine();
    let shape_err = |r: byol::Result<Tensor>| matches!(r, Err(byol::Error::Shape(_)));
    let t = |shape: &[usize]| Tensor::empty(&e, shape, DType::F32).unwrap();
    assert!(shape_err(ops::symmetric_eigenvalues(&t(&[3, 4]))));
    assert!(shape_err(ops::symmetric_eigenvalues(&t(&[4]))));
    assert!(shape_err(ops::symmetric_eigenvalues(&t(&[2, 2, 2]))));
    assert!(shape_err(ops::symmetric_eigenvalues(&t(&[0, 0]))));
    assert!(shape_err(ops::symmetric_eigenvalues(&t(&[1025, 1025]))));
    assert!(shape_err(ops::effective_rank(&t(&[5]))));
    assert!(shape_err(ops::effective_rank(&t(&[3, 4, 5]))));
    assert!(shape_err(ops::effective_rank(&t(&[0, 4]))));
    assert!(shape_err(ops::effective_rank(&t(&[1100, 1030]))));
    let labels = Tensor::from_u32(&e, &[0, 1, 2, 3], &[2, 2]).unwrap();
    assert!(ops::symmetric_eigenvalues(&labels).is_err());
    assert!(ops::effective_rank(&labels).is_err());
}

/// The collapse diagnostic centers first: rows sharing a large offset plus variation along k
/// orthogonal directions read as rank ≈ k (uncentered RankMe would see ≈ 1, the offset), and rows
/// that all coincide read as exactly 1.
#[test]
fn centered_effective_rank_ignores_a_common_offset() {
    use byol::ssl::centered_effective_rank;
    let e = common::engine();
    let (n, d, k) = (40usize, 16usize, 3usize);
    let mut rng = Rng::new(11);
    let mut z = vec![0.0f64; n * d];
    for (r, row) in z.chunks_mut(d).enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = 50.0 + j as f64; // the common offset
        }
        // Equal spread along k axes: ±1 patterns that are balanced over the rows.
        for (axis, v) in row.iter_mut().take(k).enumerate() {
            *v += if (r >> axis) & 1 == 0 { 1.0 } else { -1.0 };
        }
        row[d - 1] += 1e-4 * rng.normal(); // a trace of noise
    }
    let t = upload(&e, &z, &[n, d], false);
    let centered = centered_effective_rank(&t).unwrap();
    assert!(
        (centered - k as f64).abs() < 0.05,
        "centered rank {centered}"
    );
    let raw = ops::effective_rank(&t).unwrap().item().unwrap() as f64;
    assert!(
        raw < 1.5,
        "uncentered rank {raw} is dominated by the offset"
    );

    let same: Vec<f64> = (0..n * d).map(|i| 3.0 + (i % d) as f64).collect();
    let t = upload(&e, &same, &[n, d], false);
    assert_eq!(centered_effective_rank(&t).unwrap(), 1.0);
}
