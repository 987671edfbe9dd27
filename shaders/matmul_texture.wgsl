// C = alpha * op(A) * op(B) + beta * C, batched, with both operands read from textures that
// matmul_pack.wgsl filled: op(A) as rows of K (padded to 4) in `a`, op(B) as rows of N (padded to
// 16) in `b`, zero padded, texel t at (t % 4096, t / 4096). The blocking is matmul_vec4.wgsl's
// (8 x 8 or 8 x 16 per invocation, 8 x 8 or 64 x 1 workgroups), but with no alignment rules and
// no clamps: padding makes every block whole. On llvmpipe (Mesa 22) a texel fetch costs far less
// than a storage-buffer load, so the same blocking ran 1.6-1.8x faster at 1024^3 (probe, GL and
// Vulkan).

// Params: TextureGemmParams in src/ops/matmul_texture.rs.
struct TextureGemmParams {
    m: u32,
    n: u32,
    // Texels per packed row of op(A) (K / 4 rounded up) and of op(B) (N / 4 rounded up to 4).
    a_cols4: u32,
    b_cols4: u32,
    // Texels per packed matrix of each operand (batched products).
    a_matrix: u32,
    b_matrix: u32,
    batch: u32,
    c_stride: u32,
    c_base: u32,
    alpha: f32,
    beta: f32,
    // This launch sums texel columns [kq_begin, kq_end) of K (long K is split over launches).
    kq_begin: u32,
    kq_end: u32,
}

@group(0) @binding(0) var<uniform> p: TextureGemmParams;
@group(0) @binding(1) var a: texture_2d<f32>;
@group(0) @binding(2) var b: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

fn load_a(t: u32) -> vec4<f32> {
    return textureLoad(a, vec2<u32>(t & 4095u, t >> 12u), 0);
}

fn load_b(t: u32) -> vec4<f32> {
    return textureLoad(b, vec2<u32>(t & 4095u, t >> 12u), 0);
}

// Column i is op(A)[m0 + i, 4kq .. 4kq + 4].
fn a_block(ab: u32, m0: u32, kq: u32) -> mat4x4<f32> {
    let t = ab + m0 * p.a_cols4 + kq;
    let s = p.a_cols4;
    return mat4x4<f32>(load_a(t), load_a(t + s), load_a(t + 2u * s), load_a(t + 3u * s));
}

// The result times v is sum_kk v[kk] * op(B)[4kq + kk, n0 .. n0 + 4].
fn b_block(bb: u32, n0: u32, kq: u32) -> mat4x4<f32> {
    let t = bb + 4u * kq * p.b_cols4 + n0 / 4u;
    let s = p.b_cols4;
    return mat4x4<f32>(load_b(t), load_b(t + s), load_b(t + 2u * s), load_b(t + 3u * s));
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

override WIDE: bool = false;
override GROUP_X: u32 = 8u;
override GROUP_Y: u32 = 8u;

@compute @workgroup_size(GROUP_X, GROUP_Y, 1)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * 8u;
    let n0 = gid.x * select(8u, 16u, WIDE);
    if m0 >= p.m || n0 >= p.n || gid.z >= p.batch { return; }
    let ab = gid.z * p.a_matrix;
    let bb = gid.z * p.b_matrix;
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
    for (var kq = p.kq_begin; kq < p.kq_end; kq++) {
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
