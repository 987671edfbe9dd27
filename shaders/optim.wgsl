// In-place parameter updates: EMA of a target network, SGD with momentum, LARS.
//
// SGD and LARS work on a parameter arena (all parameters in one buffer) and a gradient buffer and
// momentum buffer with the same layout. A table lists the chunks to update, one workgroup each:
// vec4(parameter index, first element inside this launch's bindings, length, flags). Parameters
// without a gradient have no chunks, so they and their momentum stay untouched. LARS first sums
// squares per chunk (norm_partials), then per parameter (lars_trust), then updates (lars_update):
// deterministic, no atomics.

struct Params {
    // Chunks in this launch (norm_partials, *_update), table entries (lars_trust) or elements (ema).
    count: u32,
    // Index of this launch's first table entry.
    base: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    eta: f32,
    tau: f32,
    // lars_trust: rounds of 256 chunks that cover the parameter with the most chunks.
    rounds: u32,
    // Workgroups per grid row (appended by Engine::dispatch_1d).
    pitch: u32,
}

// Table entry flags.
const FIRST: u32 = 1u; // no momentum yet: buf = d (PyTorch's first step)
const DECAY: u32 = 2u; // add weight_decay * p to the gradient
const TRUST: u32 = 4u; // scale by the LARS trust ratio of the parameter

// Longest chunk: 256 invocations x 4 elements.
const CHUNK: u32 = 1024u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> param: array<f32>;
@group(0) @binding(4) var<storage, read_write> buf: array<f32>;
@group(0) @binding(5) var<storage, read> trust: array<f32>;
@group(0) @binding(6) var<storage, read> param_in: array<f32>;
// Per chunk: (sum of p^2, sum of d^2).
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;
@group(0) @binding(8) var<storage, read_write> trust_out: array<f32>;

var<workgroup> scratch: array<vec2<f32>, 256>;

// target = tau * target + (1 - tau) * online, with param = target and param_in = online.
@compute @workgroup_size(256)
fn ema(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_index(gid, p.pitch);
    if i < p.count {
        param[i] = p.tau * param[i] + (1.0 - p.tau) * param_in[i];
    }
}

fn chunk_index(wg: vec3<u32>) -> u32 {
    return wg.x + wg.y * p.pitch;
}

// d = (grad + wd * p) * scale; buf = momentum * buf + d (buf = d at first); p = p - lr * buf.
fn update_chunk(e: vec4<u32>, lid: u32, scale: f32) {
    let wd = select(0.0, p.weight_decay, (e.w & DECAY) != 0u);
    let first = (e.w & FIRST) != 0u;
    for (var k = lid; k < e.z; k += 256u) {
        let i = e.y + k;
        let pv = param[i];
        let d = (grad[i] + wd * pv) * scale;
        var b = d;
        if !first {
            b = p.momentum * buf[i] + d;
        }
        buf[i] = b;
        param[i] = pv - p.lr * b;
    }
}

@compute @workgroup_size(256)
fn sgd_update(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = chunk_index(wg);
    if c >= p.count { return; }
    update_chunk(table[p.base + c], lid, 1.0);
}

@compute @workgroup_size(256)
fn lars_update(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = chunk_index(wg);
    if c >= p.count { return; }
    let e = table[p.base + c];
    var scale = 1.0;
    if (e.w & TRUST) != 0u {
        scale = trust[e.x];
    }
    update_chunk(e, lid, scale);
}

// partials[2c], partials[2c + 1] = sum of p^2 and of d^2 over chunk c, d = grad + wd * p.
@compute @workgroup_size(256)
fn norm_partials(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = chunk_index(wg);
    if c >= p.count { return; }
    let e = table[p.base + c];
    let wd = select(0.0, p.weight_decay, (e.w & DECAY) != 0u);
    var acc = vec2<f32>(0.0, 0.0);
    // A fixed trip count keeps the barriers below in uniform control flow.
    for (var r = 0u; r < CHUNK / 256u; r++) {
        let k = r * 256u + lid;
        if k < e.z {
            let pv = param_in[e.y + k];
            let d = grad[e.y + k] + wd * pv;
            acc += vec2<f32>(pv * pv, d * d);
        }
    }
    scratch[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if lid < s {
            scratch[lid] += scratch[lid + s];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let g = p.base + c;
        partials[2u * g] = scratch[0].x;
        partials[2u * g + 1u] = scratch[0].y;
    }
}

// One workgroup per table entry vec4(parameter, first chunk, end chunk, 0): sums its chunks'
// partials (each invocation every 256th chunk, then a fixed tree) and writes the trust ratio
// eta * |p| / |d| (1 when either norm is 0). Strided, a parameter of millions of chunks still costs
// each invocation few loop iterations (software Vulkan stops loops after 65535).
@compute @workgroup_size(256)
fn lars_trust(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let j = chunk_index(wg);
    if j >= p.count { return; }
    let e = table[j];
    var acc = vec2<f32>(0.0, 0.0);
    // A trip count from the params keeps the barriers below in uniform control flow.
    for (var r = 0u; r < p.rounds; r++) {
        let c = e.y + r * 256u + lid;
        if c < e.z {
            acc += vec2<f32>(partials[2u * c], partials[2u * c + 1u]);
        }
    }
    scratch[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if lid < s {
            scratch[lid] += scratch[lid + s];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let pn = sqrt(scratch[0].x);
        let dn = sqrt(scratch[0].y);
        trust_out[e.x] = select(1.0, p.eta * pn / dn, pn > 0.0 && dn > 0.0);
    }
}
