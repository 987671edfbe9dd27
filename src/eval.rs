//! Linear evaluation and the kNN monitor on frozen features.
//!
//! The linear probe: a multinomial logistic regression with an L2 penalty, fitted on the GPU with
//! the engine's own kernels (matmul, cross entropy, SGD with momentum) on frozen features.
//!
//! Features are centred and whitened with the fit set's statistics (Cholesky factor of the
//! covariance plus a small ridge), an invertible linear map that leaves what a linear classifier
//! can do unchanged but makes the problem well conditioned: embeddings of a network are strongly
//! correlated, and without whitening gradient descent crawls along the flat directions. The step
//! size comes from the largest eigenvalue of the whitened features' second-moment matrix, which
//! bounds the curvature of the softmax loss.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ops;
use crate::params::ParamSet;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    /// L2 penalty on the weights (applied as weight decay).
    pub l2: f32,
    pub max_iters: usize,
    /// Stop when the loss improves by less than this (relative) between checks.
    pub tolerance: f64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            l2: 1e-4,
            max_iters: 500,
            tolerance: 1e-6,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeResult {
    pub accuracy: f64,
    /// Binomial standard error of `accuracy` over the scored images: sqrt(p (1 - p) / n).
    pub standard_error: f64,
    pub fit_accuracy: f64,
    pub iterations: usize,
    pub final_loss: f64,
}

/// Per-dimension mean and std of row-major features [n, d].
fn moments(x: &[f32], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (x.len() / d).max(1) as f64;
    let mut mean = vec![0.0; d];
    for row in x.chunks(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += *v as f64 / n;
        }
    }
    let mut var = vec![0.0; d];
    for row in x.chunks(d) {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (*v as f64 - m).powi(2) / n;
        }
    }
    (mean, var.into_iter().map(|v| v.sqrt().max(1e-6)).collect())
}

fn standardize(x: &[f32], d: usize, mean: &[f64], std: &[f64]) -> Vec<f32> {
    x.chunks(d)
        .flat_map(|row| {
            row.iter()
                .zip(mean)
                .zip(std)
                .map(|((v, m), s)| ((*v as f64 - m) / s) as f32)
        })
        .collect()
}

/// Lower-triangular L with L·Lᵀ = XᵀX/n + ridge·I, for standardized rows of `x`.
fn covariance_cholesky(x: &[f32], d: usize, ridge: f64) -> Vec<f64> {
    let n = (x.len() / d).max(1) as f64;
    let mut c = vec![0.0; d * d];
    for row in x.chunks(d) {
        for i in 0..d {
            let ri = row[i] as f64;
            for j in 0..=i {
                c[i * d + j] += ri * row[j] as f64;
            }
        }
    }
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut v = c[i * d + j] / n + if i == j { ridge } else { 0.0 };
            for k in 0..j {
                v -= l[i * d + k] * l[j * d + k];
            }
            l[i * d + j] = if i == j {
                v.max(ridge).sqrt()
            } else {
                v / l[j * d + j]
            };
        }
    }
    l
}

/// Rows y = L⁻¹x (forward substitution): whitened features.
fn whiten(x: &[f32], d: usize, l: &[f64]) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    let mut y = vec![0.0f64; d];
    for row in x.chunks(d) {
        for i in 0..d {
            let mut v = row[i] as f64;
            for k in 0..i {
                v -= l[i * d + k] * y[k];
            }
            y[i] = v / l[i * d + i];
        }
        out.extend(y.iter().map(|v| *v as f32));
    }
    out
}

/// Largest eigenvalue of XᵀX / n by power iteration.
fn top_eigenvalue(x: &[f32], d: usize) -> f64 {
    let n = (x.len() / d).max(1) as f64;
    let mut v = vec![1.0 / (d as f64).sqrt(); d];
    let mut lambda = 0.0;
    for _ in 0..30 {
        let mut w = vec![0.0; d];
        for row in x.chunks(d) {
            let dot: f64 = row.iter().zip(&v).map(|(a, b)| *a as f64 * b).sum();
            for (wi, a) in w.iter_mut().zip(row) {
                *wi += dot * *a as f64 / n;
            }
        }
        lambda = w.iter().map(|a| a * a).sum::<f64>().sqrt();
        if lambda == 0.0 {
            return 0.0;
        }
        v = w.iter().map(|a| a / lambda).collect();
    }
    lambda
}

fn argmax_accuracy(logits: &[f32], labels: &[u32], k: usize) -> f64 {
    let correct = logits
        .chunks(k)
        .zip(labels)
        .filter(|(row, &y)| {
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                );
            best.0 as u32 == y
        })
        .count();
    correct as f64 / labels.len().max(1) as f64
}

