// Softmax cross entropy per row of [rows, cols] logits (times `scale`), numerically stable: the row
// maximum m is subtracted before exponentiating and the loss is log(sum exp(l - m)) - (l_t - m), so no
// large number is ever added to a small one. Targets come from a u32 buffer (`forward`, `backward`) or
// are the row index itself (`*_diag`, for contrastive logits whose positives sit on the diagonal).
// Out-of-range targets are clamped to the last class (the CPU side validates labels it uploads).

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

fn index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * prm.pitch * 256u;
}

fn forward_row(r: u32, target_class: u32) {
    let t = min(target_class, prm.cols - 1u);
    let row = prm.x_base + r * prm.cols;
    var m = x[row] * prm.scale;
    for (var j = 1u; j < prm.cols; j++) {
        m = max(m, x[row + j] * prm.scale);
    }
    var s = 0.0;
    for (var j = 0u; j < prm.cols; j++) {
        s += exp(x[row + j] * prm.scale - m);
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
