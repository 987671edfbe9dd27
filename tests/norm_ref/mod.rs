//! f64 references of the normalization ops (batch, layer and group norm, weight standardization)
//! and a driver that gradient-checks one of them with the `common` harness.
//!
//! Every op is described by two maps: which statistics set each element belongs to, and which
//! affine channel it uses. Forward: y = (x - mean_set) / sqrt(var_set + eps) * gamma[c] + beta[c]
//! with the biased variance. Backward, with gd = dy * gamma[c] and n elements per set:
//! dx = rstd * (gd - sum_set(gd) / n - xhat * sum_set(gd * xhat) / n).
#![allow(dead_code)]

use crate::common::{rand_vec, OpCheck};
use byol::rng::Rng;
use byol::{Engine, Tensor};

pub struct NormRef {
    pub set_of: Vec<usize>,
    pub chan_of: Vec<usize>,
    pub sets: usize,
    pub channels: usize,
    pub eps: f64,
}

/// [N, C, inner] dimensions of a shape.
fn nci(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2..].iter().product())
}

impl NormRef {
    /// Statistics per channel over N and H*W.
    pub fn batch_norm(shape: &[usize]) -> NormRef {
        let (n, c, inner) = nci(shape);
        let chan: Vec<usize> = (0..n * c * inner).map(|i| (i / inner) % c).collect();
        NormRef {
            set_of: chan.clone(),
            chan_of: chan,
            sets: c,
            channels: c,
            eps: 1e-5,
        }
    }

    /// Ghost batch norm: statistics per (slice of N / groups samples, channel), affine per
    /// channel. Set g * C + c is slice g's channel c.
    pub fn ghost_batch_norm(shape: &[usize], groups: usize) -> NormRef {
        let (n, c, inner) = nci(shape);
        let per = n / groups;
        let total = n * c * inner;
        NormRef {
            set_of: (0..total)
                .map(|i| (i / (c * inner) / per) * c + (i / inner) % c)
                .collect(),
            chan_of: (0..total).map(|i| (i / inner) % c).collect(),
            sets: groups * c,
            channels: c,
            eps: 1e-5,
        }
    }

    /// Statistics per (sample, group of C / groups channels), affine per channel.
    pub fn group_norm(shape: &[usize], groups: usize) -> NormRef {
        let (n, c, inner) = nci(shape);
        let per = c / groups;
        let total = n * c * inner;
        NormRef {
            set_of: (0..total)
                .map(|i| (i / (c * inner)) * groups + ((i / inner) % c) / per)
                .collect(),
            chan_of: (0..total).map(|i| (i / inner) % c).collect(),
            sets: n * groups,
            channels: c,
            eps: 1e-5,
        }
    }

    /// Statistics per row of the last axis, affine per feature.
    pub fn layer_norm(shape: &[usize]) -> NormRef {
        let d = *shape.last().unwrap();
        let total: usize = shape.iter().product();
        NormRef {
            set_of: (0..total).map(|i| i / d).collect(),
            chan_of: (0..total).map(|i| i % d).collect(),
            sets: total / d,
            channels: d,
            eps: 1e-5,
        }
    }

    /// Statistics per output channel over the fan-in; no affine.
    pub fn weight_std(shape: &[usize]) -> NormRef {
        let fan_in: usize = shape[1..].iter().product();
        let total = shape[0] * fan_in;
        NormRef {
            set_of: (0..total).map(|i| i / fan_in).collect(),
            chan_of: vec![0; total],
            sets: shape[0],
            channels: 1,
            eps: 1e-5,
        }
    }

    pub fn counts(&self) -> Vec<f64> {
        let mut n = vec![0.0; self.sets];
        for &s in &self.set_of {
            n[s] += 1.0;
        }
        n
    }

    /// Mean and biased variance per set (two-pass, f64).
    pub fn stats(&self, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let n = self.counts();
        let mut mean = vec![0.0; self.sets];
        for (v, &s) in x.iter().zip(&self.set_of) {
            mean[s] += v;
        }
        for (m, c) in mean.iter_mut().zip(&n) {
            *m /= c;
        }
        let mut var = vec![0.0; self.sets];
        for (v, &s) in x.iter().zip(&self.set_of) {
            var[s] += (v - mean[s]) * (v - mean[s]);
        }
        for (v, c) in var.iter_mut().zip(&n) {
            *v /= c;
        }
        (mean, var)
    }

    fn xhat(&self, x: &[f64], mean: &[f64], var: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(&self.set_of)
            .map(|(v, &s)| (v - mean[s]) / (var[s] + self.eps).sqrt())
            .collect()
    }

    fn affine(&self, xhat: &[f64], gamma: Option<&[f64]>, beta: Option<&[f64]>) -> Vec<f64> {
        xhat.iter()
            .zip(&self.chan_of)
            .map(|(h, &c)| h * gamma.map_or(1.0, |g| g[c]) + beta.map_or(0.0, |b| b[c]))
            .collect()
    }

    /// Forward with the batch's own statistics.
    pub fn forward(&self, x: &[f64], gamma: Option<&[f64]>, beta: Option<&[f64]>) -> Vec<f64> {
        let (mean, var) = self.stats(x);
        self.affine(&self.xhat(x, &mean, &var), gamma, beta)
    }

    /// Forward with given (running) statistics.
    pub fn forward_fixed(
        &self,
        x: &[f64],
        mean: &[f64],
        var: &[f64],
        gamma: Option<&[f64]>,
        beta: Option<&[f64]>,
    ) -> Vec<f64> {
        self.affine(&self.xhat(x, mean, var), gamma, beta)
    }