/// Fits on (fit_x, fit_y) and reports accuracy on (test_x, test_y). Features are row-major [n, d].
pub fn linear_probe(
    engine: &Engine,
    d: usize,
    classes: usize,
    (fit_x, fit_y): (&[f32], &[u32]),
    (test_x, test_y): (&[f32], &[u32]),
    cfg: ProbeConfig,
) -> Result<ProbeResult> {
    if d == 0
        || classes < 2
        || fit_y.is_empty()
        || fit_x.len() != fit_y.len() * d
        || test_x.len() != test_y.len() * d
    {
        return Err(Error::Shape(format!(
            "linear probe: {} fit and {} test labels do not match features of dimension {d}, or fewer than 2 classes",
            fit_y.len(),
            test_y.len()
        )));
    }
    let (mean, std) = moments(fit_x, d);
    let fx = standardize(fit_x, d, &mean, &std);
    let tx = standardize(test_x, d, &mean, &std);
    let l = covariance_cholesky(&fx, d, 1e-3);
    let (fx, tx) = (whiten(&fx, d, &l), whiten(&tx, d, &l));
    let lr = 1.0 / (0.5 * top_eigenvalue(&fx, d) + cfg.l2 as f64).max(1e-6);

    let n = fit_y.len();
    let x = Tensor::from_slice(engine, &fx, &[n, d])?;
    let y = ops::upload_targets(engine, fit_y, classes)?;
    let zeros_w = vec![0.0f32; d * classes];
    let zeros_b = vec![0.0f32; classes];
    let params = ParamSet::from_values(
        engine,
        &[
            ("weight", &[d, classes], &zeros_w),
            ("bias", &[classes], &zeros_b),
        ],
    )?;
    params.set_requires_grad(true);
    let (w, b) = (params.tensors()[0].clone(), params.tensors()[1].clone());
    // Weight decay on the bias too is negligible here and keeps one optimizer.
    let mut opt = crate::optim::Optimizer::sgd(&params, 0.9, cfg.l2)?;
    let mut last = f64::INFINITY;
    let mut result = ProbeResult::default();
    for it in 0..cfg.max_iters {
        let loss = ops::cross_entropy(&ops::bias_add(&ops::matmul(&x, &w)?, &b)?, &y)?;
        let grads = engine.backward(&loss)?;
        opt.step(&grads, lr as f32)?;
        result.iterations = it + 1;
        if (it + 1) % 25 == 0 || it + 1 == cfg.max_iters {
            let l = loss.item()? as f64;
            if !l.is_finite() {
                return Err(Error::Invalid(
                    "linear probe diverged (non-finite loss)".into(),
                ));
            }
            result.final_loss = l;
            if last.is_finite() && (last - l).abs() <= cfg.tolerance * last.abs().max(1e-12) {
                break;
            }
            last = l;
        }
    }
    let _ng = engine.no_grad();
    let logits = |feats: &Tensor| -> Result<Vec<f32>> {
        ops::bias_add(&ops::matmul(feats, &w)?, &b)?.to_vec()
    };
    result.fit_accuracy = argmax_accuracy(&logits(&x)?, fit_y, classes);
    if !test_y.is_empty() {
        let t = Tensor::from_slice(engine, &tx, &[test_y.len(), d])?;
        result.accuracy = argmax_accuracy(&logits(&t)?, test_y, classes);
        result.standard_error = standard_error(result.accuracy, test_y.len());
    }
    Ok(result)
}

/// The binomial standard error of an accuracy `p` measured on `n` images.
pub fn standard_error(p: f64, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    (p * (1.0 - p) / n as f64).sqrt()
}

/// The kNN monitor of InstDisc and solo-learn: each scored image takes the class of the weighted
/// votes of its `k` nearest fit images by cosine similarity, weight exp(s / temperature).
#[derive(Clone, Copy, Debug)]
pub struct KnnConfig {
    pub k: usize,
    pub temperature: f32,
}

impl Default for KnnConfig {
    /// k = 200, T = 0.07: the values of Wu et al. (2018) that solo-learn's monitor uses.
    fn default() -> Self {
        KnnConfig {
            k: 200,
            temperature: 0.07,
        }
    }
}

/// kNN accuracy on (test_x, test_y) with (fit_x, fit_y) as the labeled bank, computed on the GPU
/// (`ops::knn_class_votes`; the largest vote wins, the lower class on a tie), and its standard error. Features are row-major [n, d], raw (the cosine
/// similarity normalizes them).
pub fn knn_accuracy(
    engine: &Engine,
    d: usize,
    classes: usize,
    (fit_x, fit_y): (&[f32], &[u32]),
    (test_x, test_y): (&[f32], &[u32]),
    cfg: KnnConfig,
) -> Result<(f64, f64)> {
    if d == 0
        || fit_y.is_empty()
        || test_y.is_empty()
        || fit_x.len() != fit_y.len() * d
        || test_x.len() != test_y.len() * d
    {
        return Err(Error::Shape(format!(
            "kNN accuracy: {} fit and {} test labels do not match features of dimension {d}",
            fit_y.len(),
            test_y.len()
        )));
    }
    let bank = Tensor::from_slice(engine, fit_x, &[fit_y.len(), d])?;
    let labels = ops::upload_targets(engine, fit_y, classes)?;
    let queries = Tensor::from_slice(engine, test_x, &[test_y.len(), d])?;
    let votes = ops::knn_class_votes(&queries, &bank, &labels, classes, cfg.k, cfg.temperature)?;
    let acc = argmax_accuracy(&votes, test_y, classes);
    Ok((acc, standard_error(acc, test_y.len())))
}
