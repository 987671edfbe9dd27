//! 2-D convolution (NCHW, any kernel size, stride and zero padding, optional bias) as implicit GEMM
//! (shaders/conv2d.wgsl): forward, gradient with respect to the input, and gradient with respect
//! to the weight, the last split over its long reduction axis (batch × output pixels) into partial
//! sums that a deterministic reduction adds up. GPUs use the workgroup-memory tiled variant
//! (shaders/conv2d_tiled.wgsl) with the same parameters, bindings and grid.
//!
//! Batches whose input or output exceed one binding are processed in groups of samples.
//!
//! Software Vulkan silently ends an invocation's loops after `SOFTWARE_LOOP_LIMIT` iterations, and
//! in the barrier-free kernels the 8-wide loops over a block count too (measured on llvmpipe,
//! Mesa 22.3: about 10 iterations per kernel tap of the forward and input gradient, and per pixel
//! of the weight gradient). So the forward and input-gradient channel loops are split into ranges,
//! one launch each, that add into the output, and a weight-gradient split covers at most
//! `PIXELS_PER_SPLIT` pixels: every invocation stays under `LOOP_BUDGET`.

use super::bias::channel_sum;
use super::conv2d_geometry::Geometry;
use super::conv2d_unfold;
use super::reduce::sum_raw;
use super::uniform_window::{self, UniformWindow};
use super::{check_f32, check_loop_budget, chunks, window, LOOP_BUDGET};
use crate::engine::{BufSlice, ConvVariant, Engine, MatmulVariant};
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::{DType, Tensor};

/// Floats the weight-gradient partial sums may occupy at once (64 MiB).
const PARTIAL_BUDGET: usize = 16 << 20;
/// Output pixels one weight-gradient split should cover at least.
const MIN_PIXELS_PER_SPLIT: usize = 256;
/// Output pixels one weight-gradient split covers at most: the barrier-free kernel counts about 10
/// loop iterations per pixel on llvmpipe (its 8-wide gather loop is not unrolled).
const PIXELS_PER_SPLIT: usize = LOOP_BUDGET / 10;
/// A workgroup covers 64 GEMM columns and 64 GEMM rows in both variants (8x8 invocations with
/// 8x8 blocks each, or 16x16 invocations with 4x4 blocks each).
const TILE: usize = 64;

/// The kernel family, chosen like matmul's: barrier-free register blocks on software adapters,
/// tiles in workgroup memory on GPUs.
/// The conv2d shader this engine runs (`byol info` prints it).
pub fn shader(engine: &Engine) -> &'static str {
    match engine.matmul_variant() {
        MatmulVariant::Tiled => "conv2d_tiled",
        _ => "conv2d",
    }
}

impl Geometry {
    /// Samples per launch: the x and y slices fit one binding and the grid fits its limits.
    fn samples_per_launch(&self, engine: &Engine) -> Result<usize> {
        let max = engine.max_binding_words() as usize - 64;
        let per = self.in_per_sample().max(self.out_per_sample());
        let max_groups = engine.gpu().limits.max_compute_workgroups_per_dimension as usize;
        let pixels = (self.h * self.w).max(self.oh * self.ow);
        let by_grid = (max_groups * TILE / pixels).max(1);
        let n = (max / per).min(by_grid).min(self.batch);
        if n == 0 {
            return Err(Error::Shape(format!(
                "conv2d: one sample ({per} floats) exceeds the adapter's binding limit"
            )));
        }
        Ok(n)
    }
}

pub use super::conv2d_geometry::ConvParams;

/// Output size of a convolution along one axis.
pub fn conv_out_size(input: usize, kernel: usize, stride: usize, pad: usize) -> usize {
    (input + 2 * pad).saturating_sub(kernel) / stride.max(1) + 1
}

