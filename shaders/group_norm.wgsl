// Per-sample grouped normalization of a [N, C, inner] tensor: group norm, and through it layer norm
// ([rows, D] as C = D, inner = 1, one group) and weight standardization ([O, fan_in] likewise,
// without affine). Statistics row s covers `group_len` consecutive elements; moments.wgsl gives them
// as a [4, rows] tensor: mean, mean correction, biased variance, rstd. Affine parameters are per
// channel. Entry points run over chunks of the flat tensor; `start` is the chunk's first element.

struct Params {
    n: u32,
    start: u32,
    channels: u32,
    inner: u32,
    // Elements per statistics row ((C / G) * inner) and the number of rows (N * G).
    group_len: u32,
    rows: u32,
    has_gamma: u32,
    has_beta: u32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read> sum_gd: array<f32>;
@group(0) @binding(7) var<storage, read> sum_gd_xhat: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

fn index(gid: vec3<u32>) -> u32 {
    return flat_index(gid, p.pitch);
}

// Divisions through div_fast: llvmpipe runs u32 `/` and `%` lane by lane.
fn row(i: u32) -> u32 {
    return div_fast(p.start + i, p.group_len);
}

fn channel(i: u32) -> u32 {
    let q = div_fast(p.start + i, p.inner);
    return q - div_fast(q, p.channels) * p.channels;
}

fn xhat(i: u32, s: u32) -> f32 {
    return ((x[i] - stats[s]) - stats[p.rows + s]) * stats[3u * p.rows + s];
}

fn gamma_of(i: u32) -> f32 {
    if p.has_gamma != 0u {
        return gamma[channel(i)];
    }
    return 1.0;
}

// y = xhat * gamma + beta.
@compute @workgroup_size(256)
fn normalize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.n { return; }
    var y = xhat(i, row(i)) * gamma_of(i);
    if p.has_beta != 0u {
        y += beta[channel(i)];
    }
    out[i] = y;
}

// With gd = dy * gamma: dx = rstd * (gd - mean(gd) - xhat * mean(gd * xhat)) over the row.
@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.n { return; }
    let s = row(i);
    let n = f32(p.group_len);
    let d = dy[i] * gamma_of(i) - sum_gd[s] / n - xhat(i, s) * (sum_gd_xhat[s] / n);
    out[i] = stats[3u * p.rows + s] * d;
}

// dy * xhat, which summed per channel is the gradient of gamma.
@compute @workgroup_size(256)
fn dy_xhat(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.n { return; }
    out[i] = dy[i] * xhat(i, row(i));
}
