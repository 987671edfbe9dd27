//! Per-group mean and variance, and the per-group sums, that batch norm, layer norm, group norm
//! and weight standardization share (shaders/moments.wgsl).
//!
//! A tensor is viewed as [outer, groups, inner]; a group's statistics cover its outer * inner
//! elements. Every (group, chunk) writes a partial and a fold pass adds them per group in a fixed
//! order, so results are deterministic. The statistics are two-pass (mean, then sums of deviations
//! from it), accurate when the mean is large next to the spread. Tensors larger than one binding
//! are split over the outer axis (or over groups when one outer slab is too large); each launch
//! folds its partials into the sums of the earlier ones.

use super::{window, LOOP_BUDGET};
use crate::engine::{Collective, Engine};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// The epsilon the normalization ops use by default (as PyTorch).
pub const NORM_EPS: f32 = 1e-5;

/// Invocations a statistics launch should have at least, before chunking groups pays off.
const TARGET_INVOCATIONS: usize = 16384;
/// Most chunks per group wanted for parallel work (the fold pass walks them serially); long groups
/// get more, so that no chunk exceeds `LOOP_BUDGET` elements.
const MAX_CHUNKS: usize = 1024;
/// Shortest chunk worth an invocation.
const MIN_CHUNK: usize = 64;
/// Words a window may add in front of its start to reach an aligned offset.
const ALIGN_SLACK: usize = 64;

/// A tensor seen as [outer, groups, inner], statistics per group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupView {
    pub outer: usize,
    pub groups: usize,
    pub inner: usize,
}

impl GroupView {
    /// Elements each group's statistics cover.
    pub fn count(&self) -> usize {
        self.outer * self.inner
    }
}

/// Which affine channel an element uses in the gradient sums: element b of group g's row reads
/// `gamma[(g % gmod) * cmul + b / bdiv]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelMap {
    pub gmod: usize,
    pub cmul: usize,
    pub bdiv: usize,
}

/// One launch: groups g0..g0+ng, `span` elements of each, in the tensor's elements start..start+len.
struct Launch {
    start: usize,
    len: usize,
    g0: usize,
    ng: usize,
    span: usize,
    chunk_len: usize,
    chunks: usize,
    /// The first launch to fold into these groups' sums, and the last.
    first: bool,
    last: bool,
}

/// Elements one invocation of a partial pass covers: enough chunks per group for parallel work,
/// and never more than `LOOP_BUDGET` (the kernels loop once per element; software Vulkan stops
/// loops at `SOFTWARE_LOOP_LIMIT`).
fn chunk_len(view: GroupView) -> usize {
    let count = view.count().max(1);
    let wanted = (TARGET_INVOCATIONS / view.groups.max(1))
        .clamp(1, (count / MIN_CHUNK).clamp(1, MAX_CHUNKS));
    count.div_ceil(wanted).min(LOOP_BUDGET)
}

/// Splits the view into launches that fit one binding, each with chunks whose partials (`width`
/// words per group and chunk) fit too.
fn plan(engine: &Engine, view: GroupView, width: usize) -> Result<Vec<Launch>> {
    let GroupView {
        outer,
        groups,
        inner,
    } = view;
    let max_words = engine.max_binding_words() as usize;
    let max = max_words.saturating_sub(ALIGN_SLACK).max(1);
    if groups * width > max_words {
        return Err(Error::Shape(format!(
            "normalization: sums over {groups} groups exceed the adapter's binding limit"
        )));
    }
    if inner > max {
        return Err(Error::Shape(format!(
            "normalization: one group row of {inner} elements exceeds the adapter's binding limit"
        )));
    }
    let chunk_len = chunk_len(view);
    let most_chunks = (max_words / (width * groups.max(1))).max(1);
    let launch = |start, len, g0, ng, span: usize, first, last| {
        let chunk_len = chunk_len.max(span.div_ceil(most_chunks)).max(1);
        Launch {
            start,
            len,
            g0,
            ng,
            span,
            chunk_len,
            chunks: span.div_ceil(chunk_len).max(1),
            first,
            last,
        }
    };
    let slab = groups * inner;
    let mut launches = Vec::new();
    if slab <= max {
        let per = (max / slab.max(1)).max(1);
        let mut a0 = 0;
        while a0 < outer {
            let na = per.min(outer - a0);
            let (first, last) = (a0 == 0, a0 + na == outer);
            launches.push(launch(
                a0 * slab,
                na * slab,
                0,
                groups,
                na * inner,
                first,
                last,
            ));
            a0 += na;
        }
    } else {
        // One outer slab is too large: one outer index at a time, split over groups.
        let per = (max / inner.max(1)).max(1);
        for a in 0..outer {
            let mut g0 = 0;
            while g0 < groups {
                let ng = per.min(groups - g0);
                let start = (a * groups + g0) * inner;
                launches.push(launch(
                    start,
                    ng * inner,
                    g0,
                    ng,
                    inner,
                    a == 0,
                    a + 1 == outer,
                ));
                g0 += ng;
            }
        }
    }
    Ok(launches)
}

