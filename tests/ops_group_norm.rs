//! Gradient checks of group norm (several group counts, affine on and off, awkward sizes, a large
//! mean, the split over bindings) and its error paths.

mod common;
mod norm_ref;

use byol::ops::group_norm;
use byol::rng::Rng;
use byol::{Engine, EngineOptions, Error, Tensor};
use norm_ref::{NormCase, NormRef};

fn case(e: &Engine, rng: &mut Rng, shape: &[usize], groups: usize, affine: bool, offset: f64) {
    NormCase {
        name: "group_norm",
        shape: shape.to_vec(),
        reference: NormRef::group_norm(shape, groups),
        gamma: affine,
        beta: affine,
        offset,
        x_grad: true,
        fixed: None,
    }
    .run(e, rng, &|x, g, b| group_norm(x, groups, g, b, 1e-5));
}

#[test]
fn group_norm_matches_reference() {
    let e = common::engine();
    let mut rng = Rng::new(61);
    let cases: &[(&[usize], &[usize])] = &[
        (&[1, 1], &[1]),
        (&[2, 6], &[1, 2, 6]),
        (&[1, 3, 5, 3], &[1, 3]),
        (&[1, 7, 7, 7], &[1, 7]),
        (&[2, 33, 1, 1], &[3, 11]),
        (&[3, 4, 5, 3], &[2]),
        (&[2, 33, 5, 3], &[11]),
    ];
    // Not two elements per group: xhat is then +-1 whatever x is, and dx only the eps term, a pure
    // f32 cancellation (one element per group is fine: xhat and dx are exactly 0).
    for (shape, group_counts) in cases {
        for &groups in *group_counts {
            case(&e, &mut rng, shape, groups, true, 0.0);
            case(&e, &mut rng, shape, groups, false, 0.0);
        }
    }
}

#[test]
fn statistics_stay_accurate_with_a_large_mean() {
    let e = common::engine();
    let mut rng = Rng::new(62);
    case(&e, &mut rng, &[2, 6, 7, 7], 3, true, 1e3);
    case(&e, &mut rng, &[1, 33, 5, 3], 1, false, 1e3);
}

#[test]
fn inputs_larger_than_a_binding_are_split() {
    // A 4 KiB binding holds 1024 floats: one [6, 10, 10] sample is larger, so groups split.
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(63);
    case(&e, &mut rng, &[2, 6, 10, 10], 2, true, 0.0);
    case(&e, &mut rng, &[5, 4, 9, 9], 4, true, 0.0);
}

#[test]
fn bad_shapes_and_arguments_are_errors() {
    let e = common::engine();
    let x = Tensor::zeros(&e, &[2, 6, 3, 3]).unwrap();
    let wrong = Tensor::zeros(&e, &[4]).unwrap();
    let shape_err = |r: byol::Result<Tensor>| matches!(r, Err(Error::Shape(_)));
    assert!(shape_err(group_norm(&x, 4, None, None, 1e-5)));
    assert!(shape_err(group_norm(&x, 0, None, None, 1e-5)));
    assert!(shape_err(group_norm(&x, 2, Some(&wrong), None, 1e-5)));
    assert!(shape_err(group_norm(&x, 2, None, Some(&wrong), 1e-5)));
    let flat = Tensor::zeros(&e, &[6]).unwrap();
    assert!(shape_err(group_norm(&flat, 1, None, None, 1e-5)));
    assert!(matches!(
        group_norm(&x, 2, None, None, -1e-5),
        Err(Error::Invalid(_))
    ));
}
