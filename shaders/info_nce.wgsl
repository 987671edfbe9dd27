// InfoNCE against a queue of negatives (MoCo): row r's logits are scale * [pos_r, neg_r,0 .. neg_r,Q-1]
// with the positive (class 0) read from `pos` and the negatives from `neg`, so the [N, 1 + Q] logits
// are never assembled. Stable like cross_entropy.wgsl: max-subtracted, and the loss is
// log(sum exp(l - m)) - (l_0 - m). The gradient per unit upstream gradient is built in the forward
// (pair_grad, then add_row_scaled after a matmul) and scaled by dy in the backward (scale_by_dy), so a
// queue overwritten between forward and backward cannot change it. The negatives' log-sum-exp comes
// in chunks from cross_entropy.wgsl's lse_partial (a long queue would otherwise make one invocation
// loop over all of it), and pair_forward adds the positive to it.

struct Params {
    rows: u32,
    // Negatives per row (Q).
    negs: u32,
    scale: f32,
    // Gradient factor scale / N of the batch mean.
    grad_scale: f32,
    pos_base: u32,
    neg_base: u32,
    stats_base: u32,
    out_base: u32,
    // Elements per row of the matrices in add_row_scaled.
    cols: u32,
    // pair_forward: chunks of the negatives' partials per row, and the partials' base.
    chunks: u32,
    part_base: u32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> pos: array<f32>;
@group(0) @binding(2) var<storage, read> neg: array<f32>;
// Per row: (m, log sum exp(l - m)).
@group(0) @binding(3) var<storage, read_write> stats_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss_rows: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
// The upstream gradient of the mean loss, shape [1] (scale_by_dy).
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> dpos: array<f32>;
@group(0) @binding(8) var<storage, read_write> dneg: array<f32>;
// add_row_scaled: acc[r, j] += s[r] * k[r, j]; scale_by_dy: acc[i] = k[i] * dy[0].
@group(0) @binding(9) var<storage, read> s: array<f32>;
@group(0) @binding(10) var<storage, read> k: array<f32>;
@group(0) @binding(11) var<storage, read_write> acc: array<f32>;
// Per row and chunk of the scaled negatives: (m_c, sum exp(l - m_c)).
@group(0) @binding(12) var<storage, read> part: array<f32>;

fn index(gid: vec3<u32>) -> u32 {
    return flat_index(gid, prm.pitch);
}

@compute @workgroup_size(256)
fn pair_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = index(gid);
    if r >= prm.rows { return; }
    let l0 = pos[prm.pos_base + r] * prm.scale;
    let pr = prm.part_base + 2u * r * prm.chunks;
    var m = l0;
    for (var c = 0u; c < prm.chunks; c++) {
        m = max(m, part[pr + 2u * c]);
    }
    var sum = exp(l0 - m);
    for (var c = 0u; c < prm.chunks; c++) {
        sum += part[pr + 2u * c + 1u] * exp(part[pr + 2u * c] - m);
    }
    let log_s = log(sum);
    stats_out[prm.stats_base + 2u * r] = m;
    stats_out[prm.stats_base + 2u * r + 1u] = log_s;
    loss_rows[prm.out_base + r] = log_s - (l0 - m);
}

// One invocation per logit of [rows, 1 + negs]: the gradient per unit upstream gradient,
// (softmax - onehot(0)) * scale / N, the positive column into dpos and the rest into dneg. dpos and
// dneg are bound over the same row windows as pos and neg, so they share their bases.
@compute @workgroup_size(256)
fn pair_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    let width = prm.negs + 1u;
    if i >= prm.rows * width { return; }
    let r = i / width;
    let c = i % width;
    let m = stats[prm.stats_base + 2u * r];
    let log_s = stats[prm.stats_base + 2u * r + 1u];
    if c == 0u {
        let soft = exp((pos[prm.pos_base + r] * prm.scale - m) - log_s);
        dpos[prm.pos_base + r] = (soft - 1.0) * prm.grad_scale;
    } else {
        let j = prm.neg_base + r * prm.negs + c - 1u;
        dneg[j] = exp((neg[j] * prm.scale - m) - log_s) * prm.grad_scale;
    }
}

@compute @workgroup_size(256)
fn add_row_scaled(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= prm.rows * prm.cols { return; }
    acc[prm.out_base + i] += s[prm.pos_base + i / prm.cols] * k[prm.neg_base + i];
}

@compute @workgroup_size(256)
fn scale_by_dy(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i >= prm.rows * prm.cols { return; }
    acc[prm.out_base + i] = k[prm.neg_base + i] * dy[0];
}
