// Eigenvalues of a symmetric matrix by cyclic parallel Jacobi, and the effective rank (RankMe) of
// a spectrum. Every launch is ONE workgroup that loops internally; its caller bounds the size.
//
// Jacobi: every sweep visits each (p, q) pair once in m - 1 rounds of a round-robin tournament
// (m = n rounded up to even; an odd n gets a dummy index n whose pairs do nothing). The m / 2 pairs
// of a round are disjoint, so their rotations commute: all are computed from the state at the start
// of the round, then applied to rows, then to columns, with barriers between the phases.
//
// The whole solve is a schedule of MAX_SWEEPS * (m - 1) steps (one round each, with a convergence
// check before every sweep). One launch runs steps [step0, step1): on a GPU that is all of them, in
// one dispatch; on llvmpipe, which silently ends every loop of an invocation after 65535 iterations
// in total, the Rust side splits the schedule over several launches that each stay under that.
// `state` carries what later launches need: the converged flag, ||A||_F^2 and the scale.

struct Params {
    // Matrix side (jacobi) or number of eigenvalues (effective_rank).
    n: u32,
    // n rounded up to even.
    m: u32,
    // The steps this launch runs; the first launch copies the input, the last writes the output.
    step0: u32,
    step1: u32,
    first: u32,
    last: u32,
    // Converged once ||off-diagonal||_F <= tol * ||A||_F.
    tol: f32,
    // effective_rank: eigenvalues at or below noise * max eigenvalue count as zero.
    noise: f32,
    // effective_rank: added to every normalized singular value (RankMe's epsilon).
    eps: f32,
}

const WG: u32 = 256u;
// Pairs per round at most: n <= 2 * MAX_PAIRS (checked on the Rust side).
const MAX_PAIRS: u32 = 512u;

@group(0) @binding(0) var<uniform> p: Params;
// jacobi: the input matrix (left intact); effective_rank: the eigenvalues.
@group(0) @binding(1) var<storage, read> src: array<f32>;
// jacobi: the matrix being rotated, n x n.
@group(0) @binding(2) var<storage, read_write> work: array<f32>;
// jacobi: n eigenvalues, descending; effective_rank: one value.
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// jacobi: [converged (0 or 1), ||A||_F^2 of the scaled matrix, scale].
@group(0) @binding(4) var<storage, read_write> state: array<f32>;

// Per pair of the current round: (c, s, new a_pp, new a_qq); s == 0 means no rotation.
var<workgroup> rot: array<vec4<f32>, MAX_PAIRS>;
var<workgroup> red: array<f32, WG>;
var<workgroup> shared_scalar: f32;

// Sum of one value per invocation, the same result in every invocation (a fixed tree: deterministic).
fn reduce_sum(lid: u32, v: f32) -> f32 {
    workgroupBarrier(); // the previous reduction's readers are done with red
    red[lid] = v;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if lid < s {
            red[lid] += red[lid + s];
        }
    }
    return workgroupUniformLoad(&red[0]);
}

fn reduce_max(lid: u32, v: f32) -> f32 {
    workgroupBarrier();
    red[lid] = v;
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if lid < s {
            red[lid] = max(red[lid], red[lid + s]);
        }
    }
    return workgroupUniformLoad(&red[0]);
}

// state[i], as a value every invocation agrees on (storage loads are not uniform by themselves).
fn uniform_state(lid: u32, i: u32) -> f32 {
    workgroupBarrier();
    if lid == 0u {
        shared_scalar = state[i];
    }
    return workgroupUniformLoad(&shared_scalar);
}

// Every invocation's storage and workgroup writes are visible to the others past this point.
fn sync() {
    storageBarrier();
    workgroupBarrier();
}

// Pair k of round r of the round-robin over m indices (circle method: index m - 1 stays put, the
// others turn); returns (p, q) with p < q. Over rounds 0..m-1 every pair appears exactly once.
fn pair_of(r: u32, k: u32) -> vec2<u32> {
    let n = p.m - 1u;
    if k == 0u {
        return vec2<u32>(r, n);
    }
    let a = (r + k) % n;
    let b = (r + n - k) % n;
    return vec2<u32>(min(a, b), max(a, b));
}

// The rotation that zeroes a_pq (Golub & Van Loan's symmetric Schur 2x2): the smaller of the two
// angles, t = tan = sign(theta) / (|theta| + sqrt(theta^2 + 1)), theta = (a_qq - a_pp) / (2 a_pq).
fn rotation(pq: vec2<u32>, skip: f32) -> vec4<f32> {
    let n = p.n;
    if pq.y >= n {
        return vec4<f32>(1.0, 0.0, 0.0, 0.0); // the dummy index of an odd n
    }
    let app = work[pq.x * n + pq.x];
    let aqq = work[pq.y * n + pq.y];
    let apq = work[pq.x * n + pq.y];
    if abs(apq) <= skip {
        return vec4<f32>(1.0, 0.0, app, aqq);
    }
    // |apq| > skip keeps theta^2 far from overflow (the matrix is scaled to max |a| = 1).
    let theta = (aqq - app) / (2.0 * apq);
    var t = 1.0 / (abs(theta) + sqrt(theta * theta + 1.0));
    if theta < 0.0 {
        t = -t; // theta == 0 takes +45 degrees (WGSL's sign(0) would give no rotation)
    }
    let c = 1.0 / sqrt(t * t + 1.0);
    // The exact new diagonal of the 2x2 block; its off-diagonal becomes exactly zero.
    return vec4<f32>(c, t * c, app - t * apq, aqq + t * apq);
}

