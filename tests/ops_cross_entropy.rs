//! Gradient checks of softmax cross entropy (src/ops/cross_entropy.rs, shaders/cross_entropy.wgsl):
//! against the f64 reference, stable at large logits, validated targets, split inputs, errors.

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{EngineOptions, Error, Tensor};
use common::loss_ref::{ce_backward, ce_forward};
use common::{rand_vec, OpCheck};

const ROWS: [usize; 3] = [1, 7, 33];
const FEATURES: [usize; 4] = [1, 7, 33, 128];

fn rand_targets(rng: &mut Rng, n: usize, classes: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(classes) as u32).collect()
}

fn check_cross_entropy(rng: &mut Rng, n: usize, k: usize, offset: f64, name: &str) {
    let e = common::engine();
    let targets = rand_targets(rng, n, k);
    let t_idx: Vec<usize> = targets.iter().map(|&t| t as usize).collect();
    let t_gpu = ops::upload_targets(&e, &targets, k).unwrap();
    let rows = |x: &[f64]| -> Vec<Vec<f64>> { x.chunks(k).map(<[f64]>::to_vec).collect() };
    let logits: Vec<f64> = rand_vec(rng, n * k)
        .iter()
        .map(|v| v * 3.0 + offset)
        .collect();
    OpCheck {
        name: &format!("{name} {n}x{k}"),
        inputs: vec![(logits, vec![n, k])],
        grad: vec![true],
        cpu_forward: &|x| vec![ce_forward(&rows(&x[0]), &t_idx)],
        cpu_backward: &|x, dy| vec![ce_backward(&rows(&x[0]), &t_idx, dy[0]).concat()],
        gpu_forward: &|t| ops::cross_entropy(&t[0], &t_gpu),
        rel: 1e-4,
    }
    .run(rng);
}

#[test]
fn cross_entropy_matches_reference() {
    let mut rng = Rng::new(44);
    for n in ROWS {
        for k in FEATURES {
            check_cross_entropy(&mut rng, n, k, 0.0, "cross_entropy");
        }
    }
}

#[test]
fn cross_entropy_is_stable_for_large_logits() {
    let mut rng = Rng::new(45);
    // Logits near 1000 overflow exp() in f32 without the max subtraction.
    for (n, k) in [(7, 33), (33, 7), (1, 128)] {
        check_cross_entropy(&mut rng, n, k, 1000.0, "cross_entropy +1000");
        check_cross_entropy(&mut rng, n, k, -1000.0, "cross_entropy -1000");
    }
}

#[test]
fn cross_entropy_targets_are_validated_and_clamped() {
    let e = common::engine();
    assert!(matches!(
        ops::check_targets(&[0, 6, 7], 7),
        Err(Error::Invalid(_))
    ));
    assert!(ops::check_targets(&[0, 6, 3], 7).is_ok());
    assert!(ops::upload_targets(&e, &[3, 9], 5).is_err());
    // A label uploaded without validation cannot make the kernel read out of bounds: it is clamped
    // to the last class.
    let logits = Tensor::from_slice(&e, &[0.5, -1.0, 2.0, 0.25], &[2, 2]).unwrap();
    let wild = Tensor::from_u32(&e, &[99, 1], &[2]).unwrap();
    let last = Tensor::from_u32(&e, &[1, 1], &[2]).unwrap();
    let a = ops::cross_entropy(&logits, &wild).unwrap().item().unwrap();
    let b = ops::cross_entropy(&logits, &last).unwrap().item().unwrap();
    assert!(a.is_finite() && a == b, "{a} vs {b}");
}

#[test]
fn cross_entropy_splits_inputs_larger_than_one_binding() {
    // A 4 KiB binding holds 1024 floats: [33, 128] rows need several launches.
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(52);
    let (n, d) = (33, 128);
    let targets = rand_targets(&mut rng, n, d);
    let t_idx: Vec<usize> = targets.iter().map(|&t| t as usize).collect();
    let t_gpu = ops::upload_targets(&e, &targets, d).unwrap();
    let rows = |x: &[f64]| -> Vec<Vec<f64>> { x.chunks(d).map(<[f64]>::to_vec).collect() };
    OpCheck {
        name: "cross_entropy split",
        inputs: vec![(rand_vec(&mut rng, n * d), vec![n, d])],
        grad: vec![true],
        cpu_forward: &|x| vec![ce_forward(&rows(&x[0]), &t_idx)],
        cpu_backward: &|x, dy| vec![ce_backward(&rows(&x[0]), &t_idx, dy[0]).concat()],
        gpu_forward: &|t| ops::cross_entropy(&t[0], &t_gpu),
        rel: 1e-4,
    }
    .run_on(&e, &mut rng);
}

#[test]
fn bad_cross_entropy_inputs_are_errors_not_panics() {
    let e = common::engine();
    let a = Tensor::zeros(&e, &[4, 3]).unwrap();
    let labels = Tensor::from_u32(&e, &[0, 1, 2, 0], &[4]).unwrap();
    let float_labels = Tensor::zeros(&e, &[4]).unwrap();
    let short = Tensor::from_u32(&e, &[0, 1], &[2]).unwrap();
    assert!(ops::cross_entropy(&a, &labels).is_ok());
    assert!(matches!(
        ops::cross_entropy(&a, &float_labels),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        ops::cross_entropy(&a, &short),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        ops::cross_entropy(&labels, &labels),
        Err(Error::Invalid(_))
    ));
    e.clear_tape();
}
