// BYOL's augmentations on a batch of u8 RGB images (HWC, four bytes per u32 word), producing
// normalized f32 views [N, 3, S, S]. Order: crop+resize -> flip -> color jitter (per-image random
// order) -> grayscale -> gaussian blur -> solarize -> normalize. Color math follows torchvision
// on float images in [0, 1]. Per-image parameters are VIEW_WORDS words (src/data/augment.rs):
//   0..4 crop x, y, w, h (source pixels)   4 flip   5 brightness  6 contrast  7 saturation
//   8 hue shift   9 jitter order (2 bits per position)   10 position of contrast (4 = none)
//   11 grayscale   12 blur sigma (0 = none)   13 solarize
// One invocation per output pixel (all three channels: the color ops mix them), except gray_mean.

const VIEW_WORDS: u32 = 16u;

struct Params {
    n: u32,
    src_h: u32,
    src_w: u32,
    size: u32,
    radius: u32,
    threshold: f32,
    mean_r: f32,
    mean_g: f32,
    mean_b: f32,
    std_r: f32,
    std_g: f32,
    std_b: f32,
    // Workgroups per grid row (appended by Engine::dispatch_1d).
    pitch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> images: array<u32>;
@group(0) @binding(2) var<storage, read> views: array<u32>;
@group(0) @binding(3) var<storage, read> src: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
// byte / 255 for every byte, computed on the CPU: shader division may be approximate, and the
// identity transform must give back exactly byte / 255.
@group(0) @binding(5) var<storage, read> unit_of_byte: array<f32>;

fn word(n: u32, k: u32) -> u32 {
    return views[n * VIEW_WORDS + k];
}

fn wordf(n: u32, k: u32) -> f32 {
    return bitcast<f32>(views[n * VIEW_WORDS + k]);
}

// Byte k of the packed batch, as a value in [0, 1].
fn byte_at(k: u32) -> f32 {
    return unit_of_byte[(images[k >> 2u] >> ((k & 3u) * 8u)) & 0xffu];
}

// One source pixel (x, y) of image n, RGB in [0, 1].
fn source_pixel(n: u32, x: u32, y: u32) -> vec3<f32> {
    let k = ((n * p.src_h + y) * p.src_w + x) * 3u;
    return vec3<f32>(byte_at(k), byte_at(k + 1u), byte_at(k + 2u));
}

// torchvision's rgb_to_grayscale weights.
fn gray(c: vec3<f32>) -> f32 {
    return 0.2989 * c.r + 0.587 * c.g + 0.114 * c.b;
}

// torchvision's _blend: ratio * a + (1 - ratio) * b, clamped to [0, 1].
fn blend(a: vec3<f32>, b: vec3<f32>, ratio: f32) -> vec3<f32> {
    return clamp(ratio * a + (1.0 - ratio) * b, vec3<f32>(0.0), vec3<f32>(1.0));
}

// torchvision's adjust_hue: to HSV, rotate the hue by `shift` turns, back to RGB.
fn adjust_hue(c: vec3<f32>, shift: f32) -> vec3<f32> {
    let maxc = max(c.r, max(c.g, c.b));
    let minc = min(c.r, min(c.g, c.b));
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / select(maxc, 1.0, eqc);
    let crd = select(cr, 1.0, eqc);
    let rc = (maxc - c.r) / crd;
    let gc = (maxc - c.g) / crd;
    let bc = (maxc - c.b) / crd;
    var h: f32;
    if maxc == c.r {
        h = bc - gc;
    } else if maxc == c.g {
        h = 2.0 + rc - bc;
    } else {
        h = 4.0 + gc - rc;
    }
    h = fract(h / 6.0 + 1.0);
    h = fract(h + shift);
    let v = maxc;
    let h6 = h * 6.0;
    let fl = floor(h6);
    let f = h6 - fl;
    let i = u32(fl) % 6u;
    let pp = clamp(v * (1.0 - s), 0.0, 1.0);
    let q = clamp(v * (1.0 - s * f), 0.0, 1.0);
    let t = clamp(v * (1.0 - s * (1.0 - f)), 0.0, 1.0);
    switch i {
        case 0u: { return vec3<f32>(v, t, pp); }
        case 1u: { return vec3<f32>(q, v, pp); }
        case 2u: { return vec3<f32>(pp, v, t); }
        case 3u: { return vec3<f32>(pp, q, v); }
        case 4u: { return vec3<f32>(t, pp, v); }
        default: { return vec3<f32>(v, pp, q); }
    }
}

// Jitter op `op` of image n (0 brightness, 1 contrast, 2 saturation, 3 hue); identity factors
// are skipped so that an unapplied op is exact.
fn jitter_op(c: vec3<f32>, n: u32, op: u32, mean: f32) -> vec3<f32> {
    let f = wordf(n, 5u + op);
    switch op {
        case 0u: {
            if f != 1.0 { return clamp(c * f, vec3<f32>(0.0), vec3<f32>(1.0)); }
        }
        case 1u: {
            if f != 1.0 { return blend(c, vec3<f32>(mean), f); }
        }
        case 2u: {
            if f != 1.0 { return blend(c, vec3<f32>(gray(c)), f); }
        }
        default: {
            if f != 0.0 { return adjust_hue(c, f); }
        }
    }
    return c;
}

fn op_at(n: u32, pos: u32) -> u32 {
    return (word(n, 9u) >> (2u * pos)) & 3u;
}

fn grayscale(c: vec3<f32>, n: u32) -> vec3<f32> {
    if word(n, 11u) != 0u {
        return vec3<f32>(gray(c));
    }
    return c;
}

fn index(gid: vec3<u32>) -> u32 {
    return flat_index(gid, p.pitch);
}

fn store(base: u32, plane: u32, c: vec3<f32>) {
    dst[base] = c.r;
    dst[base + plane] = c.g;
    dst[base + 2u * plane] = c.b;
}

fn load(base: u32, plane: u32) -> vec3<f32> {
    return vec3<f32>(src[base], src[base + plane], src[base + 2u * plane]);
}

// Crop + bilinear resize (align_corners=False, edges clamped to the crop box) + flip, then the
// jitter ops before contrast. dst: [N, 3, S, S] values in [0, 1].
@compute @workgroup_size(256)
fn color_pre(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = index(gid);
    let plane = p.size * p.size;
    if idx >= p.n * plane { return; }
    let n = idx / plane;
    let pix = idx % plane;
    let oy = pix / p.size;
    let ox = pix % p.size;
    let x0 = word(n, 0u);
    let y0 = word(n, 1u);
    let cw = word(n, 2u);
    let ch = word(n, 3u);
    let sx_out = select(ox, p.size - 1u - ox, word(n, 4u) != 0u);
    // Source coordinates relative to the crop box keep the fractions precise.
    let fx_src = max((f32(sx_out) + 0.5) * (f32(cw) / f32(p.size)) - 0.5, 0.0);
    let fy_src = max((f32(oy) + 0.5) * (f32(ch) / f32(p.size)) - 0.5, 0.0);
    let xl = min(u32(fx_src), cw - 1u);
    let yl = min(u32(fy_src), ch - 1u);
    let xh = min(xl + 1u, cw - 1u);
    let yh = min(yl + 1u, ch - 1u);
    let fx = fx_src - f32(xl);
    let fy = fy_src - f32(yl);
    let top = source_pixel(n, x0 + xl, y0 + yl) * (1.0 - fx) + source_pixel(n, x0 + xh, y0 + yl) * fx;
    let bottom = source_pixel(n, x0 + xl, y0 + yh) * (1.0 - fx) + source_pixel(n, x0 + xh, y0 + yh) * fx;
    var c = top * (1.0 - fy) + bottom * fy;
    let split = word(n, 10u);
    for (var pos = 0u; pos < split; pos++) {
        c = jitter_op(c, n, op_at(n, pos), 0.0);
    }
    if split >= 4u {
        c = grayscale(c, n);
    }
    store(n * 3u * plane + pix, plane, c);
}

var<workgroup> partial: array<f32, 256>;

// Mean of the grayscale image per image (what contrast blends with): one workgroup per image,
// strided partial sums then a fixed tree, so the result is deterministic. src: [N, 3, S, S],
// dst: [N].
@compute @workgroup_size(256)
fn gray_mean(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = wg.x;
    let plane = p.size * p.size;
    let base = n * 3u * plane;
    var acc = 0.0;
    for (var i = li; i < plane; i += 256u) {
        acc += gray(load(base + i, plane));
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if li < s {
            partial[li] += partial[li + s];
        }
        workgroupBarrier();
    }
    if li == 0u {
        dst[n] = partial[0] / f32(plane);
    }
}

// Contrast (blend with the image's gray mean, src = means), the jitter ops after it and
// grayscale, in place on dst. Images without contrast were finished by color_pre.
@compute @workgroup_size(256)
fn color_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = index(gid);
    let plane = p.size * p.size;
    if idx >= p.n * plane { return; }
    let n = idx / plane;
    let split = word(n, 10u);
    if split >= 4u { return; }
    let base = n * 3u * plane + idx % plane;
    var c = vec3<f32>(dst[base], dst[base + plane], dst[base + 2u * plane]);
    c = jitter_op(c, n, 1u, src[n]);
    for (var pos = split + 1u; pos < 4u; pos++) {
        c = jitter_op(c, n, op_at(n, pos), 0.0);
    }
    c = grayscale(c, n);
    store(base, plane, c);
}

