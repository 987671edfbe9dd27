// BYOL's regression loss per row, 2 - 2 cos(p_r, z_r), with cos taken between the rows normalized as
// x / max(||x||, eps), and its gradient with respect to p only (z comes from the target network).
// One invocation per row (or per chunk of a long row, whose sums src/ops/byol_loss.rs then adds up)
// sums in order (deterministic); the backward is one invocation per element.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    // Gradient factor -2 / N of the batch mean.
    grad_scale: f32,
    p_base: u32,
    z_base: u32,
    stats_base: u32,
    out_base: u32,
    // row_terms: columns per chunk, and chunks per row.
    chunk_len: u32,
    chunks: u32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> z: array<f32>;
// Per row (row_terms: per row and chunk): (p·p, z·z, p·z).
@group(0) @binding(3) var<storage, read_write> stats_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss_rows: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
// The upstream gradient of the mean loss, shape [1].
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> dp: array<f32>;

fn index(gid: vec3<u32>) -> u32 {
    return flat_index(gid, prm.pitch);
}

// The row sums over one chunk of a row's columns.
@compute @workgroup_size(256)
fn row_terms(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= prm.rows * prm.chunks { return; }
    let r = i / prm.chunks;
    let j0 = (i % prm.chunks) * prm.chunk_len;
    let j1 = min(j0 + prm.chunk_len, prm.cols);
    var pp = 0.0;
    var zz = 0.0;
    var pz = 0.0;
    let ip = prm.p_base + r * prm.cols;
    let iz = prm.z_base + r * prm.cols;
    for (var j = j0; j < j1; j++) {
        let pv = p[ip + j];
        let zv = z[iz + j];
        pp += pv * pv;
        zz += zv * zv;
        pz += pv * zv;
    }
    let s = prm.stats_base + 3u * i;
    stats_out[s] = pp;
    stats_out[s + 1u] = zz;
    stats_out[s + 2u] = pz;
}

// The loss of each row from its whole-row sums.
@compute @workgroup_size(256)
fn row_loss(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = index(gid);
    if r >= prm.rows { return; }
    let s = prm.stats_base + 3u * r;
    let cos = stats[s + 2u] / (max(sqrt(stats[s]), prm.eps) * max(sqrt(stats[s + 1u]), prm.eps));
    loss_rows[prm.out_base + r] = 2.0 - 2.0 * cos;
}

// dp = dy * (-2 / N) * dcos/dp, where dcos/dp = (ẑ - cos p̂) / ||p|| when ||p|| > eps and ẑ / eps
// otherwise (the divisor eps is then a constant); p̂ = p / max(||p||, eps), ẑ likewise.
@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= prm.rows * prm.cols { return; }
    let r = i / prm.cols;
    let s = prm.stats_base + 3u * r;
    let p_norm = sqrt(stats[s]);
    let np = max(p_norm, prm.eps);
    let nz = max(sqrt(stats[s + 1u]), prm.eps);
    let z_hat = z[prm.z_base + i] / nz;
    var dcos = z_hat / np;
    if p_norm > prm.eps {
        // (ẑ - cos p̂) / np: subtracting the unit-scale terms cancels exactly where it should
        // (a single feature gives exactly zero).
        let cos = stats[s + 2u] / (np * nz);
        dcos = (z_hat - cos * (p[prm.p_base + i] / np)) / np;
    }
    dp[prm.out_base + i] = dy[0] * prm.grad_scale * dcos;
}
