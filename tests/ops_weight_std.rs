//! Gradient checks of weight standardization (conv and linear weights, awkward sizes, a large mean,
//! the split over bindings) and its error paths.

mod common;
mod norm_ref;

use byol::ops::weight_std;
use byol::rng::Rng;
use byol::{Engine, EngineOptions, Error, Tensor};
use norm_ref::{NormCase, NormRef};

fn case(e: &Engine, rng: &mut Rng, shape: &[usize], offset: f64) {
    NormCase {
        name: "weight_std",
        shape: shape.to_vec(),
        reference: NormRef::weight_std(shape),
        gamma: false,
        beta: false,
        offset,
        x_grad: true,
        fixed: None,
    }
    .run(e, rng, &|w, _, _| weight_std(w, 1e-5));
}

#[test]
fn weight_std_matches_reference() {
    let e = common::engine();
    let mut rng = Rng::new(71);
    let shapes: &[&[usize]] = &[
        &[1, 1, 1, 1],
        &[4, 1],
        &[3, 7],
        &[33, 7],
        &[7, 3, 3, 3],
        &[1, 33, 5, 3],
        &[3, 7, 7, 7],
    ];
    for shape in shapes {
        case(&e, &mut rng, shape, 0.0);
    }
}

#[test]
fn statistics_stay_accurate_with_a_large_mean() {
    let e = common::engine();
    let mut rng = Rng::new(72);
    case(&e, &mut rng, &[7, 3, 3, 3], 1e3);
}

#[test]
fn weights_larger_than_a_binding_are_split() {
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(73);
    case(&e, &mut rng, &[12, 3, 9, 9], 0.0);
}

#[test]
fn bad_shapes_and_arguments_are_errors() {
    let e = common::engine();
    let flat = Tensor::zeros(&e, &[6]).unwrap();
    assert!(matches!(weight_std(&flat, 1e-5), Err(Error::Shape(_))));
    let empty = Tensor::zeros(&e, &[0, 6]).unwrap();
    assert!(matches!(weight_std(&empty, 1e-5), Err(Error::Shape(_))));
    let w = Tensor::zeros(&e, &[2, 6]).unwrap();
    assert!(matches!(
        weight_std(&w, f32::INFINITY),
        Err(Error::Invalid(_))
    ));
}
