// Copies a contiguous range of 32-bit words between two buffers: the building block of concatenation
// and splitting along the batch axis and of writing keys into a ring-buffer queue. Words, not floats,
// so u32 tensors (labels) copy bit for bit too.

struct Params {
    n: u32,
    src_base: u32,
    dst_base: u32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_index(gid, p.pitch);
    if i < p.n { dst[p.dst_base + i] = src[p.src_base + i]; }
}
