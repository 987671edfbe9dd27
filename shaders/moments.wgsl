// Per-group statistics for the normalization ops, over a [outer, groups, inner] view: group g
// covers the elements (a, g, b) for every a and b. Batch norm views [N, C, H*W]; layer norm, group
// norm and weight standardization view [1, rows, row length].
//
// Deterministic and two-pass. A launch covers groups g0..g0+ng over some outer slabs (tensors
// larger than a binding take several); in it each (group, chunk) writes a partial, then a fold pass
// adds them per group, in a fixed order, to the sums of the earlier launches, and the last launch
// turns the sums into statistics. Pass 1 gives the mean m; pass 2 sums d = x - m and d*d. The mean
// of d corrects m (kept apart as mean_lo, so x - m - mean_lo stays accurate in f32 when the mean is
// large next to the spread), and var = (sum d^2 - (sum d)^2 / n) / n never cancels badly.
//
// Stats layout, [4, groups]: mean (head), mean_lo (correction), biased variance, 1/sqrt(var + eps).
// While launches are still folding, rows 0..2 hold the running sums instead.

struct Params {
    // The view: groups and inner are the strides of the whole tensor.
    groups: u32,
    inner: u32,
    // This launch covers groups g0..g0+ng; per group, `span` elements (outer slabs times inner) in
    // `chunks` chunks of `chunk_len`.
    g0: u32,
    ng: u32,
    span: u32,
    chunk_len: u32,
    chunks: u32,
    // Element offset of the launch's first element inside the x and dy bindings.
    x_base: u32,
    // Elements per group over the whole view.
    count: u32,
    eps: f32,
    // Affine channel of element (g, b): (g % gmod) * cmul + b / bdiv (gradient sums with gamma).
    gmod: u32,
    cmul: u32,
    bdiv: u32,
    has_gamma: u32,
    // Whether this launch is the first to fold into its groups' sums, and the last.
    first: u32,
    last: u32,
    // grad_partial: dy counts only where mask_by > 0 (the backward of a relu fused into batch
    // norm's forward; mask_by is that forward's output).
    relu_mask: u32,
    // dev_fold_running: batch norm's running-statistics momentum.
    momentum: f32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> part_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> part: array<f32>;
@group(0) @binding(7) var<storage, read_write> stats_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> sum_a: array<f32>;
@group(0) @binding(9) var<storage, read_write> sum_b: array<f32>;
@group(0) @binding(10) var<storage, read> mask_by: array<f32>;
@group(0) @binding(11) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(12) var<storage, read_write> running_var: array<f32>;

// One chunk of one group: its local group index, chunk index and element range.
struct Chunk {
    gl: u32,
    k: u32,
    j0: u32,
    j1: u32,
    valid: bool,
}

fn chunk_of(gid: vec3<u32>) -> Chunk {
    let idx = flat_index(gid, p.pitch);
    var c: Chunk;
    c.valid = idx < p.ng * p.chunks;
    c.gl = idx % p.ng;
    c.k = idx / p.ng;
    c.j0 = c.k * p.chunk_len;
    c.j1 = min(c.j0 + p.chunk_len, p.span);
    return c;
}

// A walk over one chunk's elements in order: the address `e` of element j of local group gl in
// the bindings, and j's position `b` inside its slab. Advancing it costs no integer division per
// element (llvmpipe divides lane by lane, tens of cycles each).
struct Walk {
    e: u32,
    b: u32,
}

fn walk_start(gl: u32, j: u32) -> Walk {
    let a = j / p.inner;
    let b = j - a * p.inner;
    return Walk(p.x_base + (a * p.groups + gl) * p.inner + b, b);
}

fn walk_next(w: Walk) -> Walk {
    var n = Walk(w.e + 1u, w.b + 1u);
    if n.b == p.inner {
        // On to the same group's next slab.
        n.b = 0u;
        n.e += (p.groups - 1u) * p.inner;
    }
    return n;
}

// The fold passes: one invocation per group of the launch.
fn fold_group(gid: vec3<u32>) -> u32 {
    return p.g0 + flat_index(gid, p.pitch);
}

// Adds this launch's partial sums to the running sum `prev` (ignored on the first launch).
fn carry(prev: f32, now: f32) -> f32 {
    return select(prev + now, now, p.first != 0u);
}

@compute @workgroup_size(256)
fn mean_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = chunk_of(gid);
    if !c.valid { return; }
    var acc = 0.0;
    var w = walk_start(c.gl, c.j0);
    for (var j = c.j0; j < c.j1; j++) {
        acc += x[w.e];
        w = walk_next(w);
    }
    part[(p.g0 + c.gl) * p.chunks + c.k] = acc;
}