/// y = conv2d(x, w) + bias, with x [N, C, H, W], w [O, C, KH, KW], bias [O]; y [N, O, OH, OW].
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    check_f32("conv2d", &[x, w])?;
    let g = Geometry::new(x.shape(), w.shape(), stride, pad)?;
    if let Some(b) = bias {
        check_f32("conv2d", &[b])?;
        if b.shape() != [g.o] {
            return Err(Error::Shape(format!(
                "conv2d: bias {:?} must be [{}]",
                b.shape(),
                g.o
            )));
        }
    }
    let engine = x.engine();
    let y = Tensor::empty(engine, &[g.batch, g.o, g.oh, g.ow], DType::F32)?;
    let kernel = choose(engine, &g, Pass::Forward, |kernel| {
        let y = Tensor::empty(engine, &[g.batch, g.o, g.oh, g.ow], DType::F32)?;
        forward_with(engine, &g, x, w, bias, &y, kernel)
    })?;
    forward_with(engine, &g, x, w, bias, &y, kernel)?;
    let (sx, sw) = (x.clone(), w.clone());
    let has_bias = bias.is_some();
    let mut inputs = vec![x, w];
    if let Some(b) = bias {
        inputs.push(b);
    }
    let needs_db = bias.is_some_and(Tensor::requires_grad);
    tape::record(&y, &inputs, move |dy| {
        let (need_dx, need_dw) = (sx.requires_grad(), sw.requires_grad());
        let dx = need_dx.then(|| input_gradient(&g, &sw, dy)).transpose()?;
        let dw = need_dw.then(|| weight_gradient(&g, &sx, dy)).transpose()?;
        let mut grads = vec![dx, dw];
        if has_bias {
            grads.push(if needs_db {
                Some(channel_sum(dy, g.batch, g.o, g.oh * g.ow)?)
            } else {
                None
            });
        }
        Ok(grads)
    });
    Ok(y)
}

/// The input gradient of a convolution alone (not recorded): dx [N, C, H, W] from the weight and
/// dy [N, O, OH, OW]. Benches and manual backward passes use it.
pub fn conv2d_backward_input(
    x_shape: &[usize],
    w: &Tensor,
    dy: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let g = Geometry::new(x_shape, w.shape(), stride, pad)?;
    check_dy(&g, dy)?;
    input_gradient(&g, w, dy)
}

/// The weight gradient of a convolution alone (not recorded): dw [O, C, KH, KW] from x and dy.
pub fn conv2d_backward_weight(
    x: &Tensor,
    w_shape: &[usize],
    dy: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let g = Geometry::new(x.shape(), w_shape, stride, pad)?;
    check_dy(&g, dy)?;
    weight_gradient(&g, x, dy)
}

fn forward_with(
    engine: &Engine,
    g: &Geometry,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    kernel: Kernel,
) -> Result<()> {
    match kernel {
        Kernel::Unfold => conv2d_unfold::forward_into(engine, g, x, w, bias, y),
        Kernel::Direct => forward_into(engine, g, x, w, bias, y, false),
        Kernel::DirectUniform => forward_into(engine, g, x, w, bias, y, true),
    }
}

fn input_gradient(g: &Geometry, w: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let run = |kernel: Kernel| match kernel {
        Kernel::Unfold => {
            // The unfold path reads x only for the weight gradient, not asked for here.
            let (dx, _) = conv2d_unfold::backward(g, w, w, dy, true, false)?;
            dx.ok_or_else(|| Error::Shape("conv2d: no input gradient".into()))
        }
        Kernel::Direct => backward_input(g, w, dy, false),
        Kernel::DirectUniform => backward_input(g, w, dy, true),
    };
    let kernel = choose(dy.engine(), g, Pass::InputGrad, |k| run(k).map(drop))?;
    run(kernel)
}

fn weight_gradient(g: &Geometry, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let run = |kernel: Kernel| {
        if kernel == Kernel::Unfold {
            let (_, dw) = conv2d_unfold::backward(g, x, x, dy, false, true)?;
            dw.ok_or_else(|| Error::Shape("conv2d: no weight gradient".into()))
        } else {
            backward_weight(g, x, dy)
        }
    };
    let kernel = choose(dy.engine(), g, Pass::WeightGrad, |k| run(k).map(drop))?;
    run(kernel)
}

