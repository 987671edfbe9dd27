// The data movement of convolution as explicit GEMM (src/ops/conv2d_unfold.rs): the matrices it
// multiplies are laid out pixel-major over the whole launch, so one GEMM covers every sample:
//   col[ck, q]   ck = (c, ki, kj) of C*KH*KW rows, q = (n, oh, ow) of batch*OH*OW columns.
// im2col:  col[ck, q] = x[n, c, oh*stride + ki - pad, ow*stride + kj - pad] (0 outside)
// col2im:  dx[n, c, ih, iw] = sum of dcol[ck, q] over the taps that put (ki, kj) of output pixel q
//          on (ih, iw): the adjoint of im2col, a gather, so no atomics and a fixed order, and it
//          visits only the taps the stride lets through.
// to_channel_major: t[n, o, r] of [batch, O, OH*OW] (NCHW) to [o, n, r], the channel-major
//          [O, batch*OH*OW] that the GEMM reads and writes; to_sample_major: back (adding the bias).
// Grids are (pixels of every sample / 64, channel or row): invocations run along the pixels of the
// whole launch, so even 2x2 planes fill a workgroup (llvmpipe pays per workgroup), and every
// index is split with div_small (shaders/common.wgsl), not an integer division.

// Params: ConvParams in shaders/common.wgsl. `x_base` / `y_base` are the offsets of this launch's
// samples inside the x / y bindings.

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// The same data as vec4s, for the kernels that move four elements per invocation (one load and
// one store instead of four: memory operations cost per invocation on llvmpipe). They need the
// rows they touch to be whole vec4s (batch*OH*OW % 4 == 0, and OH*OW % 4 == 0 for the copies).
@group(0) @binding(4) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dst4: array<vec4<f32>>;
// to_sample_major adds it where `has_bias` is set (the forward's bias).
@group(0) @binding(6) var<storage, read> bias: array<f32>;

// x at tap (ki, kj) of output pixel r of sample n, channel c (0 in the padding).
fn window_at(n: u32, c: u32, r: u32, ki: u32, kj: u32) -> f32 {
    let oh = div_small(r, p.ow);
    let ow = r - oh * p.ow;
    let ih = i32(oh * p.stride + ki) - i32(p.pad);
    let iw = i32(ow * p.stride + kj) - i32(p.pad);
    let inside = ih >= 0 && iw >= 0 && u32(ih) < p.h && u32(iw) < p.w;
    let at = p.x_base + (n * p.c + c) * p.h * p.w + u32(max(ih, 0)) * p.w + u32(max(iw, 0));
    return select(0.0, src[select(p.x_base, at, inside)], inside);
}

@compute @workgroup_size(64, 1, 1)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let ohw = p.oh * p.ow;
    let q = gid.x;
    if q >= p.batch * ohw { return; }
    let n = div_small(q, ohw);
    let ck = wg.y;
    let ksz = p.kh * p.kw;
    let c = div_small(ck, ksz);
    let kk = ck - c * ksz;
    let ki = div_small(kk, p.kw);
    let kj = kk - ki * p.kw;
    dst[ck * p.batch * ohw + q] = window_at(n, c, q - n * ohw, ki, kj);
}

@compute @workgroup_size(64, 1, 1)
fn im2col4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let ohw = p.oh * p.ow;
    let cols = p.batch * ohw;
    let q = gid.x * 4u;
    if q >= cols { return; }
    let ck = wg.y;
    let ksz = p.kh * p.kw;
    let c = div_small(ck, ksz);
    let kk = ck - c * ksz;
    let ki = div_small(kk, p.kw);
    let kj = kk - ki * p.kw;
    var v: vec4<f32>;
    for (var j = 0u; j < 4u; j++) {
        let n = div_small(q + j, ohw);
        v[j] = window_at(n, c, q + j - n * ohw, ki, kj);
    }
    dst4[(ck * cols + q) / 4u] = v;
}