/// Words of the partial buffer the launches need.
fn partial_words(view: GroupView, launches: &[Launch], width: usize) -> usize {
    width * view.groups * launches.iter().map(|l| l.chunks).max().unwrap_or(1)
}

/// The parameter block of moments.wgsl (without the pitch `dispatch_1d` appends).
fn params(
    view: GroupView,
    l: &Launch,
    x_base: u32,
    eps: f32,
    map: Option<ChannelMap>,
) -> MomentsParams {
    let m = map.unwrap_or(ChannelMap {
        gmod: 1,
        cmul: 0,
        bdiv: 1,
    });
    MomentsParams {
        groups: view.groups as u32,
        inner: view.inner as u32,
        g0: l.g0 as u32,
        ng: l.ng as u32,
        span: l.span as u32,
        chunk_len: l.chunk_len as u32,
        chunks: l.chunks as u32,
        x_base,
        count: view.count() as u32,
        eps,
        gmod: m.gmod as u32,
        cmul: m.cmul as u32,
        bdiv: m.bdiv as u32,
        has_gamma: map.is_some() as u32,
        first: l.first as u32,
        last: l.last as u32,
        relu_mask: 0,
        momentum: 0.0,
    }
}

crate::kernels::kernel_params! {
    /// shaders/moments.wgsl: per-group statistics of [outer, groups, inner] over one launch's
    /// groups [g0, g0 + ng), each in chunks; the channel map of a gamma-weighted reduction.
    pub struct MomentsParams {
        groups: u32,
        inner: u32,
        g0: u32,
        ng: u32,
        span: u32,
        chunk_len: u32,
        chunks: u32,
        x_base: u32,
        count: u32,
        eps: f32,
        gmod: u32,
        cmul: u32,
        bdiv: u32,
        has_gamma: u32,
        /// Whether this launch is the first / last over the outer axis (start or finish the sums).
        first: u32,
        last: u32,
        /// grad_partial: count dy only where the bound mask (a fused relu's output) is positive.
        relu_mask: u32,
        /// dev_fold_running: batch norm's running-statistics momentum.
        momentum: f32,
    }
}

/// The parameter block of an elementwise kernel that `run_chunked` launches chunk by chunk: it
/// sets each chunk's length and first element.
pub(crate) trait ChunkedParams: crate::kernels::KernelParams {
    fn set_chunk(&mut self, len: u32, start: u32);
}

/// Batch norm's running statistics, updated in place by the pass that finishes the batch's
/// statistics: running = (1 - momentum) * running + momentum * batch (unbiased variance).
#[derive(Clone, Copy)]
pub(crate) struct RunningStats<'a> {
    pub mean: &'a Tensor,
    pub var: &'a Tensor,
    pub momentum: f32,
}

