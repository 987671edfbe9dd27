// 2-D convolution, NCHW, as implicit GEMM tiled in workgroup memory, for real GPUs. The same
// GEMMs, parameters and bindings as conv2d.wgsl (the barrier-free variant for software adapters):
//   forward:          M = O, N = batch*OH*OW pixels, K = C*KH*KW
//   backward_input:   M = C, N = batch*H*W pixels,   K = O*KH*KW (taps that hit a stride multiple)
//   backward_weight:  M = O, N = C*KH*KW,            K = the pixels of this split (grid z)
// A 16x16 workgroup computes a 64x64 tile of the GEMM output, each invocation a 4x4 block strided
// by 16 (like matmul_tiled.wgsl). K advances in slices of 16: the A tile (weights, or dy for the
// weight gradient) and the B tile (the im2col gather, computed on the fly) are loaded together
// into workgroup memory, zero outside the GEMM and in the padding.

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

const TILE: u32 = 64u;
const BK: u32 = 16u;

// a_tile[k][m] and b_tile[k][n] for the current K slice.
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

// Once a K slice is loaded: waits for it, accumulates it into the 4x4 block, and waits again so
// the next slice may overwrite the tiles. Called in uniform control flow only.
fn multiply_slice(lid: vec3<u32>, acc: ptr<function, array<array<f32, 4>, 4>>) {
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
        var av: array<f32, 4>;
        var bv: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) {
            av[i] = a_tile[kk * TILE + lid.y + 16u * i];
            bv[i] = b_tile[kk * TILE + lid.x + 16u * i];
        }
        for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < 4u; j++) { (*acc)[i][j] = fma(av[i], bv[j], (*acc)[i][j]); }
        }
    }
    workgroupBarrier();
}

// x[n, c, ih, iw] with zero padding; `xn` is the start of sample n.
fn x_at(xn: u32, c: u32, ih: i32, iw: i32) -> f32 {
    if ih < 0 || iw < 0 || u32(ih) >= p.h || u32(iw) >= p.w { return 0.0; }
    return x[xn + (c * p.h + u32(ih)) * p.w + u32(iw)];
}

@compute @workgroup_size(16, 16, 1)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let ohw = p.oh * p.ow;
    let pixels = p.batch * ohw;
    let ksz = p.kh * p.kw;
    let kdim = p.c * ksz;
    let m_tile = wg.y * TILE;
    let n_tile = wg.x * TILE;
    // Every B element this invocation loads lies in column tid % 64: one output pixel.
    let bn = tid % TILE;
    let q_ok = n_tile + bn < pixels;
    let q = min(n_tile + bn, pixels - 1u);
    let xn = p.x_base + (q / ohw) * p.c * p.h * p.w;
    let ih0 = i32(((q % ohw) / p.ow) * p.stride) - i32(p.pad);
    let iw0 = i32((q % p.ow) * p.stride) - i32(p.pad);
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < kdim; k0 += BK) {
        for (var r = 0u; r < 4u; r++) {
            let e = tid + r * 256u;
            // A: weights [O, C*KH*KW], consecutive invocations along K.
            let am = m_tile + e / BK;
            let ak = k0 + e % BK;
            var av = 0.0;
            if am < p.o && ak < kdim { av = wt[am * kdim + ak]; }
            a_tile[(e % BK) * TILE + e / BK] = av;
            // B: the input window of pixel q at tap k.
            let bk = e / TILE;
            let k = k0 + bk;
            var bv = 0.0;
            if q_ok && k < kdim {
                let t = k % ksz;
                bv = x_at(xn, k / ksz, ih0 + i32(t / p.kw), iw0 + i32(t % p.kw));
            }
            b_tile[bk * TILE + bn] = bv;
        }
        multiply_slice(lid, &acc);
    }
    for (var i = 0u; i < 4u; i++) {
        let o = m_tile + lid.y + 16u * i;
        if o >= p.o { continue; }
        var b = 0.0;
        if p.has_bias != 0u { b = bias[o]; }
        for (var j = 0u; j < 4u; j++) {
            let col = n_tile + lid.x + 16u * j;
            if col >= pixels { continue; }
            y[p.y_base + ((col / ohw) * p.o + o) * ohw + col % ohw] = acc[i][j] + b;
        }
    }
}

