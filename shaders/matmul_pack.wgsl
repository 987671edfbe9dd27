// Packs one operand of a matrix product into an rgba32float texture for matmul_texture.wgsl.
// The packed matrix X' (op(A), rows x K, or op(B), K x cols) is stored row by row, four
// consecutive columns per texel, each row padded with zeros to `cols4` texels and the matrix to
// `rows_padded` rows, so the product reads whole blocks with no bounds checks. Texel t of that
// linear layout sits at (t % 4096, t / 4096): any matrix up to 4096 x (texture height) texels fits.
// Why textures: on llvmpipe a texel fetch costs a fraction of a storage-buffer load (see
// matmul_texture.wgsl), and this pass loads each element once where the product loads it
// M or N / block times.

// Params: PackParams in src/ops/matmul_texture.rs.
struct PackParams {
    rows: u32,
    cols: u32,
    rows_padded: u32,
    cols4: u32,
    batch: u32,
    // X'[b, r, c] is x[base + b * batch_stride + r * row_stride + c * col_stride].
    base: u32,
    row_stride: u32,
    col_stride: u32,
    batch_stride: u32,
    pitch: u32,
}

@group(0) @binding(0) var<uniform> p: PackParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var packed: texture_storage_2d<rgba32float, write>;

// The texel's (batch, row, texel in row) and whether it lies in the launch.
struct Texel {
    b: u32,
    r: u32,
    q: u32,
    inside: bool,
}

fn locate(t: u32) -> Texel {
    let per_matrix = p.rows_padded * p.cols4;
    var out: Texel;
    out.inside = t < per_matrix * p.batch;
    out.b = t / per_matrix;
    let rem = t - out.b * per_matrix;
    out.r = rem / p.cols4;
    out.q = rem - out.r * p.cols4;
    return out;
}

fn store(t: u32, v: vec4<f32>) {
    textureStore(packed, vec2<u32>(t & 4095u, t >> 12u), v);
}

// Any strides (transposed operands, unaligned windows): four scalar loads per texel.
@compute @workgroup_size(256)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = flat_index(gid, p.pitch);
    let at = locate(t);
    if !at.inside { return; }
    var v = vec4<f32>(0.0);
    if at.r < p.rows {
        let row = p.base + at.b * p.batch_stride + at.r * p.row_stride;
        for (var i = 0u; i < 4u; i++) {
            let c = 4u * at.q + i;
            if c < p.cols {
                v[i] = x[row + c * p.col_stride];
            }
        }
    }
    store(t, v);
}

// Rows contiguous and every offset a multiple of 4 (col_stride 1; cols, base, row_stride and
// batch_stride multiples of 4): one vec4 load per texel.
@compute @workgroup_size(256)
fn pack_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = flat_index(gid, p.pitch);
    let at = locate(t);
    if !at.inside { return; }
    var v = vec4<f32>(0.0);
    if at.r < p.rows && 4u * at.q < p.cols {
        v = x4[(p.base + at.b * p.batch_stride + at.r * p.row_stride) / 4u + at.q];
    }
    store(t, v);
}
