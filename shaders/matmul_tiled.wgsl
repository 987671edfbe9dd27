// C = alpha * op(A) * op(B) + beta * C, batched, tiled in workgroup memory for real GPUs.
// A 16x16 workgroup computes a 64x64 tile of C; each invocation a 4x4 block in registers, with
// rows and columns strided by 16 so neighbouring invocations read neighbouring shared-memory words.
// K advances in slices of 16; tiles past the edges of A and B are filled with zeros.

override TRANS_A: bool = false;
override TRANS_B: bool = false;

// Params: GemmParams in shaders/common.wgsl.

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TILE: u32 = 64u;
const BK: u32 = 16u;

// a_tile[k][m] and b_tile[k][n] for the current K slice.
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

fn load_a(base: u32, row: u32, col: u32) -> f32 {
    if row >= p.m || col >= p.k { return 0.0; }
    if TRANS_A { return a[base + col * p.m + row]; }
    return a[base + row * p.k + col];
}

fn load_b(base: u32, row: u32, col: u32) -> f32 {
    if row >= p.k || col >= p.n { return 0.0; }
    if TRANS_B { return b[base + col * p.k + row]; }
    return b[base + row * p.n + col];
}

@compute @workgroup_size(16, 16, 1)
fn matmul(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let m_tile = wg.y * TILE;
    let n_tile = wg.x * TILE;
    let ab = p.a_base + wg.z * p.a_stride;
    let bb = p.b_base + wg.z * p.b_stride;
    let cb = p.c_base + wg.z * p.c_stride;
    var acc: array<array<f32, 4>, 4>;
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = 0.0; }
    }
    for (var k0 = p.k_begin; k0 < p.k_end; k0 += BK) {
        // 256 invocations load 1024 elements of each tile, choosing the mapping that makes
        // consecutive invocations read consecutive global addresses.
        for (var r = 0u; r < 4u; r++) {
            let e = tid + r * 256u;
            var am: u32; var ak: u32;
            if TRANS_A { ak = e / TILE; am = e % TILE; } else { am = e / BK; ak = e % BK; }
            a_tile[ak * TILE + am] = load_a(ab, m_tile + am, k0 + ak);
            var bk: u32; var bn: u32;
            if TRANS_B { bn = e / BK; bk = e % BK; } else { bk = e / TILE; bn = e % TILE; }
            b_tile[bk * TILE + bn] = load_b(bb, k0 + bk, n_tile + bn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = a_tile[kk * TILE + lid.y + 16u * i];
                bv[i] = b_tile[kk * TILE + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(av[i], bv[j], acc[i][j]); }
            }
        }
        workgroupBarrier();
    }
    if wg.z >= p.batch { return; }
    for (var i = 0u; i < 4u; i++) {
        let row = m_tile + lid.y + 16u * i;
        if row >= p.m { continue; }
        for (var j = 0u; j < 4u; j++) {
            let col = n_tile + lid.x + 16u * j;
            if col >= p.n { continue; }
            let o = cb + row * p.n + col;
            var v = p.alpha * acc[i][j];
            if p.beta != 0.0 { v += p.beta * c[o]; }
            c[o] = v;
        }
    }
}
