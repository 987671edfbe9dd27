//! Gradient checks of layer norm (affine on and off, awkward sizes, a large mean, the split over
//! bindings) and its error paths.

mod common;
mod norm_ref;

use byol::ops::layer_norm;
use byol::rng::Rng;
use byol::{Engine, EngineOptions, Error, Tensor};
use norm_ref::{NormCase, NormRef};

fn case(e: &Engine, rng: &mut Rng, shape: &[usize], affine: bool, offset: f64) {
    NormCase {
        name: "layer_norm",
        shape: shape.to_vec(),
        reference: NormRef::layer_norm(shape),
        gamma: affine,
        beta: affine,
        offset,
        x_grad: true,
        fixed: None,
    }
    .run(e, rng, &|x, g, b| layer_norm(x, g, b, 1e-5));
}

#[test]
fn layer_norm_matches_reference() {
    let e = common::engine();
    let mut rng = Rng::new(51);
    let shapes: &[&[usize]] = &[
        &[1, 1],
        &[1, 7],
        &[3, 1],
        &[1, 33],
        &[7, 33],
        &[2, 257],
        &[3, 5, 7],
    ];
    for shape in shapes {
        case(&e, &mut rng, shape, true, 0.0);
        case(&e, &mut rng, shape, false, 0.0);
    }
}

#[test]
fn statistics_stay_accurate_with_a_large_mean() {
    let e = common::engine();
    let mut rng = Rng::new(52);
    for shape in [&[1usize, 33][..], &[7, 257]] {
        case(&e, &mut rng, shape, true, 1e3);
    }
}

#[test]
fn inputs_larger_than_a_binding_are_split_over_rows() {
    // A 4 KiB binding holds 1024 floats: [40, 30] runs 32 rows per launch and [2, 700] one (the
    // statistics and the gradients of gamma and beta each split over rows).
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(53);
    case(&e, &mut rng, &[40, 30], true, 0.0);
    case(&e, &mut rng, &[2, 700], true, 0.0);
}

#[test]
fn bad_shapes_and_arguments_are_errors() {
    let e = common::engine();
    let x = Tensor::zeros(&e, &[4, 6]).unwrap();
    let wrong = Tensor::zeros(&e, &[4]).unwrap();
    let shape_err = |r: byol::Result<Tensor>| matches!(r, Err(Error::Shape(_)));
    assert!(shape_err(layer_norm(&x, Some(&wrong), None, 1e-5)));
    assert!(shape_err(layer_norm(&x, None, Some(&wrong), 1e-5)));
    let empty = Tensor::zeros(&e, &[0, 6]).unwrap();
    assert!(shape_err(layer_norm(&empty, None, None, 1e-5)));
    assert!(matches!(
        layer_norm(&x, None, None, f32::NAN),
        Err(Error::Invalid(_))
    ));
}
