//! Eigenvalues of symmetric matrices and the effective rank of embeddings (shaders/eigen.wgsl), a
//! partial-collapse diagnostic: RankMe (Garrido et al., 2023). Diagnostics only: nothing here is
//! differentiable or recorded on the tape.
//!
//! The eigensolver is cyclic parallel Jacobi run by ONE workgroup of 256 invocations that loops over
//! sweeps and rounds with barriers in between, in ONE dispatch on a GPU. That suits matrices of a few
//! hundred rows (embedding widths): it uses a single compute unit and a sweep costs d³ work, so a
//! d = 1024 matrix likely takes on the order of a second even on a fast GPU (estimated, not
//! measured; a long dispatch can trip a desktop driver's watchdog). Sides above [`MAX_EIGEN_DIM`]
//! are refused.
//!
//! Software Vulkan (llvmpipe) silently ends every loop of a shader invocation once all its loops
//! together have run 65535 iterations (gallivm's `LP_MAX_TGSI_LOOP_ITERATIONS`), which a solve of
//! d ≳ 120 exceeds. On software adapters the schedule of rounds is therefore split over several
//! one-workgroup launches, each estimated to stay under [`SOFTWARE_LOOP_BUDGET`] iterations; a
//! small state buffer carries the convergence flag between them.

use super::check_f32;
use super::matmul::gemm;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Largest matrix side: the kernel keeps one rotation per pair of a round in workgroup memory.
pub const MAX_EIGEN_DIM: usize = 1024;
/// Sweeps before the solver gives up and returns the current diagonal (about 10 are typical).
const MAX_SWEEPS: u32 = 40;
/// Loop iterations one launch may run per invocation on software adapters (llvmpipe stops at 65535).
pub const SOFTWARE_LOOP_BUDGET: u64 = super::LOOP_BUDGET as u64;
/// Converged when ||off-diagonal||_F <= OFF_DIAGONAL_TOL * ||A||_F.
const OFF_DIAGONAL_TOL: f32 = 1e-7;
/// RankMe's epsilon, added to every normalized singular value: p_k = σ_k / Σσ + 1e-7.
pub const RANKME_EPS: f32 = 1e-7;
/// Gram eigenvalues at or below `max(K, 32) · ε_f32 · λ_max` count as zero. The f32 Gram matrix and
/// the f32 eigensolver leave rounding noise of one or two ε_f32·λ_max in every eigenvalue (measured:
/// at most 2.3e-7·λ_max for totally collapsed embeddings up to K = 256); after the square root
/// that noise would read as singular values of about 4e-4·σ_max and lift the rank of a totally
/// collapsed embedding from 1 to about 1.6 at K = 128.
const NOISE_FLOOR_MIN_DIMS: usize = 32;

/// The `d` eigenvalues of a symmetric `[d, d]` f32 matrix, sorted descending, as a `[d]` tensor.
///
/// Only the symmetric part matters in exact arithmetic, but the kernel reads both triangles: pass a
/// symmetric matrix. Accurate to a few f32 epsilons times max |λ| (absolute, not relative: small
/// eigenvalues of an ill-conditioned matrix have large relative errors). One workgroup does all the
/// work (see the module docs): meant for d in the hundreds, at most [`MAX_EIGEN_DIM`]. Stops when
/// ||off-diagonal||_F ≤ 1e-7·||A||_F or after 40 sweeps.
pub fn symmetric_eigenvalues(a: &Tensor) -> Result<Tensor> {
    check_f32("symmetric_eigenvalues", &[a])?;
    let d = match *a.shape() {
        [r, c] if r == c && r > 0 => r,
        _ => {
            return Err(Error::Shape(format!(
                "symmetric_eigenvalues: expected a square, non-empty [d, d] matrix, got {:?}",
                a.shape()
            )))
        }
    };
    check_side("symmetric_eigenvalues", d)?;
    let engine = a.engine();
    let work = Tensor::empty(engine, &[d, d], DType::F32)?;
    let out = Tensor::empty(engine, &[d], DType::F32)?;
    let state = Tensor::empty(engine, &[3], DType::F32)?;
    let budget = if engine.gpu().is_software() {
        SOFTWARE_LOOP_BUDGET
    } else {
        u64::MAX
    };
    let launches = plan_launches(d, budget);
    let count = launches.len();
    for (i, (step0, step1)) in launches.into_iter().enumerate() {
        let params = EigenParams {
            n: d as u32,
            m: (d + d % 2) as u32,
            step0,
            step1,
            first: (i == 0) as u32,
            last: (i + 1 == count) as u32,
            tol: OFF_DIAGONAL_TOL,
            ..EigenParams::default()
        };
        engine.dispatch(
            "eigen",
            "jacobi",
            &[],
            &params,
            &[a.slice(), work.slice(), out.slice(), state.slice()],
            [1, 1, 1],
        )?;
    }
    Ok(out)
}

