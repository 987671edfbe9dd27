//! Weighted k-nearest-neighbour votes (shaders/knn.wgsl), the kNN monitor of InstDisc (Wu et al.,
//! 2018) as solo-learn runs it: every query's k most similar bank images vote for their classes
//! with weight exp(s / T). Evaluation only: nothing here is differentiable or recorded on the tape.
//!
//! [`knn_votes`] takes a similarity matrix; [`knn_class_votes`] builds it from features (cosine:
//! rows L2-normalized, one A·Bᵀ product per block of queries) and returns the votes on the CPU.

use super::l2_normalize::for_row_windows;
use super::matmul::gemm;
use super::{check_f32, check_loop_budget, chunks};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Queries per similarity block in [`knn_class_votes`]: bounds its scratch to this many rows of the
/// bank (16M floats, 64 MiB, for a bank of 65,536).
const SIMILARITY_BLOCK_FLOATS: usize = 1 << 24;
/// Rows one launch covers in grid y (workgroups per dimension are at most 65,535).
const ROWS_PER_GRID_ROW: usize = 65_535;
/// Classes one pass over the bank accumulates (shaders/knn.wgsl `CLASS_CHUNK`).
const CLASS_CHUNK: usize = 16;

/// Votes `[rows, classes]` of the `k` largest similarities of each row of `sims` `[rows, n]`, each
/// for the class `labels[j]` of its bank image with weight exp((s − 1) / temperature) (exp(s / T)
/// scaled by the row-independent exp(−1 / T), so it cannot overflow for cosine similarities).
/// Similarities tied with the k-th share the remaining votes equally. `k` above n is clamped to n.
pub fn knn_votes(
    sims: &Tensor,
    labels: &Tensor,
    classes: usize,
    k: usize,
    temperature: f32,
) -> Result<Tensor> {
    check_f32("knn_votes", &[sims])?;
    let (rows, n) = match *sims.shape() {
        [r, n] if r > 0 && n > 0 => (r, n),
        _ => {
            return Err(Error::Shape(format!(
                "knn_votes: expected non-empty similarities [queries, bank], got {:?}",
                sims.shape()
            )))
        }
    };
    if labels.dtype() != DType::U32 || labels.shape() != [n] {
        return Err(Error::Shape(format!(
            "knn_votes: labels {labels:?} must be [{n}] u32 class indices of the bank"
        )));
    }
    if classes == 0 || k == 0 || !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::Invalid(format!(
            "knn_votes: needs at least one class ({classes}), k >= 1 ({k}) and a positive \
             temperature ({temperature})"
        )));
    }
    let engine = sims.engine();
    let per_pass = n.div_ceil(128) as u64;
    let class_passes = classes.div_ceil(CLASS_CHUNK) as u64;
    check_loop_budget(
        engine,
        "knn_votes",
        (4 + class_passes) * per_pass + 4 * 256 + class_passes * 160,
        "use a smaller bank (fewer evaluation images) or fewer classes",
    )?;
    let votes = Tensor::empty(engine, &[rows, classes], DType::F32)?;
    for_row_windows(
        engine,
        "knn_votes",
        rows,
        &[(sims, n), (labels, 0), (&votes, classes)],
        |_, r, slices, bases| {
            let params = KnnParams {
                rows: r as u32,
                n: n as u32,
                classes: classes as u32,
                k: k.min(n) as u32,
                inv_t: 1.0 / temperature,
                sims_base: bases[0],
                votes_base: bases[2],
            };
            let grid = [
                r.min(ROWS_PER_GRID_ROW) as u32,
                r.div_ceil(ROWS_PER_GRID_ROW) as u32,
                1,
            ];
            engine.dispatch("knn", "weighted_votes", &[], &params, slices, grid)
        },
    )?;
    Ok(votes)
}

/// The weighted votes `[m, classes]` (row-major, read back) each query `[m, d]` gets from its `k`
/// nearest `bank` `[n, d]` rows by cosine similarity (rows are L2-normalized first), with bank
/// labels in `0..classes`; a query's class is its largest vote. Non-finite votes are an error.
pub fn knn_class_votes(
    queries: &Tensor,
    bank: &Tensor,
    bank_labels: &Tensor,
    classes: usize,
    k: usize,
    temperature: f32,
) -> Result<Vec<f32>> {
    check_f32("knn_class_votes", &[queries, bank])?;
    let (m, n) = match (queries.shape(), bank.shape()) {
        ([m, d], [n, e]) if d == e && *m > 0 && *n > 0 && *d > 0 => (*m, *n),
        (q, b) => {
            return Err(Error::Shape(format!(
                "knn_class_votes: queries {q:?} and bank {b:?} must be non-empty [m, d] and [n, d]"
            )))
        }
    };
    let engine = queries.engine();
    let _no_grad = engine.no_grad();
    let q = super::l2_normalize(queries)?;
    let b = super::l2_normalize(bank)?;
    let block = (SIMILARITY_BLOCK_FLOATS / n).max(1);
    let mut all = Vec::with_capacity(m * classes);
    for (r0, r) in chunks(m, block) {
        let sims = gemm(&super::narrow0(&q, r0, r)?, &b, false, true)?;
        let votes = knn_votes(&sims, bank_labels, classes, k, temperature)?.to_vec()?;
        if votes.iter().any(|v| !v.is_finite()) {
            return Err(Error::Invalid(
                "knn_class_votes: a vote is not finite (NaN or infinite features)".into(),
            ));
        }
        all.extend(votes);
    }
    Ok(all)
}

crate::kernels::kernel_params! {
    /// shaders/knn.wgsl: `rows` queries of this launch against a bank of `n`, `k` voters,
    /// 1 / temperature, and the launch's element offsets into its similarity and vote bindings.
    pub struct KnnParams {
        rows: u32,
        n: u32,
        classes: u32,
        k: u32,
        inv_t: f32,
        sims_base: u32,
        votes_base: u32,
    }
}
