// Batch norm over a [N, C, inner] view (inner = H*W, or 1 for [N, C]). The per-channel statistics
// come from moments.wgsl as a [4, C] tensor: mean, mean correction, biased variance, rstd.
// Elementwise entry points run over chunks of the flat tensor; `start` is the chunk's first element.

struct Params {
    n: u32,
    start: u32,
    channels: u32,
    inner: u32,
    // Elements per channel (N * inner).
    count: f32,
    has_gamma: u32,
    has_beta: u32,
    momentum: f32,
    eps: f32,
    // normalize: max(y, 0) as well (batch_norm_relu); backward: dy only where that output > 0.
    relu: u32,
    pitch: u32,
}

// Each vec4 view sits right after its scalar binding, so both forms of an entry take their
// buffers in the same order.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> dy4: array<vec4<f32>>;
// The backward passes with `relu`: the forward's output, whose sign masks dy.
@group(0) @binding(5) var<storage, read> y_fwd: array<f32>;
@group(0) @binding(6) var<storage, read> y_fwd4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> stats: array<f32>;
@group(0) @binding(8) var<storage, read> gamma: array<f32>;
@group(0) @binding(9) var<storage, read> beta: array<f32>;
@group(0) @binding(10) var<storage, read> sum_dy: array<f32>;
@group(0) @binding(11) var<storage, read> sum_dy_xhat: array<f32>;
@group(0) @binding(12) var<storage, read_write> out: array<f32>;
@group(0) @binding(13) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(15) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(16) var<storage, read_write> stats_out: array<f32>;

fn index(gid: vec3<u32>) -> u32 {
    return flat_index(gid, p.pitch);
}

// (start + i) / inner % channels, without the integer divisions that llvmpipe runs lane by lane
// (two per element cost more than the rest of the pass).
fn channel(i: u32) -> u32 {
    let q = div_fast(p.start + i, p.inner);
    return q - div_fast(q, p.channels) * p.channels;
}

fn xhat(i: u32, c: u32) -> f32 {
    return ((x[i] - stats[c]) - stats[p.channels + c]) * stats[3u * p.channels + c];
}

fn gamma_of(c: u32) -> f32 {
    if p.has_gamma != 0u {
        return gamma[c];
    }
    return 1.0;
}

// dy through the fused relu: zero where the forward's output was not positive.
fn dy_at(i: u32) -> f32 {
    if p.relu != 0u && !(y_fwd[i] > 0.0) {
        return 0.0;
    }
    return dy[i];
}

fn dy4_at(i: u32) -> vec4<f32> {
    if p.relu != 0u {
        return select(vec4<f32>(0.0), dy4[i], y_fwd4[i] > vec4<f32>(0.0));
    }
    return dy4[i];
}

// y = xhat * gamma + beta, then max(y, 0) where `relu` is set.
@compute @workgroup_size(256)
fn normalize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.n { return; }
    let c = channel(i);
    var y = xhat(i, c) * gamma_of(c);
    if p.has_beta != 0u {
        y += beta[c];
    }
    if p.relu != 0u {
        y = max(y, 0.0);
    }
    out[i] = y;
}

// Training: dx = rstd * gamma * (dy - mean(dy) - xhat * mean(dy * xhat)).
@compute @workgroup_size(256)
fn backward_train(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.n { return; }
    let c = channel(i);
    let r = stats[3u * p.channels + c];
    let d = dy_at(i) - sum_dy[c] / p.count - xhat(i, c) * (sum_dy_xhat[c] / p.count);
    out[i] = r * gamma_of(c) * d;
}

// Eval: the statistics are constants, so dx = dy * gamma * rstd.
@compute @workgroup_size(256)
fn backward_eval(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.n { return; }
    let c = channel(i);
    out[i] = dy_at(i) * gamma_of(c) * stats[3u * p.channels + c];
}

// The three passes above four elements per invocation, for inner % 4 == 0 (the four share one
// channel) and 16-byte aligned chunks; `n` still counts elements. The arithmetic is the scalar
// form's, in the same order, so both forms give the same bits.
fn xhat4(i: u32, c: u32) -> vec4<f32> {
    return ((x4[i] - stats[c]) - stats[p.channels + c]) * stats[3u * p.channels + c];
}

@compute @workgroup_size(256)
fn normalize4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if 4u * i >= p.n { return; }
    let c = channel(4u * i);
    var y = xhat4(i, c) * gamma_of(c);
    if p.has_beta != 0u {
        y += beta[c];
    }
    if p.relu != 0u {
        y = max(y, vec4<f32>(0.0));
    }
    out4[i] = y;
}

@compute @workgroup_size(256)
fn backward_train4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if 4u * i >= p.n { return; }
    let c = channel(4u * i);
    let r = stats[3u * p.channels + c];
    let d = dy4_at(i) - sum_dy[c] / p.count - xhat4(i, c) * (sum_dy_xhat[c] / p.count);
    out4[i] = r * gamma_of(c) * d;
}

@compute @workgroup_size(256)
fn backward_eval4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if 4u * i >= p.n { return; }
    let c = channel(4u * i);
    out4[i] = dy4_at(i) * gamma_of(c) * stats[3u * p.channels + c];
}

// running = (1 - m) * running + m * batch, with the unbiased batch variance (as PyTorch).
@compute @workgroup_size(256)
fn update_running(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = index(gid);
    if c >= p.channels { return; }
    let mean = stats[c] + stats[p.channels + c];
    let unbiased = stats[2u * p.channels + c] * (p.count / (p.count - 1.0));
    running_mean[c] = (1.0 - p.momentum) * running_mean[c] + p.momentum * mean;
    running_var[c] = (1.0 - p.momentum) * running_var[c] + p.momentum * unbiased;
}

// Eval-mode statistics in the moments layout, from the running buffers.
@compute @workgroup_size(256)
fn eval_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = index(gid);
    if c >= p.channels { return; }
    let v = running_var[c];
    stats_out[c] = running_mean[c];
    stats_out[p.channels + c] = 0.0;
    stats_out[2u * p.channels + c] = v;
    stats_out[3u * p.channels + c] = 1.0 / sqrt(v + p.eps);
}