// torchvision's "reflect" padding (the edge is not repeated), folded for any offset.
fn reflect(i: i32, len: u32) -> u32 {
    if len == 1u { return 0u; }
    let period = 2 * (i32(len) - 1);
    var j = abs(i) % period;
    if j >= i32(len) { j = period - j; }
    return u32(j);
}

// One axis of the separable gaussian blur at pixel (x, y) of image n: weights exp(-k^2 / 2 sigma^2)
// for k in [-radius, radius], normalized to sum 1 (torchvision's kernel).
fn blur_axis(n: u32, x: u32, y: u32, horizontal: bool) -> vec3<f32> {
    let plane = p.size * p.size;
    let base = n * 3u * plane;
    let sigma = wordf(n, 12u);
    if sigma <= 0.0 {
        return load(base + y * p.size + x, plane);
    }
    let r = i32(p.radius);
    var acc = vec3<f32>(0.0);
    var wsum = 0.0;
    for (var k = -r; k <= r; k++) {
        let d = f32(k) / sigma;
        let w = exp(-0.5 * d * d);
        var at: u32;
        if horizontal {
            at = y * p.size + reflect(i32(x) + k, p.size);
        } else {
            at = reflect(i32(y) + k, p.size) * p.size + x;
        }
        acc += w * load(base + at, plane);
        wsum += w;
    }
    return acc / wsum;
}

// Horizontal blur pass: src -> dst, both [N, 3, S, S].
@compute @workgroup_size(256)
fn blur_h(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = index(gid);
    let plane = p.size * p.size;
    if idx >= p.n * plane { return; }
    let n = idx / plane;
    let pix = idx % plane;
    let c = blur_axis(n, pix % p.size, pix / p.size, true);
    store(n * 3u * plane + pix, plane, c);
}

// Vertical blur pass, then solarize and normalize: src -> dst, the finished view.
@compute @workgroup_size(256)
fn blur_v_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = index(gid);
    let plane = p.size * p.size;
    if idx >= p.n * plane { return; }
    let n = idx / plane;
    let pix = idx % plane;
    var c = blur_axis(n, pix % p.size, pix / p.size, false);
    if word(n, 13u) != 0u {
        c = select(c, 1.0 - c, c >= vec3<f32>(p.threshold));
    }
    c = (c - vec3<f32>(p.mean_r, p.mean_g, p.mean_b)) / vec3<f32>(p.std_r, p.std_g, p.std_b);
    store(n * 3u * plane + pix, plane, c);
}
