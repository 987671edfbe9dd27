// Sum over the middle axis of a [outer, axis, inner] view, optionally in chunks of the axis:
// out[o, c, i] = scale * sum_{a in chunk c} x[o, a, i]. A second launch over the chunk axis
// finishes the sum, so every reduction is deterministic (no atomics).

struct Params {
    outer: u32,
    axis: u32,
    inner: u32,
    // Length of one chunk of the axis and number of chunks (chunks * chunk_len >= axis).
    chunk_len: u32,
    chunks: u32,
    scale: f32,
    // Element offsets of this launch inside its bindings (bindings start at aligned offsets).
    x_base: u32,
    out_base: u32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn sum_axis(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = flat_index(gid, p.pitch);
    let total = p.outer * p.chunks * p.inner;
    if idx >= total { return; }
    let i = idx % p.inner;
    let c = (idx / p.inner) % p.chunks;
    let o = idx / (p.inner * p.chunks);
    let a0 = c * p.chunk_len;
    let a1 = min(a0 + p.chunk_len, p.axis);
    var acc = 0.0;
    var off = p.x_base + (o * p.axis + a0) * p.inner + i;
    for (var a = a0; a < a1; a++) {
        acc += x[off];
        off += p.inner;
    }
    out[p.out_base + idx] = acc * p.scale;
}

// The backward of sum_axis: out[o, a, i] = scale * x[o, i].
@compute @workgroup_size(256)
fn broadcast_axis(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = flat_index(gid, p.pitch);
    let total = p.outer * p.axis * p.inner;
    if idx >= total { return; }
    let i = idx % p.inner;
    let o = idx / (p.inner * p.axis);
    out[p.out_base + idx] = x[p.x_base + o * p.inner + i] * p.scale;
}
