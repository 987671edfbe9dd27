//! Gradient checks of the BYOL loss (src/ops/byol_loss.rs, shaders/byol_loss.wgsl): its value and
//! gradient against the f64 reference, no gradient into targets, split inputs, and its errors.

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{EngineOptions, Error, Tensor};
use common::l2_ref::normalize;
use common::loss_ref::{byol_backward, byol_forward};
use common::{rand_vec, upload, OpCheck};

const ROWS: [usize; 3] = [1, 7, 33];
const FEATURES: [usize; 4] = [1, 7, 33, 128];

#[test]
fn byol_loss_matches_reference() {
    let mut rng = Rng::new(42);
    for n in ROWS {
        for d in FEATURES {
            for prenormalized in [false, true] {
                let mut p = rand_vec(&mut rng, n * d);
                if prenormalized {
                    p = normalize(&p, d).0;
                }
                OpCheck {
                    name: &format!("byol_loss {n}x{d} prenormalized={prenormalized}"),
                    inputs: vec![(p, vec![n, d]), (rand_vec(&mut rng, n * d), vec![n, d])],
                    grad: vec![true, false],
                    cpu_forward: &|x| vec![byol_forward(&x[0], &x[1], d)],
                    cpu_backward: &|x, dy| {
                        vec![byol_backward(&x[0], &x[1], d, dy[0]), vec![0.0; n * d]]
                    },
                    gpu_forward: &|t| ops::byol_loss(&t[0], &t[1]),
                    rel: 1e-4,
                }
                .run(&mut rng);
            }
        }
    }
}

#[test]
fn byol_loss_sends_no_gradient_into_targets() {
    let e = common::engine();
    let mut rng = Rng::new(43);
    let p = upload(&e, &rand_vec(&mut rng, 7 * 33), &[7, 33], true);
    let z = upload(&e, &rand_vec(&mut rng, 7 * 33), &[7, 33], true);
    let loss = ops::byol_loss(&p, &z).unwrap();
    let mut grads = e.backward(&loss).unwrap();
    assert!(grads.remove(&z).is_none(), "z must get no gradient");
    assert!(grads.remove(&p).is_some());
    // Identical rows give the minimum, 0.
    let same = ops::byol_loss(&p, &p).unwrap().item().unwrap();
    assert!(same.abs() < 1e-5, "loss of p against itself is {same}");
    e.clear_tape();
}

#[test]
fn byol_loss_splits_inputs_larger_than_one_binding() {
    // A 4 KiB binding holds 1024 floats: [33, 128] rows need several launches.
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(51);
    let (n, d) = (33, 128);
    OpCheck {
        name: "byol_loss split",
        inputs: vec![
            (rand_vec(&mut rng, n * d), vec![n, d]),
            (rand_vec(&mut rng, n * d), vec![n, d]),
        ],
        grad: vec![true, false],
        cpu_forward: &|x| vec![byol_forward(&x[0], &x[1], d)],
        cpu_backward: &|x, dy| vec![byol_backward(&x[0], &x[1], d, dy[0]), vec![]],
        gpu_forward: &|t| ops::byol_loss(&t[0], &t[1]),
        rel: 1e-4,
    }
    .run_on(&e, &mut rng);
}

#[test]
fn bad_byol_loss_inputs_are_errors_not_panics() {
    let e = common::engine();
    let a = Tensor::zeros(&e, &[4, 3]).unwrap();
    let b = Tensor::zeros(&e, &[3, 4]).unwrap();
    let flat = Tensor::zeros(&e, &[12]).unwrap();
    assert!(matches!(ops::byol_loss(&a, &b), Err(Error::Shape(_))));
    assert!(matches!(ops::byol_loss(&flat, &flat), Err(Error::Shape(_))));
    e.clear_tape();
}
