//! Weighted kNN votes (shaders/knn.wgsl) against an f64 reference that sorts each row, on awkward
//! sizes, with ties at the k-th similarity, on a NaN-poisoned engine; and the classifier built on
//! them from features (cosine similarities) against the same reference.
//!
//! Not differentiable (an evaluation), so there is no backward to check.

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::Tensor;
use common::{engine, rand_vec, to_f32};

/// Votes of one row: the k largest similarities (f64 of the f32 values), ties with the k-th
/// sharing what is left equally, each weighted exp((s - 1) / t) for its label.
fn votes_ref(sims: &[f32], labels: &[u32], classes: usize, k: usize, t: f64) -> Vec<f64> {
    let k = k.min(sims.len());
    let mut sorted: Vec<f64> = sims.iter().map(|&s| s as f64).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let kth = sorted[k - 1];
    let above = sorted.iter().filter(|&&s| s > kth).count();
    let ties = sorted.iter().filter(|&&s| s == kth).count();
    let share = (k - above) as f64 / ties as f64;
    let mut v = vec![0.0; classes];
    for (&s, &y) in sims.iter().zip(labels) {
        let s = s as f64;
        if s >= kth {
            let w = ((s - 1.0) / t).exp();
            v[y as usize] += if s == kth { w * share } else { w };
        }
    }
    v
}

fn random_labels(rng: &mut Rng, n: usize, classes: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(classes) as u32).collect()
}

/// Compares every row's votes at 1e-4 of that row's largest vote (small votes are sums of terms
/// exp((s - 1) / T) many orders below the largest: only the largest ones decide the argmax).
fn check_votes(rows: usize, n: usize, classes: usize, k: usize, t: f32, quantize: Option<f64>) {
    let e = engine();
    let mut rng = Rng::new((rows * 1000 + n * 10 + classes + k) as u64);
    let mut sims: Vec<f32> = to_f32(&rand_vec(&mut rng, rows * n));
    if let Some(q) = quantize {
        // Few distinct values: many similarities tie with the k-th.
        for s in &mut sims {
            *s = ((*s as f64 / q).round() * q) as f32;
        }
    }
    let labels = random_labels(&mut rng, n, classes);
    let st = Tensor::from_slice(&e, &sims, &[rows, n]).unwrap();
    let lt = Tensor::from_u32(&e, &labels, &[n]).unwrap();
    let got = ops::knn_votes(&st, &lt, classes, k, t)
        .unwrap()
        .to_vec()
        .unwrap();
    for r in 0..rows {
        let want = votes_ref(&sims[r * n..(r + 1) * n], &labels, classes, k, t as f64);
        let scale = want.iter().cloned().fold(0.0, f64::max).max(1e-30);
        for c in 0..classes {
            let g = got[r * classes + c] as f64;
            assert!(
                (g - want[c]).abs() <= 1e-4 * scale,
                "rows {rows} n {n} classes {classes} k {k} T {t}: row {r} class {c}: gpu {g}, \
                 reference {}",
                want[c]
            );
        }
    }
}

#[test]
fn votes_match_reference_on_awkward_sizes() {
    check_votes(1, 1, 1, 1, 0.07, None);
    check_votes(7, 7, 3, 1, 0.07, None);
    check_votes(7, 33, 5, 7, 0.5, None);
    check_votes(33, 257, 10, 200, 0.07, None);
    // k above the bank: every image votes.
    check_votes(7, 33, 2, 200, 0.07, None);
    // 33 classes: three passes of 16 over the bank.
    check_votes(7, 257, 33, 20, 0.2, None);
}

#[test]
fn ties_at_the_kth_similarity_share_the_remaining_votes() {
    check_votes(7, 257, 10, 33, 0.07, Some(0.25));
    check_votes(33, 33, 3, 7, 0.5, Some(0.5));
    // Every similarity equal: k / n of each image's vote.
    let e = engine();
    let labels = [0u32, 1, 1, 2, 2, 2];
    let sims = Tensor::from_slice(&e, &[0.5; 6], &[1, 6]).unwrap();
    let lt = Tensor::from_u32(&e, &labels, &[6]).unwrap();
    let got = ops::knn_votes(&sims, &lt, 3, 3, 1.0)
        .unwrap()
        .to_vec()
        .unwrap();
    let w = (-0.5f64).exp() * 0.5;
    for (c, count) in [1.0, 2.0, 3.0].iter().enumerate() {
        assert!((got[c] as f64 - count * w).abs() < 1e-6, "{got:?}");
    }
}

/// Votes from features: cosine similarities in f64, rounded to f32 as the GPU's are, then votes.
fn class_votes_ref(
    q: &[f64],
    bank: &[f64],
    labels: &[u32],
    d: usize,
    classes: usize,
) -> Vec<Vec<f64>> {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    q.chunks(d)
        .map(|row| {
            let sims: Vec<f32> = bank
                .chunks(d)
                .map(|b| {
                    let dot: f64 = row.iter().zip(b).map(|(x, y)| x * y).sum();
                    (dot / (norm(row) * norm(b))) as f32
                })
                .collect();
            votes_ref(&sims, labels, classes, 200, 0.07)
        })
        .collect()
}

#[test]
fn votes_from_features_match_reference() {
    let e = engine();
    for (m, n, d, classes) in [(7, 257, 7, 10), (33, 257, 33, 3), (1, 7, 1, 2)] {
        let mut rng = Rng::new((m + n + d) as u64);
        let q = rand_vec(&mut rng, m * d);
        let bank = rand_vec(&mut rng, n * d);
        let labels = random_labels(&mut rng, n, classes);
        let got = ops::knn_class_votes(
            &Tensor::from_slice(&e, &to_f32(&q), &[m, d]).unwrap(),
            &Tensor::from_slice(&e, &to_f32(&bank), &[n, d]).unwrap(),
            &Tensor::from_u32(&e, &labels, &[n]).unwrap(),
            classes,
            200,
            0.07,
        )
        .unwrap();
        let want = class_votes_ref(&q, &bank, &labels, d, classes);
        for (r, want) in want.iter().enumerate() {
            let scale = want.iter().cloned().fold(0.0, f64::max).max(1e-30);
            for (c, w) in want.iter().enumerate() {
                let g = got[r * classes + c] as f64;
                assert!(
                    (g - w).abs() <= 1e-4 * scale,
                    "m {m} n {n} d {d}: row {r} class {c}: gpu {g}, reference {w}"
                );
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let e = engine();
    let sims = Tensor::from_slice(&e, &[0.1, 0.2, 0.3, 0.4], &[2, 2]).unwrap();
    let labels = Tensor::from_u32(&e, &[0, 1], &[2]).unwrap();
    let short = Tensor::from_u32(&e, &[0], &[1]).unwrap();
    assert!(ops::knn_votes(&sims, &labels, 2, 0, 0.07).is_err());
    assert!(ops::knn_votes(&sims, &labels, 2, 1, 0.0).is_err());
    assert!(ops::knn_votes(&sims, &labels, 2, 1, f32::NAN).is_err());
    assert!(ops::knn_votes(&sims, &labels, 0, 1, 0.07).is_err());
    assert!(ops::knn_votes(&sims, &short, 2, 1, 0.07).is_err());
    let feats = Tensor::from_slice(&e, &[1.0, 2.0, 3.0], &[1, 3]).unwrap();
    let other = Tensor::from_slice(&e, &[1.0, 2.0], &[1, 2]).unwrap();
    let one = Tensor::from_u32(&e, &[0], &[1]).unwrap();
    assert!(ops::knn_class_votes(&feats, &other, &one, 2, 1, 0.07).is_err());
}