// dx at pixel r of sample n, channel c: the sum of dcol over the taps that reach it. Taps reach
// (ih, iw) from output row oh = (ih + pad - ki) / stride where that divides: the first such tap
// is ki0 = (ih + pad) % stride, then every stride-th, oh falling by one each.
fn gather_taps(n: u32, c: u32, r: u32) -> f32 {
    let ih = div_small(r, p.w);
    let iw = r - ih * p.w;
    let th = ih + p.pad;
    let tw = iw + p.pad;
    let oh_first = div_small(th, p.stride);
    let ow_first = div_small(tw, p.stride);
    let ki0 = th - oh_first * p.stride;
    let kj0 = tw - ow_first * p.stride;
    let ohw = p.oh * p.ow;
    let cols = p.batch * ohw;
    var sum = 0.0;
    var oh = i32(oh_first);
    for (var ki = ki0; ki < p.kh && oh >= 0; ki += p.stride) {
        if u32(oh) < p.oh {
            let row = (c * p.kh + ki) * p.kw;
            var ow = i32(ow_first);
            for (var kj = kj0; kj < p.kw && ow >= 0; kj += p.stride) {
                if u32(ow) < p.ow {
                    sum += src[(row + kj) * cols + n * ohw + u32(oh) * p.ow + u32(ow)];
                }
                ow -= 1;
            }
        }
        oh -= 1;
    }
    return sum;
}

@compute @workgroup_size(64, 1, 1)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let hw = p.h * p.w;
    let q = gid.x;
    if q >= p.batch * hw { return; }
    let n = div_small(q, hw);
    let c = wg.y;
    dst[p.x_base + (n * p.c + c) * hw + q - n * hw] = gather_taps(n, c, q - n * hw);
}

// Four pixels per invocation, one vec4 store: needs H*W % 4 == 0 (so four consecutive pixels
// share a sample) and x_base % 4 == 0.
@compute @workgroup_size(64, 1, 1)
fn col2im4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let hw = p.h * p.w;
    let q = gid.x * 4u;
    if q >= p.batch * hw { return; }
    let n = div_small(q, hw);
    let r = q - n * hw;
    let c = wg.y;
    let v = vec4<f32>(gather_taps(n, c, r), gather_taps(n, c, r + 1u), gather_taps(n, c, r + 2u), gather_taps(n, c, r + 3u));
    dst4[(p.x_base + (n * p.c + c) * hw + r) / 4u] = v;
}

// Element (n, o, r) of the launch in each layout: channel-major [O, batch, OH*OW] (no base) and
// NCHW [batch, O, OH*OW] at y_base.
fn channel_major_at(n: u32, o: u32, r: u32) -> u32 {
    return (o * p.batch + n) * p.oh * p.ow + r;
}

fn sample_major_at(n: u32, o: u32, r: u32) -> u32 {
    return p.y_base + (n * p.o + o) * p.oh * p.ow + r;
}

@compute @workgroup_size(64, 1, 1)
fn to_channel_major(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let ohw = p.oh * p.ow;
    let q = gid.x;
    if q >= p.batch * ohw { return; }
    let n = div_small(q, ohw);
    dst[channel_major_at(n, wg.y, q - n * ohw)] = src[sample_major_at(n, wg.y, q - n * ohw)];
}

@compute @workgroup_size(64, 1, 1)
fn to_sample_major(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let ohw = p.oh * p.ow;
    let q = gid.x;
    if q >= p.batch * ohw { return; }
    let n = div_small(q, ohw);
    var v = src[channel_major_at(n, wg.y, q - n * ohw)];
    if p.has_bias != 0u { v += bias[wg.y]; }
    dst[sample_major_at(n, wg.y, q - n * ohw)] = v;
}

// Four elements per invocation: every index is a multiple of 4 (OH*OW % 4 == 0, y_base too).
@compute @workgroup_size(64, 1, 1)
fn to_channel_major4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let ohw = p.oh * p.ow;
    let q = gid.x * 4u;
    if q >= p.batch * ohw { return; }
    let n = div_small(q, ohw);
    dst4[channel_major_at(n, wg.y, q - n * ohw) / 4u] = src4[sample_major_at(n, wg.y, q - n * ohw) / 4u];
}

@compute @workgroup_size(64, 1, 1)
fn to_sample_major4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let ohw = p.oh * p.ow;
    let q = gid.x * 4u;
    if q >= p.batch * ohw { return; }
    let n = div_small(q, ohw);
    var v = src4[channel_major_at(n, wg.y, q - n * ohw) / 4u];
    if p.has_bias != 0u { v += vec4<f32>(bias[wg.y]); }
    dst4[sample_major_at(n, wg.y, q - n * ohw) / 4u] = v;
}
