// C = alpha * op(A) * op(B) + beta * C, batched, with no workgroup memory and no barriers.
// Each invocation computes a 4x4 block of C in registers. On software Vulkan (llvmpipe) barriers are
// very costly, and this barrier-free form is several times faster than a tiled kernel there.
// op(A) is M x K (A stored K x M when TRANS_A), op(B) is K x N (B stored N x K when TRANS_B).

override TRANS_A: bool = false;
override TRANS_B: bool = false;

// Params: GemmParams in shaders/common.wgsl.

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Offset of op(A)[row, col] and op(B)[row, col].
fn a_index(row: u32, col: u32) -> u32 {
    if TRANS_A { return col * p.m + row; }
    return row * p.k + col;
}
fn b_index(row: u32, col: u32) -> u32 {
    if TRANS_B { return col * p.k + row; }
    return row * p.n + col;
}

@compute @workgroup_size(8, 8, 1)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m0 = gid.y * 4u;
    let n0 = gid.x * 4u;
    if m0 >= p.m || n0 >= p.n || gid.z >= p.batch { return; }
    let ab = p.a_base + gid.z * p.a_stride;
    let bb = p.b_base + gid.z * p.b_stride;
    let cb = p.c_base + gid.z * p.c_stride;
    // Edge blocks read clamped rows and columns (valid memory) and skip the extra stores.
    let r = min(vec4<u32>(m0, m0 + 1u, m0 + 2u, m0 + 3u), vec4<u32>(p.m - 1u));
    let q = min(vec4<u32>(n0, n0 + 1u, n0 + 2u, n0 + 3u), vec4<u32>(p.n - 1u));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = p.k_begin; kk < p.k_end; kk++) {
        let bv = vec4<f32>(b[bb + b_index(kk, q.x)], b[bb + b_index(kk, q.y)],
                           b[bb + b_index(kk, q.z)], b[bb + b_index(kk, q.w)]);
        acc0 = fma(vec4<f32>(a[ab + a_index(r.x, kk)]), bv, acc0);
        acc1 = fma(vec4<f32>(a[ab + a_index(r.y, kk)]), bv, acc1);
        acc2 = fma(vec4<f32>(a[ab + a_index(r.z, kk)]), bv, acc2);
        acc3 = fma(vec4<f32>(a[ab + a_index(r.w, kk)]), bv, acc3);
    }
    var rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let row = m0 + i;
        if row >= p.m { break; }
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + j;
            if col >= p.n { break; }
            let o = cb + row * p.n + col;
            var v = p.alpha * rows[i][j];
            if p.beta != 0.0 { v += p.beta * c[o]; }
            c[o] = v;
        }
    }
}