/// The kernels a pass can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// Implicit GEMM reading the weight through storage.
    Direct,
    /// Implicit GEMM reading the weight through uniform windows (uniform_window.rs).
    DirectUniform,
    /// Explicit GEMM (conv2d_unfold.rs).
    Unfold,
}

impl Kernel {
    fn name(self) -> &'static str {
        match self {
            Kernel::Direct => "direct",
            Kernel::DirectUniform => "direct-uniform",
            Kernel::Unfold => "unfold",
        }
    }
}

/// The three passes of a convolution; each runs direct or unfolded on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Forward,
    InputGrad,
    WeightGrad,
}

impl Pass {
    fn name(self) -> &'static str {
        match self {
            Pass::Forward => "forward",
            Pass::InputGrad => "input-grad",
            Pass::WeightGrad => "weight-grad",
        }
    }
}

/// The kernel this pass of this convolution runs: forced by the engine's variant (falling back to
/// `Direct` where the forced one cannot serve it), else the tuner's choice among the candidates
/// (`time(kernel)` records the pass either way). Static defaults, measured on llvmpipe (2 cores,
/// width 1/4, batch 32): the unfolded input gradient (3-12x the direct one on ResNet-18's shapes),
/// the forward through uniform weight windows where at most `UNIFORM_DEFAULT_WINDOWS` serve it
/// (1.4-1.8x the storage one; at 16 windows, layer 4, no faster), the direct weight gradient; on
/// GPUs direct everywhere. The uniform input gradient is forced only (tests): it gained little
/// over the direct one, which the unfolded one beats several times, so timing it would only
/// lengthen the first step.
fn choose(
    engine: &Engine,
    g: &Geometry,
    pass: Pass,
    mut time: impl FnMut(Kernel) -> Result<()>,
) -> Result<Kernel> {
    let unfold = conv2d_unfold::samples_per_group(engine, g).is_some();
    let rows = weight_rows_per_window(engine, g, pass).filter(|_| pass != Pass::WeightGrad);
    match engine.conv_variant() {
        ConvVariant::Unfold if unfold => return Ok(Kernel::Unfold),
        ConvVariant::DirectUniform if rows.is_some() => return Ok(Kernel::DirectUniform),
        ConvVariant::Unfold | ConvVariant::DirectUniform | ConvVariant::Direct => {
            return Ok(Kernel::Direct)
        }
        ConvVariant::Auto => {}
    }
    let uniform_first = rows.is_some_and(|r| g.o.div_ceil(r) <= UNIFORM_DEFAULT_WINDOWS);
    let order: &[Kernel] = match (engine.gpu().is_software(), pass) {
        (true, Pass::InputGrad) => &[Kernel::Unfold, Kernel::Direct],
        (true, Pass::Forward) if uniform_first => {
            &[Kernel::DirectUniform, Kernel::Direct, Kernel::Unfold]
        }
        (_, Pass::Forward) => &[Kernel::Direct, Kernel::Unfold, Kernel::DirectUniform],
        _ => &[Kernel::Direct, Kernel::Unfold],
    };
    let candidates: Vec<&'static str> = order
        .iter()
        .filter(|k| match k {
            Kernel::Unfold => unfold,
            Kernel::DirectUniform => rows.is_some(),
            Kernel::Direct => true,
        })
        .map(|k| k.name())
        .collect();
    let key = format!(
        "conv2d {} n{} c{} {}x{} o{} k{}x{} s{} p{} [direct: {}]",
        pass.name(),
        g.batch,
        g.c,
        g.h,
        g.w,
        g.o,
        g.kh,
        g.kw,
        g.stride,
        g.pad,
        shader(engine)
    );
    let by_name = |name: &str| {
        order
            .iter()
            .copied()
            .find(|k| k.name() == name)
            .unwrap_or(Kernel::Direct)
    };
    let name = engine.choose_kernel(&key, &candidates, |k| time(by_name(k)))?;
    Ok(by_name(name))
}

/// Most uniform windows (one launch each) a forward may take for them to be its static default.
const UNIFORM_DEFAULT_WINDOWS: usize = 4;

