//! f64 references of the BYOL loss, softmax cross entropy and InfoNCE (in-batch or against a MoCo
//! queue), forward and backward, shared by the loss, loop-limit and whole-step tests.
#![allow(dead_code)]

use super::l2_ref::{normalize, normalize_backward};

/// Mean over rows of 2 - 2 cos(p_i, z_i).
pub fn byol_forward(p: &[f64], z: &[f64], d: usize) -> f64 {
    let (ph, _) = normalize(p, d);
    let (zh, _) = normalize(z, d);
    let n = p.len() / d;
    let cos_sum: f64 = ph.iter().zip(&zh).map(|(a, b)| a * b).sum();
    (2.0 * n as f64 - 2.0 * cos_sum) / n as f64
}

/// d loss / d p: each row's cos is p̂·ẑ, so d loss / d p̂ = -2 ẑ / N, then the normalize backward.
pub fn byol_backward(p: &[f64], z: &[f64], d: usize, dy: f64) -> Vec<f64> {
    let (zh, _) = normalize(z, d);
    let n = (p.len() / d) as f64;
    let dph: Vec<f64> = zh.iter().map(|v| -2.0 * v / n * dy).collect();
    normalize_backward(p, &dph, d)
}

/// Mean cross entropy of each row's logits against its target, max-subtracted.
pub fn ce_forward(rows: &[Vec<f64>], targets: &[usize]) -> f64 {
    let total: f64 = rows
        .iter()
        .zip(targets)
        .map(|(row, &t)| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            s.ln() - (row[t] - m)
        })
        .sum();
    total / rows.len() as f64
}

/// (softmax - onehot) * dy / N per row.
pub fn ce_backward(rows: &[Vec<f64>], targets: &[usize], dy: f64) -> Vec<Vec<f64>> {
    let n = rows.len() as f64;
    rows.iter()
        .zip(targets)
        .map(|(row, &t)| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            row.iter()
                .enumerate()
                .map(|(j, v)| ((v - m).exp() / s - (j == t) as u8 as f64) * dy / n)
                .collect()
        })
        .collect()
}

/// Each query row's candidate keys: all of k̂ (in-batch), or k̂_i followed by the queue's rows.
pub fn info_nce_candidates(k: &[f64], queue: Option<&[f64]>, d: usize) -> Vec<Vec<Vec<f64>>> {
    let (kh, _) = normalize(k, d);
    let keys: Vec<Vec<f64>> = kh.chunks(d).map(<[f64]>::to_vec).collect();
    match queue {
        None => vec![keys.clone(); keys.len()],
        Some(queue) => keys
            .iter()
            .map(|ki| {
                let mut c = vec![ki.clone()];
                c.extend(queue.chunks(d).map(<[f64]>::to_vec));
                c
            })
            .collect(),
    }
}

/// InfoNCE logits per row (q̂_i · candidate_j / T) and each row's target.
pub fn info_nce_logits(
    q: &[f64],
    k: &[f64],
    queue: Option<&[f64]>,
    d: usize,
    t: f64,
) -> (Vec<Vec<f64>>, Vec<usize>) {
    let (qh, _) = normalize(q, d);
    let cands = info_nce_candidates(k, queue, d);
    let logits = qh
        .chunks(d)
        .zip(&cands)
        .map(|(qi, ci)| {
            ci.iter()
                .map(|c| c.iter().zip(qi).map(|(a, b)| a * b).sum::<f64>() / t)
                .collect()
        })
        .collect();
    let n = q.len() / d;
    let targets = if queue.is_some() {
        vec![0; n]
    } else {
        (0..n).collect()
    };
    (logits, targets)
}

/// Mean InfoNCE loss: in-batch (target i among all keys) or against a queue (target the positive).
pub fn info_nce_forward(q: &[f64], k: &[f64], queue: Option<&[f64]>, d: usize, t: f64) -> f64 {
    let (logits, targets) = info_nce_logits(q, k, queue, d, t);
    ce_forward(&logits, &targets)
}

/// d loss / d q̂_i = sum_j g_ij candidate_j / T, then the normalize backward.
pub fn info_nce_backward(
    q: &[f64],
    k: &[f64],
    queue: Option<&[f64]>,
    d: usize,
    t: f64,
    dy: f64,
) -> Vec<f64> {
    let (logits, targets) = info_nce_logits(q, k, queue, d, t);
    let g = ce_backward(&logits, &targets, dy);
    let cands = info_nce_candidates(k, queue, d);
    let mut dqh = vec![0.0; q.len()];
    for (i, (gi, ci)) in g.iter().zip(&cands).enumerate() {
        for (gij, c) in gi.iter().zip(ci) {
            for (x, cv) in dqh[i * d..(i + 1) * d].iter_mut().zip(c) {
                *x += gij * cv / t;
            }
        }
    }
    normalize_backward(q, &dqh, d)
}
