// 2-D convolution, NCHW, as implicit GEMM with 8x8 register blocks and no workgroup memory:
// no im2col buffer is ever materialized; each invocation gathers the input window it needs.
//   forward:          y[n,o,p]   = sum_{c,i,j} w[o,c,i,j] * x[n,c,window(p,i,j)]  (+ bias[o])
//                     GEMM M = O, N = batch*OH*OW pixels, K = C*KH*KW
//   backward_input:   dx[n,c,q]  = sum_{o,i,j} w[o,c,i,j] * dy[n,o,p(q,i,j)]  where p is integral
//                     GEMM M = C, N = batch*H*W pixels, K = O*KH*KW
//   backward_weight:  dw[o,c,i,j] = sum_{n,p} dy[n,o,p] * x[n,c,window(p,i,j)]
//                     GEMM M = O, N = C*KH*KW, K = batch*OH*OW, split over K into `splits`
//                     partial sums that a deterministic reduction adds up afterwards.
// Out-of-range rows/columns of a block read clamped (valid) addresses and are never stored.
// Software Vulkan ends an invocation's loops after 65535 iterations (the 8-wide loops below count
// too), so src/ops/conv2d.rs may split the channel loop of forward / backward_input over launches
// that accumulate into the output, and bounds backward_weight's pixels per split.

// Params: ConvParams in shaders/common.wgsl.

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// Bindings of the backward passes.
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dw: array<f32>;
// The weight again, as a 64 KiB uniform window (see `weight`).
@group(0) @binding(8) var<uniform> wu: array<vec4<f32>, 4096>;

// Where forward and backward_input read the weight: a uniform window when WEIGHT_UNIFORM (on
// llvmpipe, Mesa 22, a uniform load is a plain gather while a storage load is a branch per lane;
// src/ops/conv2d.rs binds 64 KiB of the weight's buffer around the rows a launch needs, or a copy
// of them), storage otherwise. `i` is the flat weight index; `w_shift` (wrapping) maps it into
// the window.
override WEIGHT_UNIFORM: bool = false;

fn weight(i: u32) -> f32 {
    if WEIGHT_UNIFORM {
        let j = i + p.w_shift;
        return wu[j >> 2u][j & 3u];
    }
    return wt[i];
}

@compute @workgroup_size(8, 8, 1)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pixels = p.batch * p.oh * p.ow;
    let p0 = gid.x * 8u;
    let o0 = p.o_begin + gid.y * 8u;
    if p0 >= pixels || o0 >= p.o_end { return; }
    let hw = p.h * p.w;
    let ksz = p.kh * p.kw;
    // Per output pixel of the block: where its input window starts.
    var xb: array<u32, 8>;
    var ih0: array<i32, 8>;
    var iw0: array<i32, 8>;
    for (var j = 0u; j < 8u; j++) {
        let q = min(p0 + j, pixels - 1u);
        let n = q / (p.oh * p.ow);
        let r = q % (p.oh * p.ow);
        xb[j] = p.x_base + n * p.c * hw;
        ih0[j] = i32((r / p.ow) * p.stride) - i32(p.pad);
        iw0[j] = i32((r % p.ow) * p.stride) - i32(p.pad);
    }
    var orow: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) { orow[i] = min(o0 + i, p.o_end - 1u) * p.c * ksz; }
    var acc: array<array<f32, 8>, 8>;
    for (var c = p.chan_begin; c < p.chan_end; c++) {
        for (var ki = 0u; ki < p.kh; ki++) {
            for (var kj = 0u; kj < p.kw; kj++) {
                let kidx = (c * p.kh + ki) * p.kw + kj;
                var xv: array<f32, 8>;
                for (var j = 0u; j < 8u; j++) {
                    let ih = ih0[j] + i32(ki);
                    let iw = iw0[j] + i32(kj);
                    let inside = ih >= 0 && iw >= 0 && u32(ih) < p.h && u32(iw) < p.w;
                    let idx = xb[j] + c * hw + u32(max(ih, 0)) * p.w + u32(max(iw, 0));
                    xv[j] = select(0.0, x[select(xb[j], idx, inside)], inside);
                }
                for (var i = 0u; i < 8u; i++) {
                    let wv = weight(orow[i] + kidx);
                    for (var j = 0u; j < 8u; j++) { acc[i][j] = fma(wv, xv[j], acc[i][j]); }
                }
            }
        }
    }
    let ohw = p.oh * p.ow;
    for (var i = 0u; i < 8u; i++) {
        let o = o0 + i;
        if o >= p.o_end { break; }
        var b = 0.0;
        if p.has_bias != 0u && p.accumulate == 0u { b = bias[o]; }
        for (var j = 0u; j < 8u; j++) {
            let q = p0 + j;
            if q >= pixels { break; }
            let n = q / ohw;
            let at = p.y_base + (n * p.o + o) * ohw + q % ohw;
            var v = acc[i][j] + b;
            if p.accumulate != 0u { v += y[at]; }
            y[at] = v;
        }
    }
}