/// Weight rows ([C, KH, KW] for each output channel) one uniform window serves, where the
/// forward or input gradient can read its weight that way: the barrier-free kernels only; a
/// forward's launch covers whole 8-row blocks (fewer would leave most of each block idle), an
/// input gradient's at least one row (its launches split the reduction over output channels).
fn weight_rows_per_window(engine: &Engine, g: &Geometry, pass: Pass) -> Option<usize> {
    if shader(engine) != "conv2d" {
        return None;
    }
    let rows = uniform_window::rows_per_window(engine, g.c * g.kh * g.kw)?;
    match pass {
        Pass::Forward if rows >= g.o => Some(g.o),
        Pass::Forward => (rows >= 8).then_some(rows / 8 * 8),
        _ => Some(rows),
    }
}

fn check_dy(g: &Geometry, dy: &Tensor) -> Result<()> {
    if dy.shape() != [g.batch, g.o, g.oh, g.ow] {
        return Err(Error::Shape(format!(
            "conv2d: output gradient {:?} must be [{}, {}, {}, {}]",
            dy.shape(),
            g.batch,
            g.o,
            g.oh,
            g.ow
        )));
    }
    check_f32("conv2d", &[dy])
}

/// The direct forward; `uniform`: reading the weight through uniform windows, one launch per
/// range of output channels that a window holds (the caller checked that windows can serve it).
fn forward_into(
    engine: &Engine,
    g: &Geometry,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    uniform: bool,
) -> Result<()> {
    let ranges = channel_ranges(engine, "conv2d", g.c, g)?;
    let row = g.c * g.kh * g.kw;
    let out_ranges: Vec<(usize, usize)> = match uniform {
        true => {
            let rows = weight_rows_per_window(engine, g, Pass::Forward)
                .ok_or_else(|| Error::Shape("conv2d: no uniform weight window fits".into()))?;
            chunks(g.o, rows).collect()
        }
        false => vec![(0, g.o)],
    };
    let windows = weight_windows(engine, w, row, &out_ranges, uniform)?;
    let per = g.samples_per_launch(engine)?;
    let entry = if rows_3x3(engine, g) {
        "forward_3x3_rows"
    } else {
        "forward"
    };
    let mut n0 = 0;
    while n0 < g.batch {
        let n = per.min(g.batch - n0);
        let (xs, xb) = window(engine, x, n0 * g.in_per_sample(), n * g.in_per_sample());
        let (ys, yb) = window(engine, y, n0 * g.out_per_sample(), n * g.out_per_sample());
        // Without a bias the weight stands in for the (unread) bias binding.
        let bs = bias.unwrap_or(w).slice();
        for (&(o0, o_len), win) in out_ranges.iter().zip(&windows) {
            let (ws, shift) = bind_window(engine, w, win.as_ref());
            let grid = [
                (n * g.oh * g.ow).div_ceil(TILE) as u32,
                o_len.div_ceil(TILE) as u32,
                1,
            ];
            for &(c0, len) in &ranges {
                let params = ConvParams {
                    chan_begin: c0 as u32,
                    chan_end: (c0 + len) as u32,
                    accumulate: (c0 > 0) as u32,
                    o_begin: o0 as u32,
                    o_end: (o0 + o_len) as u32,
                    w_shift: shift,
                    ..g.params(n, xb, yb, bias.is_some(), 0, 0)
                };
                let mut bufs = vec![xs, w.slice(), bs, ys];
                bufs.extend(with_window(engine, ws));
                engine.dispatch(
                    shader(engine),
                    entry,
                    &weight_constants(engine, uniform),
                    &params,
                    &bufs,
                    grid,
                )?;
            }
        }
        n0 += n;
    }
    Ok(())
}

