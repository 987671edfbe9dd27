//! f64 reference of row-wise l2 normalization (as `ops::l2_normalize`: divide by max(norm, eps))
//! and its gradient, shared by the loss tests.
#![allow(dead_code)]

pub const EPS: f64 = 1e-12;

/// Rows of x ([n, d]) divided by max(norm, eps), and those divisors.
pub fn normalize(x: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut y = x.to_vec();
    let mut divs = Vec::new();
    for row in y.chunks_mut(d) {
        let div = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(EPS);
        row.iter_mut().for_each(|v| *v /= div);
        divs.push(div);
    }
    (y, divs)
}

/// The gradient of `normalize` (norms above eps): (dy - y * sum(dy * y)) / norm per row.
pub fn normalize_backward(x: &[f64], dy: &[f64], d: usize) -> Vec<f64> {
    let (y, divs) = normalize(x, d);
    let mut dx = vec![0.0; x.len()];
    for (r, div) in divs.iter().enumerate() {
        let row = r * d..(r + 1) * d;
        let dot: f64 = dy[row.clone()]
            .iter()
            .zip(&y[row.clone()])
            .map(|(a, b)| a * b)
            .sum();
        for i in row {
            dx[i] = (dy[i] - y[i] * dot) / div;
        }
    }
    dx
}
