// NT-Xent's self mask: in the [2N, 2N] logits a·bᵀ (a = [ẑ1; ẑ2], b = [ẑ2; ẑ1]) row r's similarity
// with itself sits in column (r + N) mod 2N. One invocation per row overwrites it with a logit far
// below every real one, so the softmax gives it exactly 0 (and the gradient there is 0).

struct Params {
    rows: u32,
    cols: u32,
    // N: the offset of a row's own column.
    half: u32,
    // Global index of the launch's first row (row windows of large inputs).
    row0: u32,
    base: u32,
    masked: f32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;

@compute @workgroup_size(256)
fn mask_self(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = flat_index(gid, prm.pitch);
    if r >= prm.rows { return; }
    let j = (prm.row0 + r + prm.half) % prm.cols;
    logits[prm.base + r * prm.cols + j] = prm.masked;
}