    /// dgamma = sum(dy * xhat) and dbeta = sum(dy) per channel.
    fn affine_grads(&self, xhat: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let mut dgamma = vec![0.0; self.channels];
        let mut dbeta = vec![0.0; self.channels];
        for i in 0..dy.len() {
            dgamma[self.chan_of[i]] += dy[i] * xhat[i];
            dbeta[self.chan_of[i]] += dy[i];
        }
        (dgamma, dbeta)
    }

    /// (dx, dgamma, dbeta) with the batch's own statistics.
    pub fn backward(
        &self,
        x: &[f64],
        gamma: Option<&[f64]>,
        dy: &[f64],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mean, var) = self.stats(x);
        let xhat = self.xhat(x, &mean, &var);
        let n = self.counts();
        let gd: Vec<f64> = (0..dy.len())
            .map(|i| dy[i] * gamma.map_or(1.0, |g| g[self.chan_of[i]]))
            .collect();
        let mut sum_gd = vec![0.0; self.sets];
        let mut sum_gd_xhat = vec![0.0; self.sets];
        for i in 0..dy.len() {
            sum_gd[self.set_of[i]] += gd[i];
            sum_gd_xhat[self.set_of[i]] += gd[i] * xhat[i];
        }
        let dx = (0..dy.len())
            .map(|i| {
                let s = self.set_of[i];
                let rstd = 1.0 / (var[s] + self.eps).sqrt();
                rstd * (gd[i] - sum_gd[s] / n[s] - xhat[i] * sum_gd_xhat[s] / n[s])
            })
            .collect();
        let (dgamma, dbeta) = self.affine_grads(&xhat, dy);
        (dx, dgamma, dbeta)
    }

    /// (dx, dgamma, dbeta) with given (running) statistics, which are constants.
    pub fn backward_fixed(
        &self,
        x: &[f64],
        mean: &[f64],
        var: &[f64],
        gamma: Option<&[f64]>,
        dy: &[f64],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let xhat = self.xhat(x, mean, var);
        let dx = (0..dy.len())
            .map(|i| {
                let (s, c) = (self.set_of[i], self.chan_of[i]);
                dy[i] * gamma.map_or(1.0, |g| g[c]) / (var[s] + self.eps).sqrt()
            })
            .collect();
        let (dgamma, dbeta) = self.affine_grads(&xhat, dy);
        (dx, dgamma, dbeta)
    }
}

/// The affine parameters among the inputs [x, gamma?, beta?].
fn affine_of(xs: &[Vec<f64>], gamma: bool, beta: bool) -> (Option<&[f64]>, Option<&[f64]>) {
    let g = gamma.then(|| xs[1].as_slice());
    let b = beta.then(|| xs[1 + gamma as usize].as_slice());
    (g, b)
}

/// The GPU op under test: input, gamma, beta.
pub type GpuNorm<'a> =
    &'a dyn Fn(&Tensor, Option<&Tensor>, Option<&Tensor>) -> byol::Result<Tensor>;

/// One gradient check of a normalization op.
pub struct NormCase<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub reference: NormRef,
    pub gamma: bool,
    pub beta: bool,
    /// Added to every input value (accuracy when the mean is large next to the spread).
    pub offset: f64,
    /// Whether x gets a gradient (gamma and beta always do).
    pub x_grad: bool,
    /// Fixed (running) statistics, for batch norm in eval mode.
    pub fixed: Option<(Vec<f64>, Vec<f64>)>,
}

impl NormCase<'_> {
    pub fn run(&self, e: &Engine, rng: &mut Rng, gpu: GpuNorm) {
        let n: usize = self.shape.iter().product();
        let c = self.reference.channels;
        let x: Vec<f64> = rand_vec(rng, n).iter().map(|v| v + self.offset).collect();
        let mut inputs = vec![(x, self.shape.clone())];
        let mut grad = vec![self.x_grad];
        for on in [self.gamma, self.beta] {
            if on {
                inputs.push((rand_vec(rng, c), vec![c]));
                grad.push(true);
            }
        }
        let (gamma, beta, r) = (self.gamma, self.beta, &self.reference);
        // The reference subtracts the offset again (exact in f64, and the op is shift-invariant) so
        // that its finite differences do not lose digits to an input of magnitude 1e3.
        let offset = self.offset;
        let fixed: Option<(Vec<f64>, Vec<f64>)> = self
            .fixed
            .as_ref()
            .map(|(m, v)| (m.iter().map(|x| x - offset).collect(), v.clone()));
        let fixed = fixed.as_ref();
        let unshift = |x: &[f64]| -> Vec<f64> { x.iter().map(|v| v - offset).collect() };
        OpCheck {
            name: self.name,
            inputs,
            grad,
            cpu_forward: &|xs| {
                let (g, b) = affine_of(xs, gamma, beta);
                let x = unshift(&xs[0]);
                match fixed {
                    Some((m, v)) => r.forward_fixed(&x, m, v, g, b),
                    None => r.forward(&x, g, b),
                }
            },
            cpu_backward: &|xs, dy| {
                let (g, _) = affine_of(xs, gamma, beta);
                let x = unshift(&xs[0]);
                let (dx, dgamma, dbeta) = match fixed {
                    Some((m, v)) => r.backward_fixed(&x, m, v, g, dy),
                    None => r.backward(&x, g, dy),
                };
                let mut out = vec![dx];
                if gamma {
                    out.push(dgamma);
                }
                if beta {
                    out.push(dbeta);
                }
                out
            },
            gpu_forward: &|t| {
                let g = gamma.then(|| &t[1]);
                let b = beta.then(|| &t[1 + gamma as usize]);
                gpu(&t[0], g, b)
            },
            rel: 1e-4,
        }
        .run_on(e, rng);
    }
}
