// Adds a per-channel bias to a [outer, channels, inner] view (NCHW with inner = H*W, or [N, C]
// with inner = 1). Its backward is a reduction, done with reduce.wgsl.

struct Params {
    n: u32,
    channels: u32,
    inner: u32,
    x_base: u32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn bias_add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_index(gid, p.pitch);
    if i >= p.n { return; }
    // (x_base + i) / inner % channels without llvmpipe's lane-by-lane integer divisions.
    let q = div_fast(p.x_base + i, p.inner);
    let c = q - div_fast(q, p.channels) * p.channels;
    out[i] = x[i] + bias[c];
}
