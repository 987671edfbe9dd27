//! Group norm of [N, C, ...] inputs (shaders/group_norm.wgsl), forward and backward, and the
//! per-sample grouped normalization that layer norm and weight standardization also run on.
//!
//! The input is viewed as [N, C, inner]; each sample's C channels form G groups of C / G, and each
//! (sample, group) is normalized over its (C / G) * inner elements (two-pass statistics from
//! `moments`), then scaled and shifted per channel.

use super::check_f32;
use super::moments::{
    check_affine, check_eps, group_grad_sums, group_stats, group_sum, run_chunked, Bind,
    ChannelMap, ChunkedParams, GroupView,
};
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::Tensor;

crate::kernels::kernel_params! {
    /// shaders/group_norm.wgsl: `rows` (sample, group) rows of `group_len` elements over
    /// [N, channels, inner]; `n` and `start` are a launch's chunk (set by `run_chunked`).
    pub struct GroupNormParams {
        n: u32,
        start: u32,
        channels: u32,
        inner: u32,
        group_len: u32,
        rows: u32,
        has_gamma: u32,
        has_beta: u32,
    }
}

impl ChunkedParams for GroupNormParams {
    fn set_chunk(&mut self, len: u32, start: u32) {
        (self.n, self.start) = (len, start);
    }
}

/// A tensor seen as [samples, channels, inner] with `groups` groups of channels per sample.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grouping {
    pub samples: usize,
    pub channels: usize,
    pub inner: usize,
    pub groups: usize,
}

/// Sum over samples and inner positions, per channel: [channels].
fn channel_sum(t: &Tensor, g: Grouping) -> Result<Tensor> {
    let view = GroupView {
        outer: g.samples,
        groups: g.channels,
        inner: g.inner,
    };
    group_sum(t, view)
}

/// Normalizes each (sample, group) of `x` seen as `g`, then applies the per-channel affine. Shapes
/// are checked by the callers.
pub(crate) fn grouped_norm(
    x: &Tensor,
    g: Grouping,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    let per_group = g.channels / g.groups;
    let view = GroupView {
        outer: 1,
        groups: g.samples * g.groups,
        inner: per_group * g.inner,
    };
    let map = ChannelMap {
        gmod: g.groups,
        cmul: per_group,
        bdiv: g.inner,
    };
    let words = GroupNormParams {
        n: 0,
        start: 0,
        channels: g.channels as u32,
        inner: g.inner as u32,
        group_len: view.inner as u32,
        rows: view.groups as u32,
        has_gamma: gamma.is_some() as u32,
        has_beta: beta.is_some() as u32,
    };
    let stats = group_stats(x, view, eps, None)?;
    let out = x.empty_like()?;
    // A missing gamma or beta is never read; the statistics stand in for its binding.
    let binds = [
        Bind::Chunk(x),
        Bind::Whole(&stats),
        Bind::Whole(gamma.unwrap_or(&stats)),
        Bind::Whole(beta.unwrap_or(&stats)),
        Bind::Chunk(&out),
    ];
    run_chunked("group_norm", "normalize", x.numel(), &words, &binds)?;

    let mut inputs = vec![x];
    inputs.extend(gamma);
    inputs.extend(beta);
    let (sx, sgamma, sbeta) = (x.clone(), gamma.cloned(), beta.cloned());
    tape::record(&out, &inputs, move |dy| {
        let numel = sx.numel();
        let dx = if sx.requires_grad() {
            let (sum_gd, sum_gd_xhat) = group_grad_sums(
                &sx,
                dy,
                &stats,
                view,
                sgamma.as_ref().map(|t| (t, map)),
                None,
            )?;
            let dx = sx.empty_like()?;
            let binds = [
                Bind::Chunk(&sx),
                Bind::Chunk(dy),
                Bind::Whole(&stats),
                Bind::Whole(sgamma.as_ref().unwrap_or(&stats)),
                Bind::Whole(&sum_gd),
                Bind::Whole(&sum_gd_xhat),
                Bind::Chunk(&dx),
            ];
            run_chunked("group_norm", "backward", numel, &words, &binds)?;
            Some(dx)
        } else {
            None
        };
        let mut grads = vec![dx];
        if let Some(t) = &sgamma {
            grads.push(if t.requires_grad() {
                let prod = sx.empty_like()?;
                let binds = [
                    Bind::Chunk(&sx),
                    Bind::Chunk(dy),
                    Bind::Whole(&stats),
                    Bind::Chunk(&prod),
                ];
                run_chunked("group_norm", "dy_xhat", numel, &words, &binds)?;
                Some(channel_sum(&prod, g)?)
            } else {
                None
            });
        }
        if let Some(t) = &sbeta {
            grads.push(if t.requires_grad() {
                Some(channel_sum(dy, g)?)
            } else {
                None
            });
        }
        Ok(grads)
    });
    Ok(out)
}

/// Group norm of `x` ([N, C] or [N, C, H, W], any [N, C, ...]) with `groups` groups of channels,
/// statistics over (C / groups, H, W) per sample and group, optional affine `gamma`, `beta` ([C]).
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    let op = "group_norm";
    check_f32(op, &[x])?;
    check_eps(op, eps)?;
    if x.dims() < 2 || x.numel() == 0 {
        return Err(Error::Shape(format!(
            "{op}: input {:?} must be a non-empty [N, C] or [N, C, H, W]",
            x.shape()
        )));
    }
    let s = x.shape();
    if groups == 0 || !s[1].is_multiple_of(groups) {
        return Err(Error::Shape(format!(
            "{op}: {} channels do not split into {groups} groups",
            s[1]
        )));
    }
    check_affine(op, "gamma", gamma, s[1])?;
    check_affine(op, "beta", beta, s[1])?;
    let g = Grouping {
        samples: s[0],
        channels: s[1],
        inner: s[2..].iter().product(),
        groups,
    };
    grouped_norm(x, g, gamma, beta, eps)
}