/// The direct input gradient; `uniform` as in `forward_into`, its reduction over output channels
/// split further so that each launch's weight rows fit one window.
fn backward_input(g: &Geometry, w: &Tensor, dy: &Tensor, uniform: bool) -> Result<Tensor> {
    let engine = dy.engine();
    let mut ranges = channel_ranges(engine, "conv2d input gradient", g.o, g)?;
    let row = g.c * g.kh * g.kw;
    if uniform {
        let rows = weight_rows_per_window(engine, g, Pass::InputGrad)
            .ok_or_else(|| Error::Shape("conv2d: no uniform weight window fits".into()))?;
        ranges = ranges
            .into_iter()
            .flat_map(|(o0, len)| chunks(len, rows).map(move |(a, l)| (o0 + a, l)))
            .collect();
    }
    let windows = weight_windows(engine, w, row, &ranges, uniform)?;
    let dx = Tensor::empty(engine, &[g.batch, g.c, g.h, g.w], DType::F32)?;
    let per = g.samples_per_launch(engine)?;
    let mut n0 = 0;
    while n0 < g.batch {
        let n = per.min(g.batch - n0);
        let (dys, yb) = window(engine, dy, n0 * g.out_per_sample(), n * g.out_per_sample());
        let (dxs, xb) = window(engine, &dx, n0 * g.in_per_sample(), n * g.in_per_sample());
        let grid = [
            (n * g.h * g.w).div_ceil(TILE) as u32,
            g.c.div_ceil(TILE) as u32,
            1,
        ];
        for (&(o0, len), win) in ranges.iter().zip(&windows) {
            let (ws, shift) = bind_window(engine, w, win.as_ref());
            let params = ConvParams {
                chan_begin: o0 as u32,
                chan_end: (o0 + len) as u32,
                accumulate: (o0 > 0) as u32,
                w_shift: shift,
                ..g.params(n, xb, yb, false, 0, 0)
            };
            let mut bufs = vec![w.slice(), dys, dxs];
            bufs.extend(with_window(engine, ws));
            engine.dispatch(
                shader(engine),
                "backward_input",
                &weight_constants(engine, uniform),
                &params,
                &bufs,
                grid,
            )?;
        }
        n0 += n;
    }
    Ok(dx)
}

/// One uniform window per range of weight rows (`row` floats each), or none when reading storage.
fn weight_windows(
    engine: &Engine,
    w: &Tensor,
    row: usize,
    ranges: &[(usize, usize)],
    uniform: bool,
) -> Result<Vec<Option<UniformWindow>>> {
    ranges
        .iter()
        .map(|&(r0, len)| {
            uniform
                .then(|| UniformWindow::new(engine, w.slice(), r0 * row, len * row))
                .transpose()
        })
        .collect()
}

/// The binding for the kernel's uniform window and its index shift: the unread placeholder when
/// the kernel reads storage.
fn bind_window<'a>(
    engine: &'a Engine,
    w: &'a Tensor,
    win: Option<&'a UniformWindow>,
) -> (BufSlice<'a>, u32) {
    match win {
        Some(win) => (win.slice(w.buffer()), win.shift()),
        None => (engine.unused_uniform_window(), 0),
    }
}

/// The window binding, for the barrier-free kernels only (the tiled ones have none).
fn with_window<'a>(engine: &Engine, ws: BufSlice<'a>) -> Option<BufSlice<'a>> {
    (shader(engine) == "conv2d").then_some(ws)
}

fn weight_constants(engine: &Engine, uniform: bool) -> Vec<(&'static str, f64)> {
    match shader(engine) {
        "conv2d" => vec![("WEIGHT_UNIFORM", uniform as u8 as f64)],
        _ => Vec::new(),
    }
}

