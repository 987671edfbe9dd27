// Row-wise L2 normalization of a [rows, cols] matrix: y = x / max(||x||, eps), and its backward.
// Row sums are one invocation per row (or per chunk of a long row, whose sums src/ops/l2_normalize.rs
// then adds up), summed in order: deterministic and barrier-free.
// Launches may cover a window of rows; the *_base fields are element offsets inside the bindings.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    a_base: u32,
    b_base: u32,
    s_base: u32,
    t_base: u32,
    out_base: u32,
    // row_dot: columns per chunk, and chunks per row.
    chunk_len: u32,
    chunks: u32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// Per-row sums of squares of the forward input.
@group(0) @binding(3) var<storage, read> sumsq: array<f32>;
// Per-row sum(dy * y) for the backward.
@group(0) @binding(4) var<storage, read> dots: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn index(gid: vec3<u32>) -> u32 {
    return flat_index(gid, p.pitch);
}

// out[r, c] = sum_j a[r, j] * b[r, j] over chunk c of the columns (a and b may be the same buffer).
@compute @workgroup_size(256)
fn row_dot(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.rows * p.chunks { return; }
    let r = i / p.chunks;
    let j0 = (i % p.chunks) * p.chunk_len;
    let j1 = min(j0 + p.chunk_len, p.cols);
    var acc = 0.0;
    let ia = p.a_base + r * p.cols;
    let ib = p.b_base + r * p.cols;
    for (var j = j0; j < j1; j++) {
        acc += a[ia + j] * b[ib + j];
    }
    out[p.out_base + i] = acc;
}

// out[r, j] = a[r, j] / max(sqrt(sumsq[r]), eps).
@compute @workgroup_size(256)
fn normalize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.rows * p.cols { return; }
    let r = i / p.cols;
    let norm = max(sqrt(sumsq[p.s_base + r]), p.eps);
    out[p.out_base + i] = a[p.a_base + i] / norm;
}

// a = y (the forward output), b = dy. Where the norm exceeds eps,
// dx = (dy - y * sum(dy * y)) / ||x||; below it the divisor is the constant eps, so dx = dy / eps.
@compute @workgroup_size(256)
fn normalize_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= p.rows * p.cols { return; }
    let r = i / p.cols;
    let norm = sqrt(sumsq[p.s_base + r]);
    let dy = b[p.b_base + i];
    var dx = dy / p.eps;
    if norm > p.eps {
        dx = (dy - a[p.a_base + i] * dots[p.t_base + r]) / norm;
    }
    out[p.out_base + i] = dx;
}