// One round: rotations from the state at its start, then rows, then columns.
fn jacobi_round(lid: u32, r: u32, skip: f32) {
    let n = p.n;
    let half = p.m / 2u;
    for (var k = lid; k < half; k += WG) {
        rot[k] = rotation(pair_of(r, k), skip);
    }
    sync();
    // Rows p and q of each pair.
    for (var i = lid; i < half * n; i += WG) {
        let k = i / n;
        let j = i % n;
        let g = rot[k];
        if g.y != 0.0 {
            let pq = pair_of(r, k);
            let ap = work[pq.x * n + j];
            let aq = work[pq.y * n + j];
            work[pq.x * n + j] = g.x * ap - g.y * aq;
            work[pq.y * n + j] = g.y * ap + g.x * aq;
        }
    }
    sync();
    // Columns p and q of each pair; the pair's own 2x2 block gets its exact values.
    for (var i = lid; i < half * n; i += WG) {
        let k = i / n;
        let j = i % n;
        let g = rot[k];
        if g.y != 0.0 {
            let pq = pair_of(r, k);
            let ap = work[j * n + pq.x];
            let aq = work[j * n + pq.y];
            var np = g.x * ap - g.y * aq;
            var nq = g.y * ap + g.x * aq;
            if j == pq.x {
                np = g.z;
                nq = 0.0;
            } else if j == pq.y {
                np = 0.0;
                nq = g.w;
            }
            work[j * n + pq.x] = np;
            work[j * n + pq.y] = nq;
        }
    }
    sync();
}

// Copies the input into the scratch matrix scaled to max |a| = 1 (so squared norms neither
// overflow nor underflow) and starts the state.
fn jacobi_init(lid: u32) {
    let nn = p.n * p.n;
    var local_max = 0.0;
    for (var i = lid; i < nn; i += WG) {
        local_max = max(local_max, abs(src[i]));
    }
    let amax = reduce_max(lid, local_max);
    let scale = select(1.0, amax, amax > 0.0);
    var local_sq = 0.0;
    for (var i = lid; i < nn; i += WG) {
        let v = src[i] / scale;
        work[i] = v;
        local_sq += v * v;
    }
    let all_sq = reduce_sum(lid, local_sq);
    if lid == 0u {
        state[0] = 0.0;
        state[1] = all_sq;
        state[2] = scale;
    }
    sync();
}

// The diagonal, scaled back, in descending order: each value's rank counts the larger ones (ties
// broken by index, so the ranks are a permutation).
fn jacobi_finish(lid: u32) {
    let n = p.n;
    let scale = state[2];
    for (var i = lid; i < n; i += WG) {
        let li = work[i * n + i];
        var rank = 0u;
        for (var j = 0u; j < n; j++) {
            let lj = work[j * n + j];
            if lj > li || (lj == li && j < i) {
                rank += 1u;
            }
        }
        out[rank] = li * scale;
    }
}

@compute @workgroup_size(256)
fn jacobi(@builtin(local_invocation_index) lid: u32) {
    let n = p.n;
    let nn = n * n;
    let rounds = p.m - 1u;
    if p.first != 0u {
        jacobi_init(lid);
    }
    let all_sq = uniform_state(lid, 1u);
    var converged = uniform_state(lid, 0u) != 0.0;
    // Entries this small are left alone: even all of them together stay under the tolerance.
    let skip = p.tol * sqrt(all_sq) / f32(2u * p.m);
    for (var step = p.step0; step < p.step1 && !converged; step++) {
        let r = step % rounds;
        if r == 0u {
            var off = 0.0;
            for (var i = lid; i < nn; i += WG) {
                let v = work[i];
                if i / n != i % n {
                    off += v * v;
                }
            }
            let off_sq = reduce_sum(lid, off);
            if off_sq <= p.tol * p.tol * all_sq {
                converged = true;
                if lid == 0u {
                    state[0] = 1.0;
                }
                break;
            }
        }
        jacobi_round(lid, r, skip);
    }
    if p.last != 0u {
        sync();
        jacobi_finish(lid);
    }
}

// exp(-sum_k q_k log q_k) with q_k = sigma_k / sum(sigma) + eps, sigma_k = sqrt(lambda_k) for the
// eigenvalues lambda of a Gram matrix (those at or below the noise floor count as zero).
@compute @workgroup_size(256)
fn effective_rank(@builtin(local_invocation_index) lid: u32) {
    let n = p.n;
    var local_max = 0.0;
    for (var i = lid; i < n; i += WG) {
        local_max = max(local_max, src[i]);
    }
    let floor = max(reduce_max(lid, local_max) * p.noise, 0.0);
    var local_sum = 0.0;
    for (var i = lid; i < n; i += WG) {
        let l = src[i];
        local_sum += select(0.0, sqrt(l), l > floor);
    }
    let total = reduce_sum(lid, local_sum);
    var local_h = 0.0;
    for (var i = lid; i < n; i += WG) {
        let l = src[i];
        let sigma = select(0.0, sqrt(l), l > floor);
        // A zero matrix (total == 0) leaves every q_k = eps: rank about 1, total collapse.
        let q = select(0.0, sigma / total, total > 0.0) + p.eps;
        local_h -= q * log(q);
    }
    let h = reduce_sum(lid, local_h);
    if lid == 0u {
        out[0] = exp(h);
    }
}
