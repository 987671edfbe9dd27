// Declarations every shader shares: src/kernels.rs prepends this file to each shader in
// shaders/ before compiling it, so they are written once. Unused ones cost nothing.

// The flat index of a 1-D launch of 256-wide workgroups that Engine::dispatch_1d folded into a
// 2-D grid of `pitch` workgroups per row.
fn flat_index(gid: vec3<u32>, pitch: u32) -> u32 {
    return gid.x + gid.y * pitch * 256u;
}

// q / d for q < 2^23 without an integer division: x86 has no vector integer divide, so llvmpipe
// runs u32 `/` lane by lane at tens of cycles each, while a float divide is one vector instruction.
// (q + 0.5) / d is at least 0.5 / d from an integer and its f32 rounding error is below that for
// q < 2^23, so truncating it is exact.
fn div_small(q: u32, d: u32) -> u32 {
    return u32((f32(q) + 0.5) / f32(d));
}

// q / d for any q: div_small where it is exact, an integer division beyond.
fn div_fast(q: u32, d: u32) -> u32 {
    if q < 8388608u {
        return div_small(q, d);
    }
    return q / d;
}

// The parameter block of both conv2d kernel families (conv2d.wgsl, conv2d_tiled.wgsl);
// ConvParams in src/ops/conv2d.rs.
struct ConvParams {
    batch: u32,
    c: u32,
    h: u32,
    w: u32,
    o: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    // Element offsets of this launch inside its x / y bindings (batch-split launches).
    x_base: u32,
    y_base: u32,
    has_bias: u32,
    // backward_weight: pixels per split, and the index of this launch's first split (grid z).
    k_chunk: u32,
    split0: u32,
    // forward / backward_input: this launch sums channels [chan_begin, chan_end) (input channels,
    // or output channels for backward_input) and adds to the output instead of storing when
    // `accumulate` is set (later launches of a split channel loop).
    chan_begin: u32,
    chan_end: u32,
    accumulate: u32,
    // forward: this launch computes output channels [o_begin, o_end).
    o_begin: u32,
    o_end: u32,
    // forward / backward_input with WEIGHT_UNIFORM: added (wrapping) to a flat weight index to
    // find it in the uniform window.
    w_shift: u32,
    // backward_weight of conv2d.wgsl: the splits this launch computes (its 1-D grid covers them).
    splits: u32,
}

// The parameter block of the three matmul kernels (matmul_blocked, matmul_vec4, matmul_tiled);
// GemmParams in src/ops/matmul.rs. C = alpha * op(A) * op(B) + beta * C over `batch` matrices.
struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_stride: u32,
    b_stride: u32,
    c_stride: u32,
    a_base: u32,
    b_base: u32,
    c_base: u32,
    alpha: f32,
    beta: f32,
    // This launch sums k in [k_begin, k_end) (long K is split over launches, see ops/matmul.rs).
    k_begin: u32,
    k_end: u32,
}
