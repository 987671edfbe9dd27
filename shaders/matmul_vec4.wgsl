// C = alpha * op(A) * op(B) + beta * C, batched, barrier-free, with vec4 loads: the software-Vulkan
// kernel for shapes whose contiguous axes are multiples of 4 (matmul_blocked.wgsl covers the rest).
// Each invocation computes an 8x8 block of C as 2x2 4x4 sub-blocks, stepping K by 4: sixteen vec4
// loads feed 256 FMAs. On llvmpipe (Mesa 22) every storage-buffer load costs tens of cycles per
// lane while FMAs are cheap, so FMAs per loaded float decide the speed.
// Needs K % 4 == 0, M % 4 == 0 when TRANS_A, N % 4 == 0 when not TRANS_B, and bases % 4 == 0.

override TRANS_A: bool = false;
override TRANS_B: bool = false;

// Params: GemmParams in shaders/common.wgsl.

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Column i of the result is op(A)[m0 + i, 4kq .. 4kq + 4]. `ab` is in vec4 units.
fn a_block(ab: u32, m0: u32, kq: u32) -> mat4x4<f32> {
    let k4 = p.k / 4u;
    if TRANS_A {
        // A is K x M: each row k is contiguous along m.
        let m4 = p.m / 4u;
        let base = ab + kq * 4u * m4 + min(m0, p.m - 4u) / 4u;
        return transpose(mat4x4<f32>(a[base], a[base + m4], a[base + 2u * m4], a[base + 3u * m4]));
    }
    let r = min(vec4<u32>(m0, m0 + 1u, m0 + 2u, m0 + 3u), vec4<u32>(p.m - 1u));
    return mat4x4<f32>(a[ab + r.x * k4 + kq], a[ab + r.y * k4 + kq], a[ab + r.z * k4 + kq], a[ab + r.w * k4 + kq]);
}

// The result times v is sum_kk v[kk] * op(B)[4kq + kk, n0 .. n0 + 4]. `bb` is in vec4 units.
fn b_block(bb: u32, n0: u32, kq: u32) -> mat4x4<f32> {
    let k4 = p.k / 4u;
    if TRANS_B {
        // B is N x K: each row n is contiguous along k.
        let r = min(vec4<u32>(n0, n0 + 1u, n0 + 2u, n0 + 3u), vec4<u32>(p.n - 1u));
        return transpose(mat4x4<f32>(b[bb + r.x * k4 + kq], b[bb + r.y * k4 + kq], b[bb + r.z * k4 + kq], b[bb + r.w * k4 + kq]));
    }
    let n4 = p.n / 4u;
    let base = bb + kq * 4u * n4 + min(n0, p.n - 4u) / 4u;
    return mat4x4<f32>(b[base], b[base + n4], b[base + 2u * n4], b[base + 3u * n4]);
}

fn store_block(cb: u32, m0: u32, n0: u32, acc: mat4x4<f32>) {
    for (var i = 0u; i < 4u; i++) {
        let row = m0 + i;
        if row >= p.m { break; }
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + j;
            if col >= p.n { break; }
            let o = cb + row * p.n + col;
            var v = p.alpha * acc[i][j];
            if p.beta != 0.0 { v += p.beta * c[o]; }
            c[o] = v;
        }
    }
}

// WIDE: each invocation computes 8 x 16 (2 x 4 sub-blocks): 24 vec4 loads feed 512 FMAs, a
// quarter fewer loads per FMA than 8 x 8 at the price of more live accumulators.
override WIDE: bool = false;
// The workgroup's shape: 8 x 8 invocations, or 64 x 1 for products with few rows (a workgroup
// then covers 8 rows, so none of its invocations idles when M is 8 or 16).
override GROUP_X: u32 = 8u;
override GROUP_Y: u32 = 8u;

@compute @workgroup_size(GROUP_X, GROUP_Y, 1)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * 8u;
    let n0 = gid.x * select(8u, 16u, WIDE);
    if m0 >= p.m || n0 >= p.n || gid.z >= p.batch { return; }
    let ab = (p.a_base + gid.z * p.a_stride) / 4u;
    let bb = (p.b_base + gid.z * p.b_stride) / 4u;
    let cb = p.c_base + gid.z * p.c_stride;
    let zero = mat4x4<f32>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var c00 = zero;
    var c01 = zero;
    var c10 = zero;
    var c11 = zero;
    var c02 = zero;
    var c03 = zero;
    var c12 = zero;
    var c13 = zero;
    for (var kq = p.k_begin / 4u; kq < p.k_end / 4u; kq++) {
        let a0 = a_block(ab, m0, kq);
        let a1 = a_block(ab, m0 + 4u, kq);
        let b0 = b_block(bb, n0, kq);
        let b1 = b_block(bb, n0 + 4u, kq);
        c00 += b0 * a0;
        c01 += b1 * a0;
        c10 += b0 * a1;
        c11 += b1 * a1;
        if WIDE {
            let b2 = b_block(bb, n0 + 8u, kq);
            let b3 = b_block(bb, n0 + 12u, kq);
            c02 += b2 * a0;
            c03 += b3 * a0;
            c12 += b2 * a1;
            c13 += b3 * a1;
        }
    }
    store_block(cb, m0, n0, c00);
    store_block(cb, m0, n0 + 4u, c01);
    store_block(cb, m0 + 4u, n0, c10);
    store_block(cb, m0 + 4u, n0 + 4u, c11);
    if WIDE {
        store_block(cb, m0, n0 + 8u, c02);
        store_block(cb, m0, n0 + 12u, c03);
        store_block(cb, m0 + 4u, n0 + 8u, c12);
        store_block(cb, m0 + 4u, n0 + 12u, c13);
    }
}