// forward for 3x3 kernels at stride 1 where OW % 8 == 0: the 8 pixels of a block are neighbours
// in one output row, so for each (channel, kernel row) their three taps read one run of 10 inputs,
// loaded once (10 gathers instead of 24, and their index arithmetic). Same sums in the same order
// as `forward`.
@compute @workgroup_size(8, 8, 1)
fn forward_3x3_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pixels = p.batch * p.oh * p.ow;
    let p0 = gid.x * 8u;
    let o0 = p.o_begin + gid.y * 8u;
    if p0 >= pixels || o0 >= p.o_end { return; }
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let n = p0 / ohw;
    let r = p0 % ohw;
    let xn = p.x_base + n * p.c * hw;
    let ih0 = i32(r / p.ow) - i32(p.pad);
    let iw0 = i32(r % p.ow) - i32(p.pad);
    var orow: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) { orow[i] = min(o0 + i, p.o_end - 1u) * p.c * 9u; }
    var acc: array<array<f32, 8>, 8>;
    for (var c = p.chan_begin; c < p.chan_end; c++) {
        for (var ki = 0u; ki < 3u; ki++) {
            let ih = ih0 + i32(ki);
            let row_in = ih >= 0 && u32(ih) < p.h;
            let row = xn + c * hw + u32(max(ih, 0)) * p.w;
            var xr: array<f32, 10>;
            for (var t = 0u; t < 10u; t++) {
                let iw = iw0 + i32(t);
                let inside = row_in && iw >= 0 && u32(iw) < p.w;
                xr[t] = select(0.0, x[select(xn, row + u32(max(iw, 0)), inside)], inside);
            }
            for (var kj = 0u; kj < 3u; kj++) {
                let kidx = (c * 3u + ki) * 3u + kj;
                for (var i = 0u; i < 8u; i++) {
                    let wv = weight(orow[i] + kidx);
                    for (var j = 0u; j < 8u; j++) { acc[i][j] = fma(wv, xr[j + kj], acc[i][j]); }
                }
            }
        }
    }
    let at0 = p.y_base + n * p.o * ohw + r;
    for (var i = 0u; i < 8u; i++) {
        let o = o0 + i;
        if o >= p.o_end { break; }
        var b = 0.0;
        if p.has_bias != 0u && p.accumulate == 0u { b = bias[o]; }
        for (var j = 0u; j < 8u; j++) {
            let at = at0 + o * ohw + j;
            var v = acc[i][j] + b;
            if p.accumulate != 0u { v += y[at]; }
            y[at] = v;
        }
    }
}

