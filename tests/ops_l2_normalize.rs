//! Gradient checks of l2_normalize (src/ops/l2_normalize.rs, shaders/l2_normalize.wgsl): rows of
//! awkward widths, a zero row, inputs split over bindings, and its errors.

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{EngineOptions, Error, Tensor};
use common::l2_ref::{normalize, normalize_backward};
use common::{rand_vec, OpCheck};

const ROWS: [usize; 3] = [1, 7, 33];
const FEATURES: [usize; 4] = [1, 7, 33, 128];

#[test]
fn l2_normalize_matches_reference() {
    let mut rng = Rng::new(41);
    for n in ROWS {
        for d in FEATURES {
            OpCheck {
                name: &format!("l2_normalize {n}x{d}"),
                inputs: vec![(rand_vec(&mut rng, n * d), vec![n, d])],
                grad: vec![true],
                cpu_forward: &|x| normalize(&x[0], d).0,
                cpu_backward: &|x, dy| vec![normalize_backward(&x[0], dy, d)],
                gpu_forward: &|t| ops::l2_normalize(&t[0]),
                rel: 1e-4,
            }
            .run(&mut rng);
        }
    }
}

#[test]
fn l2_normalize_of_a_zero_row_divides_by_eps() {
    let e = common::engine();
    let x = Tensor::param(&e, &[0.0, 0.0, 0.0, 3.0, 4.0, 0.0], &[2, 3]).unwrap();
    let y = ops::l2_normalize(&x).unwrap();
    assert_eq!(y.to_vec().unwrap(), vec![0.0, 0.0, 0.0, 0.6, 0.8, 0.0]);
    let dy = Tensor::from_slice(&e, &[1e-12, -2e-12, 0.5e-12, 0.0, 0.0, 0.0], &[2, 3]).unwrap();
    let mut grads = e.backward_from(&y, dy).unwrap();
    let dx = grads.remove(&x).unwrap().to_vec().unwrap();
    // Below eps the divisor is the constant eps, so the zero row's gradient is dy / eps.
    let eps = 1e-12f32 as f64;
    common::assert_close(
        "zero row grad",
        &dx[..3],
        &[1e-12 / eps, -2e-12 / eps, 0.5e-12 / eps],
    );
}

#[test]
fn l2_normalize_splits_inputs_larger_than_one_binding() {
    // A 4 KiB binding holds 1024 floats: [33, 128] rows need several launches.
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(50);
    let (n, d) = (33, 128);
    OpCheck {
        name: "l2_normalize split",
        inputs: vec![(rand_vec(&mut rng, n * d), vec![n, d])],
        grad: vec![true],
        cpu_forward: &|x| normalize(&x[0], d).0,
        cpu_backward: &|x, dy| vec![normalize_backward(&x[0], dy, d)],
        gpu_forward: &|t| ops::l2_normalize(&t[0]),
        rel: 1e-4,
    }
    .run_on(&e, &mut rng);
}

#[test]
fn bad_l2_normalize_inputs_are_errors_not_panics() {
    let e = common::engine();
    let flat = Tensor::zeros(&e, &[12]).unwrap();
    assert!(matches!(ops::l2_normalize(&flat), Err(Error::Shape(_))));
    e.clear_tape();
}