/// Mean and variance per group of `x` (f32) seen as `view`: a [4 * groups] tensor holding the mean,
/// its low-order correction, the biased variance and 1/sqrt(var + eps). With `running`, the last
/// fold also moves those running statistics toward the batch's (no pass of its own).
pub(crate) fn group_stats(
    x: &Tensor,
    view: GroupView,
    eps: f32,
    running: Option<RunningStats>,
) -> Result<Tensor> {
    let engine = x.engine();
    if view.groups * 4 > engine.max_binding_words() as usize {
        return Err(Error::Shape(format!(
            "normalization: statistics of {} groups exceed the adapter's binding limit",
            view.groups
        )));
    }
    let launches = plan(engine, view, 2)?;
    let part = Tensor::empty(engine, &[partial_words(view, &launches, 2)], DType::F32)?;
    let stats = Tensor::empty(engine, &[4 * view.groups], DType::F32)?;
    for l in &launches {
        let (xs, xb) = window(engine, x, l.start, l.len);
        let words = params(view, l, xb, eps, None);
        let n = (l.ng * l.chunks) as u64;
        engine.dispatch_1d(
            "moments",
            "mean_partial",
            &[],
            &words,
            &[xs, part.slice()],
            n,
        )?;
        let bufs = [part.slice(), stats.slice()];
        engine.dispatch_1d("moments", "mean_fold", &[], &words, &bufs, l.ng as u64)?;
    }
    for l in &launches {
        let (xs, xb) = window(engine, x, l.start, l.len);
        let words = MomentsParams {
            momentum: running.map_or(0.0, |r| r.momentum),
            ..params(view, l, xb, eps, None)
        };
        let n = (l.ng * l.chunks) as u64;
        let bufs = [xs, stats.slice(), part.slice()];
        engine.dispatch_1d("moments", "dev_partial", &[], &words, &bufs, n)?;
        let (groups, fold) = (l.ng as u64, [part.slice(), stats.slice()]);
        match running {
            Some(r) => {
                let bufs = [fold[0], fold[1], r.mean.slice(), r.var.slice()];
                engine.dispatch_1d("moments", "dev_fold_running", &[], &words, &bufs, groups)?;
            }
            None => engine.dispatch_1d("moments", "dev_fold", &[], &words, &fold, groups)?,
        }
    }
    Ok(stats)
}

/// `group_stats` over the union of every rank's `x` (synchronized batch norm): the same two
/// passes, with the sums of each all-reduced in between. Pass one sums x per group and gives the
/// global mean; pass two sums (x - mean) and its square around that mean, and the variance is
/// finished from the global sums as `dev_fold` finishes it. Two small read-backs per call.
pub(crate) fn group_stats_across(
    x: &Tensor,
    view: GroupView,
    eps: f32,
    world: &dyn Collective,
) -> Result<Tensor> {
    let engine = x.engine();
    let g = view.groups;
    let total = (view.count() * world.size()) as f64;
    let mut sums: Vec<f64> = group_sum(x, view)?
        .to_vec()?
        .into_iter()
        .map(f64::from)
        .collect();
    world.all_reduce_sum_f64(&mut sums)?;
    let mut host = vec![0.0f32; 4 * g];
    for (m, s) in host.iter_mut().zip(&sums) {
        *m = (s / total) as f32;
    }
    let stats = Tensor::from_slice(engine, &host, &[4 * g])?;
    let launches = plan(engine, view, 2)?;
    let part = Tensor::empty(engine, &[partial_words(view, &launches, 2)], DType::F32)?;
    for l in &launches {
        let (xs, xb) = window(engine, x, l.start, l.len);
        // Never the last launch: dev_fold leaves the raw sums for the all-reduce.
        let words = MomentsParams {
            last: 0,
            ..params(view, l, xb, eps, None)
        };
        let n = (l.ng * l.chunks) as u64;
        let bufs = [xs, stats.slice(), part.slice()];
        engine.dispatch_1d("moments", "dev_partial", &[], &words, &bufs, n)?;
        let bufs = [part.slice(), stats.slice()];
        engine.dispatch_1d("moments", "dev_fold", &[], &words, &bufs, l.ng as u64)?;
    }
    let local = stats.to_vec()?;
    let mut dev: Vec<f64> = local[g..3 * g].iter().map(|&v| f64::from(v)).collect();
    world.all_reduce_sum_f64(&mut dev)?;
    for k in 0..g {
        let (s1, s2) = (dev[k], dev[g + k]);
        let lo = s1 / total;
        let var = ((s2 - s1 * lo) / total).max(0.0);
        host[g + k] = lo as f32;
        host[2 * g + k] = var as f32;
        host[3 * g + k] = (1.0 / (var + f64::from(eps)).sqrt()) as f32;
    }
    stats.write(&host)?;
    Ok(stats)
}