@compute @workgroup_size(8, 8, 1)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let hw = p.h * p.w;
    let pixels = p.batch * hw;
    let q0 = gid.x * 8u;
    let c0 = gid.y * 8u;
    if q0 >= pixels || c0 >= p.c { return; }
    let ohw = p.oh * p.ow;
    let ksz = p.kh * p.kw;
    var db: array<u32, 8>;
    var ih: array<i32, 8>;
    var iw: array<i32, 8>;
    for (var j = 0u; j < 8u; j++) {
        let q = min(q0 + j, pixels - 1u);
        let n = q / hw;
        let r = q % hw;
        db[j] = p.y_base + n * p.o * ohw;
        ih[j] = i32(r / p.w) + i32(p.pad);
        iw[j] = i32(r % p.w) + i32(p.pad);
    }
    var crow: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) { crow[i] = min(c0 + i, p.c - 1u) * ksz; }
    let s = i32(p.stride);
    var acc: array<array<f32, 8>, 8>;
    for (var o = p.chan_begin; o < p.chan_end; o++) {
        for (var ki = 0u; ki < p.kh; ki++) {
            for (var kj = 0u; kj < p.kw; kj++) {
                var gv: array<f32, 8>;
                for (var j = 0u; j < 8u; j++) {
                    // The output pixel whose window puts tap (ki, kj) on this input pixel.
                    let th = ih[j] - i32(ki);
                    let tw = iw[j] - i32(kj);
                    let ohi = th / s;
                    let owi = tw / s;
                    let hit = th >= 0 && tw >= 0 && th % s == 0 && tw % s == 0
                        && u32(ohi) < p.oh && u32(owi) < p.ow;
                    let idx = db[j] + o * ohw + u32(max(ohi, 0)) * p.ow + u32(max(owi, 0));
                    gv[j] = select(0.0, dy[select(db[j], idx, hit)], hit);
                }
                let kidx = o * p.c * ksz + ki * p.kw + kj;
                for (var i = 0u; i < 8u; i++) {
                    let wv = weight(kidx + crow[i]);
                    for (var j = 0u; j < 8u; j++) { acc[i][j] = fma(wv, gv[j], acc[i][j]); }
                }
            }
        }
    }
    for (var i = 0u; i < 8u; i++) {
        let c = c0 + i;
        if c >= p.c { break; }
        for (var j = 0u; j < 8u; j++) {
            let q = q0 + j;
            if q >= pixels { break; }
            let n = q / hw;
            let at = p.x_base + (n * p.c + c) * hw + q % hw;
            var v = acc[i][j];
            if p.accumulate != 0u { v += dx[at]; }
            dx[at] = v;
        }
    }
}

// One invocation per (8x8 block of dw, split), the blocks and splits numbered densely along a
// 1-D grid: with few channels the block grid is ragged (72 columns are 9 blocks), and a 2-D grid
// of 8x8 workgroups left most lanes of llvmpipe's 8-wide SIMD groups idle (1 of 8 busy in every
// second group at 72 columns; half the lanes at the stem's 27).
@compute @workgroup_size(64, 1, 1)
fn backward_weight(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ksz = p.kh * p.kw;
    let cols = p.c * ksz;
    let e_blocks = (cols + 7u) / 8u;
    let blocks = e_blocks * ((p.o + 7u) / 8u);
    let split = gid.x / blocks;
    if split >= p.splits { return; }
    let b = gid.x % blocks;
    let e0 = (b % e_blocks) * 8u;
    let o0 = (b / e_blocks) * 8u;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let pixels = p.batch * ohw;
    // The weight elements (c, ki, kj) of this block.
    var xc: array<u32, 8>;
    var ki: array<i32, 8>;
    var kj: array<i32, 8>;
    for (var j = 0u; j < 8u; j++) {
        let e = min(e0 + j, cols - 1u);
        xc[j] = (e / ksz) * hw;
        ki[j] = i32((e % ksz) / p.kw);
        kj[j] = i32(e % p.kw);
    }
    var orow: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) { orow[i] = min(o0 + i, p.o - 1u) * ohw; }
    let q_start = (p.split0 + split) * p.k_chunk;
    let q_end = min(q_start + p.k_chunk, pixels);
    var acc: array<array<f32, 8>, 8>;
    for (var q = q_start; q < q_end; q++) {
        let n = q / ohw;
        let r = q % ohw;
        let ih0 = i32((r / p.ow) * p.stride) - i32(p.pad);
        let iw0 = i32((r % p.ow) * p.stride) - i32(p.pad);
        let xn = p.x_base + n * p.c * hw;
        let dn = p.y_base + n * p.o * ohw + r;
        var xv: array<f32, 8>;
        for (var j = 0u; j < 8u; j++) {
            let ih = ih0 + ki[j];
            let iw = iw0 + kj[j];
            let inside = ih >= 0 && iw >= 0 && u32(ih) < p.h && u32(iw) < p.w;
            let idx = xn + xc[j] + u32(max(ih, 0)) * p.w + u32(max(iw, 0));
            xv[j] = select(0.0, x[select(xn, idx, inside)], inside);
        }
        for (var i = 0u; i < 8u; i++) {
            let g = dy[dn + orow[i]];
            for (var j = 0u; j < 8u; j++) { acc[i][j] = fma(g, xv[j], acc[i][j]); }
        }
    }
    let part = split * p.o * cols;
    for (var i = 0u; i < 8u; i++) {
        let o = o0 + i;
        if o >= p.o { break; }
        for (var j = 0u; j < 8u; j++) {
            let e = e0 + j;
            if e >= cols { break; }
            dw[part + o * cols + e] = acc[i][j];
        }
    }
}