fn backward_weight(g: &Geometry, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let engine = dy.engine();
    let weights = g.o * g.c * g.kh * g.kw;
    let max = engine.max_binding_words() as usize - 64;
    let per = g.samples_per_launch(engine)?;
    // Splits one launch can hold: its partial sums fit the budget and one binding, and its grid.
    let max_groups = engine.gpu().limits.max_compute_workgroups_per_dimension as usize;
    // The barrier-free kernel numbers (block, split) pairs along one grid axis, 64 a workgroup.
    let blocks = (g.c * g.kh * g.kw).div_ceil(8) * g.o.div_ceil(8);
    let dense = shader(engine) == "conv2d";
    let by_grid = if dense {
        max_groups * 64 / blocks
    } else {
        max_groups
    };
    let per_launch = (PARTIAL_BUDGET.min(max) / weights).min(by_grid).max(1);
    let mut total: Option<Tensor> = None;
    let mut n0 = 0;
    while n0 < g.batch {
        let n = per.min(g.batch - n0);
        let pixels = n * g.oh * g.ow;
        let splits = (pixels / MIN_PIXELS_PER_SPLIT).min(per_launch).max(1);
        // Each invocation loops over the pixels of its split: at most PIXELS_PER_SPLIT of them,
        // with more splits (over several launches where one cannot hold them) for long batches.
        let k_chunk = pixels.div_ceil(splits).min(PIXELS_PER_SPLIT);
        let splits = pixels.div_ceil(k_chunk);
        let (xs, xb) = window(engine, x, n0 * g.in_per_sample(), n * g.in_per_sample());
        let (dys, yb) = window(engine, dy, n0 * g.out_per_sample(), n * g.out_per_sample());
        for (split0, count) in chunks(splits, per_launch) {
            let partial = Tensor::empty(engine, &[count * weights], DType::F32)?;
            let params = ConvParams {
                splits: count as u32,
                ..g.params(n, xb, yb, false, k_chunk, split0)
            };
            let grid = if dense {
                [(blocks * count).div_ceil(64) as u32, 1, 1]
            } else {
                [
                    (g.c * g.kh * g.kw).div_ceil(TILE) as u32,
                    g.o.div_ceil(TILE) as u32,
                    count as u32,
                ]
            };
            engine.dispatch(
                shader(engine),
                "backward_weight",
                &[],
                &params,
                &[xs, dys, partial.slice()],
                grid,
            )?;
            let group = if count > 1 {
                sum_raw(&partial, 1, count, weights, 1.0)?
            } else {
                partial
            };
            total = Some(match total {
                None => group,
                Some(t) => super::add(&t, &group)?,
            });
        }
        n0 += n;
    }
    total
        .ok_or_else(|| Error::Shape("conv2d with an empty batch".into()))?
        .view(&[g.o, g.c, g.kh, g.kw])
}

/// Whether the direct forward runs `forward_3x3_rows` (conv2d.wgsl): a 3x3 kernel at stride 1
/// whose output rows hold whole 8-pixel blocks.
fn rows_3x3(engine: &Engine, g: &Geometry) -> bool {
    shader(engine) == "conv2d" && g.kh == 3 && g.kw == 3 && g.stride == 1 && g.ow.is_multiple_of(8)
}

/// The channel ranges, one launch each, that the forward (input gradient) sums over its `channels`
/// input (output) channels. The barrier-free kernel counts about 4 + 3·kh + 10·kh·kw loop
/// iterations per channel on llvmpipe (measured, Mesa 22.3), so its channel loop is split into
/// ranges of at most `LOOP_BUDGET` iterations. The tiled kernel (about 1.2 per channel and tap,
/// measured likewise) takes every channel in one launch: a GPU needs no split, and on a software
/// adapter, where it only runs when forced, a loop past the budget is refused.
fn channel_ranges(
    engine: &Engine,
    op: &str,
    channels: usize,
    g: &Geometry,
) -> Result<Vec<(usize, usize)>> {
    let taps = g.kh * g.kw;
    if shader(engine) == "conv2d_tiled" {
        let iterations = (channels * taps * 5 / 4) as u64;
        let hint = "use the barrier-free kernels there (MatmulVariant::Blocked, the default)";
        check_loop_budget(engine, op, iterations, hint)?;
        return Ok(vec![(0, channels)]);
    }
    // forward_3x3_rows loads a run of 10 inputs per kernel row on top (an allowance, not measured).
    let rows = if rows_3x3(engine, g) { 12 * g.kh } else { 0 };
    let per_channel = 4 + 3 * g.kh + 10 * taps + rows;
    if per_channel > LOOP_BUDGET {
        let hint = "use a smaller kernel there";
        check_loop_budget(engine, op, per_channel as u64, hint)?;
        return Ok(vec![(0, channels)]);
    }
    Ok(chunks(channels, LOOP_BUDGET / per_channel).collect())
}
