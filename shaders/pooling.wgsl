// Max pooling over NCHW windows (any kernel, stride, padding; padding never wins), and its
// backward as a gather: each input element sums the gradients of the outputs whose argmax it is,
// so overlapping windows need no atomics and the result is deterministic. Ties go to the first
// maximum in window order, so exactly one input receives each output's gradient.

struct Params {
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad: u32,
    // Element offsets of this launch inside its bindings (plane-split launches).
    x_base: u32,
    y_base: u32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> argmax_in: array<u32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn max_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = flat_index(gid, p.pitch);
    if idx >= p.planes * p.oh * p.ow { return; }
    let plane = idx / (p.oh * p.ow);
    let r = idx % (p.oh * p.ow);
    let h0 = i32((r / p.ow) * p.stride) - i32(p.pad);
    let w0 = i32((r % p.ow) * p.stride) - i32(p.pad);
    var best = -3.4028235e38;
    var best_at = 0xffffffffu;
    for (var i = 0u; i < p.k; i++) {
        let ih = h0 + i32(i);
        if ih < 0 || u32(ih) >= p.h { continue; }
        for (var j = 0u; j < p.k; j++) {
            let iw = w0 + i32(j);
            if iw < 0 || u32(iw) >= p.w { continue; }
            let at = u32(ih) * p.w + u32(iw);
            let v = x[p.x_base + plane * p.h * p.w + at];
            if best_at == 0xffffffffu || v > best {
                best = v;
                best_at = at;
            }
        }
    }
    y[p.y_base + idx] = best;
    argmax[p.y_base + idx] = best_at;
}

@compute @workgroup_size(256)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = flat_index(gid, p.pitch);
    if idx >= p.planes * p.h * p.w { return; }
    let plane = idx / (p.h * p.w);
    let at = idx % (p.h * p.w);
    let ih = i32(at / p.w) + i32(p.pad);
    let iw = i32(at % p.w) + i32(p.pad);
    let s = i32(p.stride);
    let k = i32(p.k);
    // Outputs whose window covers this input: oh in [ceil((ih - k + 1) / s), floor(ih / s)].
    let oh_lo = max((ih - k + s) / s, 0);
    let oh_hi = min(ih / s, i32(p.oh) - 1);
    let ow_lo = max((iw - k + s) / s, 0);
    let ow_hi = min(iw / s, i32(p.ow) - 1);
    var acc = 0.0;
    for (var oh = oh_lo; oh <= oh_hi; oh++) {
        for (var ow = ow_lo; ow <= ow_hi; ow++) {
            let o = p.y_base + plane * p.oh * p.ow + u32(oh) * p.ow + u32(ow);
            if argmax_in[o] == at { acc += dy[o]; }
        }
    }
    dx[p.x_base + idx] = acc;
}
