//! Gradient checks of nt_xent (SimCLR's loss) against an f64 reference that builds the 2N x 2N
//! similarities directly and leaves each row's own entry out of its softmax; and its error paths.

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{EngineOptions, Error, Tensor};
use common::l2_ref::{normalize, normalize_backward};
use common::{rand_vec, OpCheck};

/// The stacked normalized rows [ẑ1; ẑ2] as 2N vectors.
fn stacked(z1: &[f64], z2: &[f64], d: usize) -> Vec<Vec<f64>> {
    let (h1, _) = normalize(z1, d);
    let (h2, _) = normalize(z2, d);
    h1.chunks(d)
        .chain(h2.chunks(d))
        .map(<[f64]>::to_vec)
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Softmax over row i's similarities to every other row (its own entry left out), at temperature t.
fn softmax_row(z: &[Vec<f64>], i: usize, t: f64) -> Vec<f64> {
    let logits: Vec<f64> = z.iter().map(|zj| dot(&z[i], zj) / t).collect();
    let m = (0..z.len())
        .filter(|&j| j != i)
        .map(|j| logits[j])
        .fold(f64::NEG_INFINITY, f64::max);
    let mut p: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
    p[i] = 0.0;
    let s: f64 = p.iter().sum();
    p.iter_mut().for_each(|v| *v /= s);
    p
}

fn positive(i: usize, n: usize) -> usize {
    (i + n) % (2 * n)
}

fn nt_xent_forward(z1: &[f64], z2: &[f64], d: usize, t: f64) -> f64 {
    let z = stacked(z1, z2, d);
    let rows = z.len();
    let total: f64 = (0..rows)
        .map(|i| -softmax_row(&z, i, t)[positive(i, rows / 2)].ln())
        .sum();
    total / rows as f64
}

/// With g_ij = (p_ij - [j = pos(i)]) / (2N T), d loss / d ẑ_k = sum_j g_kj ẑ_j + sum_i g_ik ẑ_i;
/// then each half goes through its normalize backward.
fn nt_xent_backward(z1: &[f64], z2: &[f64], d: usize, t: f64, dy: f64) -> Vec<Vec<f64>> {
    let z = stacked(z1, z2, d);
    let rows = z.len();
    let g: Vec<Vec<f64>> = (0..rows)
        .map(|i| {
            let mut p = softmax_row(&z, i, t);
            p[positive(i, rows / 2)] -= 1.0;
            p.iter().map(|v| v * dy / (rows as f64 * t)).collect()
        })
        .collect();
    let mut dz = vec![0.0; rows * d];
    for i in 0..rows {
        for j in 0..rows {
            for c in 0..d {
                dz[i * d + c] += g[i][j] * z[j][c];
                dz[j * d + c] += g[i][j] * z[i][c];
            }
        }
    }
    let half = rows / 2 * d;
    vec![
        normalize_backward(z1, &dz[..half], d),
        normalize_backward(z2, &dz[half..], d),
    ]
}

fn check_nt_xent(e: &byol::Engine, rng: &mut Rng, (n, d): (usize, usize), temp: f32) {
    let t = temp as f64;
    OpCheck {
        name: &format!("nt_xent {n}x{d} T={temp}"),
        inputs: vec![
            (rand_vec(rng, n * d), vec![n, d]),
            (rand_vec(rng, n * d), vec![n, d]),
        ],
        grad: vec![true, true],
        cpu_forward: &|x| vec![nt_xent_forward(&x[0], &x[1], d, t)],
        cpu_backward: &|x, dy| nt_xent_backward(&x[0], &x[1], d, t, dy[0]),
        gpu_forward: &|ts| ops::nt_xent(&ts[0], &ts[1], temp),
        rel: 1e-4,
    }
    .run_on(e, rng);
}

#[test]
fn nt_xent_matches_reference() {
    let e = common::engine();
    let mut rng = Rng::new(61);
    for n in [1, 2, 7] {
        for d in [1, 7, 33] {
            for temp in [0.5f32, 0.1] {
                check_nt_xent(&e, &mut rng, (n, d), temp);
            }
        }
    }
}

#[test]
fn nt_xent_splits_logits_larger_than_one_binding() {
    // A 4 KiB binding holds 1024 floats: the [66, 66] logits need several row windows, so the self
    // mask's columns must follow the global row index.
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(62);
    check_nt_xent(&e, &mut rng, (33, 7), 0.5);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let e = common::engine();
    let a = Tensor::zeros(&e, &[4, 3]).unwrap();
    let taller = Tensor::zeros(&e, &[5, 3]).unwrap();
    let wider = Tensor::zeros(&e, &[4, 5]).unwrap();
    let flat = Tensor::zeros(&e, &[12]).unwrap();
    let labels = Tensor::from_u32(&e, &[0; 12], &[4, 3]).unwrap();
    assert!(matches!(
        ops::nt_xent(&a, &taller, 0.5),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        ops::nt_xent(&a, &wider, 0.5),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        ops::nt_xent(&flat, &flat, 0.5),
        Err(Error::Shape(_))
    ));
    assert!(matches!(ops::nt_xent(&a, &a, 0.0,), Err(Error::Invalid(_))));
    assert!(matches!(ops::nt_xent(&a, &a, -0.5), Err(Error::Invalid(_))));
    assert!(matches!(
        ops::nt_xent(&a, &a, f32::NAN),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        ops::nt_xent(&labels, &labels, 0.5),
        Err(Error::Invalid(_))
    ));
    assert_eq!(e.tape_len(), 0, "failed calls must record nothing");
}
