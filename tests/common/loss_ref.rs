//! f64 references of the BYOL loss and of softmax cross entropy, forward and backward, shared by
//! the loss tests.
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