/// Sums of every rank's `tensors` (each a small per-group tensor), in one all-reduce: the
/// backward sums of synchronized batch norm.
pub(crate) fn sum_across(tensors: &[&Tensor], world: &dyn Collective) -> Result<Vec<Tensor>> {
    let mut flat = Vec::new();
    for t in tensors {
        flat.extend(t.to_vec()?);
    }
    world.all_reduce_sum(&mut flat)?;
    let mut out = Vec::with_capacity(tensors.len());
    let mut at = 0;
    for t in tensors {
        let n = t.numel();
        out.push(Tensor::from_slice(
            t.engine(),
            &flat[at..at + n],
            t.shape(),
        )?);
        at += n;
    }
    Ok(out)
}

/// Per group, sum(gd) and sum(gd * xhat) with xhat = (x - mean) * rstd from `stats` and
/// gd = dy * gamma[channel] (or dy without gamma): what every normalization backward needs. With
/// `relu_out`, dy counts only where that output is positive: the backward of a relu fused into the
/// forward, with no masked copy of dy.
pub(crate) fn group_grad_sums(
    x: &Tensor,
    dy: &Tensor,
    stats: &Tensor,
    view: GroupView,
    gamma: Option<(&Tensor, ChannelMap)>,
    relu_out: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let engine = x.engine();
    let launches = plan(engine, view, 2)?;
    let part = Tensor::empty(engine, &[partial_words(view, &launches, 2)], DType::F32)?;
    let sum_a = Tensor::empty(engine, &[view.groups], DType::F32)?;
    let sum_b = Tensor::empty(engine, &[view.groups], DType::F32)?;
    let map = gamma.map(|(_, m)| m);
    for l in &launches {
        // x, dy and the relu's output share their layout, so their windows start at the same
        // element.
        let (xs, xb) = window(engine, x, l.start, l.len);
        let (ds, _) = window(engine, dy, l.start, l.len);
        // Without gamma (or a relu) the kernel never reads that binding; x stands in for it.
        let gs = gamma.map_or(xs, |(g, _)| g.slice());
        let ms = relu_out.map_or(xs, |t| window(engine, t, l.start, l.len).0);
        let words = MomentsParams {
            relu_mask: relu_out.is_some() as u32,
            ..params(view, l, xb, 0.0, map)
        };
        let bufs = [xs, ds, stats.slice(), gs, part.slice(), ms];
        let n = (l.ng * l.chunks) as u64;
        engine.dispatch_1d("moments", "grad_partial", &[], &words, &bufs, n)?;
        let bufs = [part.slice(), sum_a.slice(), sum_b.slice()];
        engine.dispatch_1d("moments", "grad_fold", &[], &words, &bufs, l.ng as u64)?;
    }
    Ok((sum_a, sum_b))
}

/// Sum per group of `t` seen as `view`: [groups]. Normalization backward passes use it for the
/// affine gradients (per channel over samples and positions), split over bindings like the rest.
pub(crate) fn group_sum(t: &Tensor, view: GroupView) -> Result<Tensor> {
    let engine = t.engine();
    let launches = plan(engine, view, 1)?;
    let part = Tensor::empty(engine, &[partial_words(view, &launches, 1)], DType::F32)?;
    let out = Tensor::empty(engine, &[view.groups], DType::F32)?;
    for l in &launches {
        let (ts, tb) = window(engine, t, l.start, l.len);
        let words = MomentsParams {
            count: 1, // the mean over a count of 1 is the plain sum
            ..params(view, l, tb, 0.0, None)
        };
        let n = (l.ng * l.chunks) as u64;
        engine.dispatch_1d(
            "moments",
            "mean_partial",
            &[],
            &words,
            &[ts, part.slice()],
            n,
        )?;
        let bufs = [part.slice(), out.slice()];
        engine.dispatch_1d("moments", "mean_fold", &[], &words, &bufs, l.ng as u64)?;
    }
    Ok(out)
}