/// Splits the solve's MAX_SWEEPS · (m − 1) rounds into step ranges, one per launch, each estimated
/// to run at most `budget` loop iterations per invocation (the kernel's loops, upper bounds, plus
/// two per loop entry); every launch also reserves the first launch's copy and the last's sort.
fn plan_launches(d: usize, budget: u64) -> Vec<(u32, u32)> {
    let loop_cost = |iters: usize| iters as u64 + 2;
    let per_thread = |work: usize| work.div_ceil(256);
    let (m, nn) = (d + d % 2, d * d);
    let reduce = loop_cost(8);
    let rounds = m - 1;
    let fixed = 2 * loop_cost(per_thread(nn))
        + 2 * reduce
        + loop_cost(per_thread(d))
        + per_thread(d) as u64 * loop_cost(d)
        + 2;
    let check = loop_cost(per_thread(nn)) + reduce;
    let round = 1 + loop_cost(per_thread(m / 2)) + 2 * loop_cost(per_thread(m / 2 * d));
    let total = MAX_SWEEPS as usize * rounds;
    let mut launches = Vec::new();
    let mut step0 = 0;
    while step0 < total {
        let mut cost = fixed;
        let mut step1 = step0;
        while step1 < total {
            let c = round + if step1 % rounds == 0 { check } else { 0 };
            if step1 > step0 && cost + c > budget {
                break;
            }
            cost += c;
            step1 += 1;
        }
        launches.push((step0 as u32, step1 as u32));
        step0 = step1;
    }
    launches
}

/// The effective rank of embeddings `z` `[N, D]` (RankMe), a `[1]` tensor between 1 (every row the
/// same: total collapse) and min(N, D).
///
/// With σ_k the K = min(N, D) singular values of z: p_k = σ_k / Σσ + 1e-7 ([`RANKME_EPS`]) and the
/// rank is exp(−Σ p_k log p_k). The σ_k come from the Gram matrix of the smaller side (zᵀz when
/// D ≤ N, z·zᵀ otherwise) formed with matmul: σ_k = sqrt(max(λ_k, 0)), with eigenvalues below
/// max(K, 32)·ε_f32·λ_max (rounding noise of the f32 Gram) counted as zero. Squaring makes singular
/// values under about sqrt(K·ε_f32)·σ_max unresolvable; they contribute little to the rank. Not
/// differentiable (runs under no-grad); needs K ≤ [`MAX_EIGEN_DIM`].
pub fn effective_rank(z: &Tensor) -> Result<Tensor> {
    check_f32("effective_rank", &[z])?;
    let (n, d) = match *z.shape() {
        [n, d] if n > 0 && d > 0 => (n, d),
        _ => {
            return Err(Error::Shape(format!(
                "effective_rank: expected non-empty embeddings [N, D], got {:?}",
                z.shape()
            )))
        }
    };
    let k = n.min(d);
    check_side("effective_rank", k)?;
    let engine = z.engine();
    let _no_grad = engine.no_grad();
    let gram = if d <= n {
        gemm(z, z, true, false)?
    } else {
        gemm(z, z, false, true)?
    };
    let eigenvalues = symmetric_eigenvalues(&gram)?;
    let out = Tensor::empty(engine, &[1], DType::F32)?;
    let params = EigenParams {
        n: k as u32,
        noise: k.max(NOISE_FLOOR_MIN_DIMS) as f32 * f32::EPSILON,
        eps: RANKME_EPS,
        ..EigenParams::default()
    };
    engine.dispatch(
        "eigen",
        "effective_rank",
        &[],
        &params,
        &[eigenvalues.slice(), out.slice()],
        [1, 1, 1],
    )?;
    Ok(out)
}

crate::kernels::kernel_params! {
    /// shaders/eigen.wgsl: jacobi takes a d x d matrix (m = d rounded up to even for the
    /// round-robin pairing), its sweep steps [step0, step1), and whether this launch starts or ends
    /// the solve; effective_rank takes n eigenvalues, the noise floor and the entropy's eps.
    pub struct EigenParams {
        n: u32,
        m: u32,
        step0: u32,
        step1: u32,
        first: u32,
        last: u32,
        tol: f32,
        noise: f32,
        eps: f32,
    }
}

fn check_side(op: &str, d: usize) -> Result<()> {
    if d > MAX_EIGEN_DIM {
        return Err(Error::Shape(format!(
            "{op}: a {d} x {d} eigenproblem exceeds the single-workgroup Jacobi solver's limit of \
             {MAX_EIGEN_DIM}"
        )));
    }
    Ok(())
}
