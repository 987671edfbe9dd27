// Weighted k-nearest-neighbour votes (the InstDisc / solo-learn kNN monitor): for every query row of
// a similarity matrix [rows, n] against a labeled bank of n images, the k largest similarities vote
// for their images' classes with weight exp((s - 1) / T). One workgroup per query row.
//
// The k-th largest similarity is found exactly by a radix select over the similarities' order-
// preserving u32 keys: four passes of one byte each, a 256-bin histogram in workgroup memory per
// pass, so no sort and no per-row scratch in global memory. Similarities equal to the k-th (ties at
// the boundary) share the votes that are left: each of the `ties` equal ones votes with weight
// w * need / ties, so the result never depends on the bank's order.
//
// The weight is exp(s / T) scaled by exp(-1 / T) (cosine similarities are at most 1), so it never
// overflows; the scale is the same for every vote of a row and cannot change its argmax.

struct Params {
    // Query rows in this launch, bank size, classes.
    rows: u32,
    n: u32,
    classes: u32,
    // Neighbours that vote, 1 <= k <= n (clamped on the Rust side).
    k: u32,
    // 1 / temperature.
    inv_t: f32,
    // Element offsets of this launch's first row inside the sims / votes bindings.
    sims_base: u32,
    votes_base: u32,
}

const WG: u32 = 128u;
// Classes one pass over the bank accumulates (one private array per invocation).
const CLASS_CHUNK: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> sims: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> votes: array<f32>;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> red: array<f32, 2048>; // CLASS_CHUNK * WG
// The select's state, written by invocation 0: key prefix found so far, its mask, the votes still
// to place at or below the prefix, and (after the last pass) how many similarities equal the k-th.
var<workgroup> sel: vec4<u32>;

// A u32 whose unsigned order is the float order (negative floats flip entirely, others gain the
// sign bit).
fn order_key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if (b & 0x80000000u) != 0u {
        return ~b;
    }
    return b | 0x80000000u;
}

@compute @workgroup_size(128)
fn weighted_votes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = wid.x + wid.y * 65535u;
    let lid = lid3.x;
    if row >= p.rows {
        return; // uniform per workgroup: no barrier is skipped by only some invocations
    }
    let base = p.sims_base + row * p.n;

    if lid == 0u {
        sel = vec4<u32>(0u, 0u, p.k, 0u);
    }
    for (var pass_ = 0u; pass_ < 4u; pass_++) {
        let shift = 24u - 8u * pass_;
        atomicStore(&hist[lid], 0u);
        atomicStore(&hist[lid + WG], 0u);
        workgroupBarrier();
        let s = sel;
        for (var j = lid; j < p.n; j += WG) {
            let key = order_key(sims[base + j]);
            if (key & s.y) == s.x {
                atomicAdd(&hist[(key >> shift) & 255u], 1u);
            }
        }
        workgroupBarrier();
        if lid == 0u {
            // The bin, from the top, in which the remaining count is reached.
            var above = 0u;
            var bin = 255u;
            for (var b = 0u; b < 256u; b++) {
                bin = 255u - b;
                let c = atomicLoad(&hist[bin]);
                if above + c >= s.z {
                    break;
                }
                above += c;
            }
            sel = vec4<u32>(s.x | (bin << shift), s.y | (255u << shift), s.z - above, atomicLoad(&hist[bin]));
        }
        workgroupBarrier();
    }
    let s = sel;
    let threshold = s.x;
    let tie_share = f32(s.z) / f32(max(s.w, 1u));

    for (var c0 = 0u; c0 < p.classes; c0 += CLASS_CHUNK) {
        var acc: array<f32, 16>;
        for (var c = 0u; c < CLASS_CHUNK; c++) {
            acc[c] = 0.0;
        }
        for (var j = lid; j < p.n; j += WG) {
            let x = sims[base + j];
            let key = order_key(x);
            let c = labels[j] - c0;
            if key >= threshold && c < CLASS_CHUNK {
                var w = exp((x - 1.0) * p.inv_t);
                if key == threshold {
                    w *= tie_share;
                }
                acc[c] += w;
            }
        }
        workgroupBarrier(); // the previous chunk's readers are done with red
        for (var c = 0u; c < CLASS_CHUNK; c++) {
            red[c * WG + lid] = acc[c];
        }
        for (var half = WG / 2u; half > 0u; half >>= 1u) {
            workgroupBarrier();
            if lid < half {
                for (var c = 0u; c < CLASS_CHUNK; c++) {
                    red[c * WG + lid] += red[c * WG + lid + half];
                }
            }
        }
        workgroupBarrier();
        if lid < CLASS_CHUNK && c0 + lid < p.classes {
            votes[p.votes_base + row * p.classes + c0 + lid] = red[lid * WG];
        }
    }
}