@compute @workgroup_size(16, 16, 1)
fn backward_input(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let pixels = p.batch * hw;
    let ksz = p.kh * p.kw;
    let kdim = p.o * ksz;
    let m_tile = wg.y * TILE;
    let n_tile = wg.x * TILE;
    // Every B element this invocation loads lies in column tid % 64: one input pixel.
    let bn = tid % TILE;
    let q_ok = n_tile + bn < pixels;
    let q = min(n_tile + bn, pixels - 1u);
    let dn = p.y_base + (q / hw) * p.o * ohw;
    let ih = i32((q % hw) / p.w) + i32(p.pad);
    let iw = i32(q % p.w) + i32(p.pad);
    let s = i32(p.stride);
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < kdim; k0 += BK) {
        for (var r = 0u; r < 4u; r++) {
            let e = tid + r * 256u;
            // A[c][(o, tap)] = w[o, c, tap].
            let am = m_tile + e / BK;
            let ak = k0 + e % BK;
            var av = 0.0;
            if am < p.c && ak < kdim { av = wt[((ak / ksz) * p.c + am) * ksz + ak % ksz]; }
            a_tile[(e % BK) * TILE + e / BK] = av;
            // B: dy at the output pixel whose window puts tap (ki, kj) on input pixel q.
            let bk = e / TILE;
            let k = k0 + bk;
            var bv = 0.0;
            if q_ok && k < kdim {
                let t = k % ksz;
                let th = ih - i32(t / p.kw);
                let tw = iw - i32(t % p.kw);
                if th >= 0 && tw >= 0 && th % s == 0 && tw % s == 0 {
                    let ohi = u32(th / s);
                    let owi = u32(tw / s);
                    if ohi < p.oh && owi < p.ow { bv = dy[dn + (k / ksz) * ohw + ohi * p.ow + owi]; }
                }
            }
            b_tile[bk * TILE + bn] = bv;
        }
        multiply_slice(lid, &acc);
    }
    for (var i = 0u; i < 4u; i++) {
        let c = m_tile + lid.y + 16u * i;
        if c >= p.c { continue; }
        for (var j = 0u; j < 4u; j++) {
            let col = n_tile + lid.x + 16u * j;
            if col >= pixels { continue; }
            dx[p.x_base + ((col / hw) * p.c + c) * hw + col % hw] = acc[i][j];
        }
    }
}

@compute @workgroup_size(16, 16, 1)
fn backward_weight(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let ksz = p.kh * p.kw;
    let cols = p.c * ksz;
    let ohw = p.oh * p.ow;
    let m_tile = wg.y * TILE;
    let n_tile = wg.x * TILE;
    let q_start = (p.split0 + wg.z) * p.k_chunk;
    let q_end = min(q_start + p.k_chunk, p.batch * ohw);
    // Every B element this invocation loads lies in column tid % 64: one weight (c, ki, kj).
    let bn = tid % TILE;
    let e_ok = n_tile + bn < cols;
    let we = min(n_tile + bn, cols - 1u);
    let wc = we / ksz;
    let ki = i32((we % ksz) / p.kw);
    let kj = i32(we % p.kw);
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = q_start; k0 < q_end; k0 += BK) {
        for (var r = 0u; r < 4u; r++) {
            let e = tid + r * 256u;
            // A[o][q] = dy[n, o, pixel], consecutive invocations along the pixels.
            let am = m_tile + e / BK;
            let aq = k0 + e % BK;
            var av = 0.0;
            if am < p.o && aq < q_end { av = dy[p.y_base + ((aq / ohw) * p.o + am) * ohw + aq % ohw]; }
            a_tile[(e % BK) * TILE + e / BK] = av;
            // B[q][(c, ki, kj)] = the input under tap (ki, kj) of output pixel q.
            let bk = e / TILE;
            let q = k0 + bk;
            var bv = 0.0;
            if e_ok && q < q_end {
                let rq = q % ohw;
                let xn = p.x_base + (q / ohw) * p.c * p.h * p.w;
                let ih = i32((rq / p.ow) * p.stride) - i32(p.pad) + ki;
                let iw = i32((rq % p.ow) * p.stride) - i32(p.pad) + kj;
                bv = x_at(xn, wc, ih, iw);
            }
            b_tile[bk * TILE + bn] = bv;
        }
        multiply_slice(lid, &acc);
    }
    let part = wg.z * p.o * cols;
    for (var i = 0u; i < 4u; i++) {
        let o = m_tile + lid.y + 16u * i;
        if o >= p.o { continue; }
        for (var j = 0u; j < 4u; j++) {
            let col = n_tile + lid.x + 16u * j;
            if col >= cols { continue; }
            dw[part + o * cols + col] = acc[i][j];
        }
    }
}