/// A binding of an elementwise launch: the current chunk of a full-size tensor, or a whole small one.
#[derive(Clone, Copy)]
pub(crate) enum Bind<'a> {
    Chunk(&'a Tensor),
    Whole(&'a Tensor),
}

/// Runs an elementwise `entry` of `shader` over `numel` elements in chunks that fit one binding.
/// Each launch sets its chunk's length and first element in `params`.
pub(crate) fn run_chunked<P: ChunkedParams>(
    shader: &'static str,
    entry: &str,
    numel: usize,
    params: &P,
    binds: &[Bind],
) -> Result<()> {
    run_chunks(shader, entry, false, numel, params, binds)
}

/// [`run_chunked`] through the vec4 form of `entry` (`entry` + "4", four elements per
/// invocation, `n` still counting elements) wherever a chunk's bindings allow it. The caller
/// vouches that every run of four elements shares what the kernel looks up per element (for batch
/// norm: a channel, so inner % 4 == 0).
pub(crate) fn run_chunked_vec4<P: ChunkedParams>(
    shader: &'static str,
    entry: &str,
    numel: usize,
    params: &P,
    binds: &[Bind],
) -> Result<()> {
    run_chunks(shader, entry, true, numel, params, binds)
}

fn run_chunks<P: ChunkedParams>(
    shader: &'static str,
    entry: &str,
    has_vec4: bool,
    numel: usize,
    params: &P,
    binds: &[Bind],
) -> Result<()> {
    let Some(first) = binds.first() else {
        return Err(Error::Invalid(format!("{shader}::{entry}: no bindings")));
    };
    let engine = match first {
        Bind::Chunk(t) | Bind::Whole(t) => t.engine(),
    };
    let mut words = *params;
    let max = engine.max_binding_words() as usize;
    let vec4_entry = format!("{entry}4");
    for (start, len) in super::chunks(numel, max) {
        words.set_chunk(len as u32, start as u32);
        let bufs: Vec<_> = binds
            .iter()
            .map(|b| match b {
                Bind::Chunk(t) => t.slice_elems(start, len),
                Bind::Whole(t) => t.slice(),
            })
            .collect();
        let chunked: Vec<_> = binds
            .iter()
            .zip(&bufs)
            .filter(|(b, _)| matches!(b, Bind::Chunk(_)))
            .map(|(_, s)| *s)
            .collect();
        if has_vec4 && engine.vec4_fits(&chunked) {
            let n = (len / 4) as u64;
            engine.dispatch_1d(shader, &vec4_entry, &[], &words, &bufs, n)?;
        } else {
            engine.dispatch_1d(shader, entry, &[], &words, &bufs, len as u64)?;
        }
    }
    Ok(())
}

/// Checks that an optional affine parameter is an f32 vector of `len`.
pub(crate) fn check_affine(op: &str, what: &str, t: Option<&Tensor>, len: usize) -> Result<()> {
    let Some(t) = t else { return Ok(()) };
    super::check_f32(op, &[t])?;
    if t.shape() != [len] {
        return Err(Error::Shape(format!(
            "{op}: {what} {:?} must have shape [{len}]",
            t.shape()
        )));
    }
    Ok(())
}

/// Checks that eps is usable (finite, not negative).
pub(crate) fn check_eps(op: &str, eps: f32) -> Result<()> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::Invalid(format!(
            "{op}: eps must be finite and >= 0, got {eps}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_invocation_covers_more_than_the_loop_budget() {
        for groups in [1, 64, 8192, 16_384, 1 << 20] {
            for count in [1, 70_000, 12_845_056, 1 << 30] {
                let view = GroupView {
                    outer: count,
                    groups,
                    inner: 1,
                };
                let len = chunk_len(view);
                assert!(len <= LOOP_BUDGET, "{view:?}: chunks of {len}");
                // The fold pass walks one partial per chunk.
                assert!(count.div_ceil(len) <= LOOP_BUDGET, "{view:?}: {len}");
            }
        }
    }
}