@compute @workgroup_size(256)
fn mean_fold(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = fold_group(gid);
    if g >= p.g0 + p.ng { return; }
    var acc = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        acc += part_in[g * p.chunks + k];
    }
    let total = carry(stats_out[g], acc);
    stats_out[g] = select(total, total / f32(p.count), p.last != 0u);
}

@compute @workgroup_size(256)
fn dev_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = chunk_of(gid);
    if !c.valid { return; }
    let g = p.g0 + c.gl;
    let m = stats[g];
    var s1 = 0.0;
    var s2 = 0.0;
    var w = walk_start(c.gl, c.j0);
    for (var j = c.j0; j < c.j1; j++) {
        let d = x[w.e] - m;
        s1 += d;
        s2 += d * d;
        w = walk_next(w);
    }
    let s = (g * p.chunks + c.k) * 2u;
    part[s] = s1;
    part[s + 1u] = s2;
}

// Folds group g's deviation sums into the earlier launches'; the last launch finishes the group's
// statistics and returns true.
fn fold_dev(g: u32) -> bool {
    var s1 = 0.0;
    var s2 = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let s = (g * p.chunks + k) * 2u;
        s1 += part_in[s];
        s2 += part_in[s + 1u];
    }
    s1 = carry(stats_out[p.groups + g], s1);
    s2 = carry(stats_out[2u * p.groups + g], s2);
    if p.last == 0u {
        stats_out[p.groups + g] = s1;
        stats_out[2u * p.groups + g] = s2;
        return false;
    }
    let n = f32(p.count);
    let lo = s1 / n;
    let v = max((s2 - s1 * lo) / n, 0.0);
    stats_out[p.groups + g] = lo;
    stats_out[2u * p.groups + g] = v;
    stats_out[3u * p.groups + g] = 1.0 / sqrt(v + p.eps);
    return true;
}

@compute @workgroup_size(256)
fn dev_fold(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = fold_group(gid);
    if g >= p.g0 + p.ng { return; }
    _ = fold_dev(g);
}

// dev_fold, then (last launch) batch norm's running statistics in the same pass:
// running = (1 - m) * running + m * batch, with the unbiased batch variance (as PyTorch).
@compute @workgroup_size(256)
fn dev_fold_running(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = fold_group(gid);
    if g >= p.g0 + p.ng { return; }
    if !fold_dev(g) { return; }
    let n = f32(p.count);
    let mean = stats_out[g] + stats_out[p.groups + g];
    let unbiased = stats_out[2u * p.groups + g] * (n / (n - 1.0));
    running_mean[g] = (1.0 - p.momentum) * running_mean[g] + p.momentum * mean;
    running_var[g] = (1.0 - p.momentum) * running_var[g] + p.momentum * unbiased;
}

// Backward sums per group: sum(gd) and sum(gd * xhat), with gd = dy * gamma[channel] (or dy).
@compute @workgroup_size(256)
fn grad_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = chunk_of(gid);
    if !c.valid { return; }
    let g = p.g0 + c.gl;
    let mean = stats[g];
    let lo = stats[p.groups + g];
    let r = stats[3u * p.groups + g];
    let gbase = (g % p.gmod) * p.cmul;
    var s1 = 0.0;
    var s2 = 0.0;
    var w = walk_start(c.gl, c.j0);
    for (var j = c.j0; j < c.j1; j++) {
        let e = w.e;
        var gd = dy[e];
        if p.relu_mask != 0u && !(mask_by[e] > 0.0) {
            gd = 0.0;
        }
        if p.has_gamma != 0u {
            gd *= gamma[gbase + div_fast(w.b, p.bdiv)];
        }
        s1 += gd;
        s2 += gd * ((x[e] - mean) - lo) * r;
        w = walk_next(w);
    }
    let s = (g * p.chunks + c.k) * 2u;
    part[s] = s1;
    part[s + 1u] = s2;
}

@compute @workgroup_size(256)
fn grad_fold(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = fold_group(gid);
    if g >= p.g0 + p.ng { return; }
    var s1 = 0.0;
    var s2 = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let s = (g * p.chunks + k) * 2u;
        s1 += part_in[s];
        s2 += part_in[s + 1u];
    }
    sum_a[g] = carry(sum_a[g], s1);
    sum_b[g] = carry(sum_b[g], s2);
}
