// Softmax cross entropy per row of [rows, cols] logits (times `scale`), numerically stable: the row
// maximum m is subtracted before exponentiating and the loss is log(sum exp(l - m)) - (l_t - m), so no
// large number is ever added to a small one. Targets come from a u32 buffer (`forward`, `backward`) or
// are the row index itself (`*_diag`, for contrastive logits whose positives sit on the diagonal).
// Out-of-range targets are clamped to the last class (the CPU side validates labels it uploads).
// The log-sum-exp is taken per chunk of a row first (lse_partial: the chunk's maximum m_c and
// sum exp(l - m_c)), then per row from its chunks, so no invocation loops over a whole long row.

struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    // Gradient factor scale / N of the batch mean.
    grad_scale: f32,
    // Global index of the launch's first row (row windows of large inputs).
    row0: u32,
    x_base: u32,
    t_base: u32,
    stats_base: u32,
    out_base: u32,
    // Columns per chunk, chunks per row, and the element offset of the launch's partials.
    chunk_len: u32,
    chunks: u32,
    part_base: u32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
// Per row: (m, log sum exp(l - m)).
@group(0) @binding(3) var<storage, read_write> stats_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss_rows: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
// The upstream gradient of the mean loss, shape [1].
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
// Per row and chunk: (m_c, sum exp(l - m_c)).
@group(0) @binding(8) var<storage, read_write> part_out: array<f32>;
@group(0) @binding(9) var<storage, read> part: array<f32>;

fn index(gid: vec3<u32>) -> u32 {
    return flat_index(gid, prm.pitch);
}

@compute @workgroup_size(256)
fn lse_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= prm.rows * prm.chunks { return; }
    let r = i / prm.chunks;
    let j0 = (i % prm.chunks) * prm.chunk_len;
    let j1 = min(j0 + prm.chunk_len, prm.cols);
    let row = prm.x_base + r * prm.cols;
    var m = x[row + j0] * prm.scale;
    for (var j = j0 + 1u; j < j1; j++) {
        m = max(m, x[row + j] * prm.scale);
    }
    var s = 0.0;
    for (var j = j0; j < j1; j++) {
        s += exp(x[row + j] * prm.scale - m);
    }
    part_out[prm.part_base + 2u * i] = m;
    part_out[prm.part_base + 2u * i + 1u] = s;
}

// The row's log-sum-exp from its chunks' partials, and its loss.
fn forward_row(r: u32, target_class: u32) {
    let t = min(target_class, prm.cols - 1u);
    let row = prm.x_base + r * prm.cols;
    let pr = prm.part_base + 2u * r * prm.chunks;
    var m = part[pr];
    for (var c = 1u; c < prm.chunks; c++) {
        m = max(m, part[pr + 2u * c]);
    }
    var s = 0.0;
    for (var c = 0u; c < prm.chunks; c++) {
        s += part[pr + 2u * c + 1u] * exp(part[pr + 2u * c] - m);
    }
    let log_s = log(s);
    stats_out[prm.stats_base + 2u * r] = m;
    stats_out[prm.stats_base + 2u * r + 1u] = log_s;
    loss_rows[prm.out_base + r] = log_s - (x[row + t] * prm.scale - m);
}

// d loss / d x = (softmax - onehot) * scale * dy / N.
fn backward_elem(i: u32, target_class: u32) {
    let r = i / prm.cols;
    let j = i % prm.cols;
    let t = min(target_class, prm.cols - 1u);
    let m = stats[prm.stats_base + 2u * r];
    let log_s = stats[prm.stats_base + 2u * r + 1u];
    let soft = exp((x[prm.x_base + i] * prm.scale - m) - log_s);
    let onehot = select(0.0, 1.0, j == t);
    dx[prm.out_base + i] = (soft - onehot) * prm.grad_scale * dy[0];
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = index(gid);
    if r >= prm.rows { return; }
    forward_row(r, targets[prm.t_base + r]);
}

@compute @workgroup_size(256)
fn forward_diag(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = index(gid);
    if r >= prm.rows { return; }
    forward_row(r, prm.row0 + r);
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= prm.rows * prm.cols { return; }
    backward_elem(i, targets[prm.t_base + i / prm.cols]);
}

@compute @workgroup_size(256)
fn backward_diag(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= prm.rows * prm.cols { return; }
    backward_elem(i, prm.row0 + i / prm.cols);
}
