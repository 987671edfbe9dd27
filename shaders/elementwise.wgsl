// Elementwise kernels over flat arrays: one invocation per element, 256 per workgroup.
// The grid may be folded into 2-D for large n: index = gid.x + gid.y * pitch * 256.

struct Params {
    n: u32,
    // f32 bits of a scalar operand (scale) or a raw 32-bit fill pattern.
    a: u32,
    // Workgroups per grid row (appended by Engine::dispatch_1d).
    pitch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> words: array<u32>;

fn index(gid: vec3<u32>) -> u32 {
    return flat_index(gid, p.pitch);
}

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { words[i] = p.a; }
}

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out[i] = x[i] + y[i]; }
}

@compute @workgroup_size(256)
fn sub(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out[i] = x[i] - y[i]; }
}

@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out[i] = x[i] * y[i]; }
}

@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out[i] = x[i] * bitcast<f32>(p.a); }
}

@compute @workgroup_size(256)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out[i] = max(x[i], 0.0); }
}

// relu(x + y): a residual block's end in one pass instead of two.
@compute @workgroup_size(256)
fn add_relu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out[i] = max(x[i] + y[i], 0.0); }
}

// x: the relu's input (or its output: the same sign test), y: the gradient of its output.
@compute @workgroup_size(256)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out[i] = select(0.0, y[i], x[i] > 0.0); }
}

// The same passes four elements per invocation, for lengths that are a multiple of 4 (bound
// 16-byte aligned): llvmpipe moves 1.5-2x the bytes per second through vec4 loads and stores.
// `n` counts vec4s here.
@group(0) @binding(5) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> y4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> words4: array<vec4<u32>>;

@compute @workgroup_size(256)
fn fill4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { words4[i] = vec4<u32>(p.a); }
}

@compute @workgroup_size(256)
fn add4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out4[i] = x4[i] + y4[i]; }
}

@compute @workgroup_size(256)
fn sub4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out4[i] = x4[i] - y4[i]; }
}

@compute @workgroup_size(256)
fn mul4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out4[i] = x4[i] * y4[i]; }
}

@compute @workgroup_size(256)
fn scale4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out4[i] = x4[i] * bitcast<f32>(p.a); }
}

@compute @workgroup_size(256)
fn relu4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out4[i] = max(x4[i], vec4<f32>(0.0)); }
}

@compute @workgroup_size(256)
fn add_relu4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out4[i] = max(x4[i] + y4[i], vec4<f32>(0.0)); }
}

@compute @workgroup_size(256)
fn relu_backward4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if i < p.n { out4[i] = select(vec4<f32>(0.0), y4[i], x4[i] > vec4<f32>(0.0)); }
}
