//! Gradient checks of sum and mean, over one axis and over everything (src/ops/reduce.rs,
//! shaders/reduce.wgsl), and their errors.

mod common;
use byol::ops;
use byol::rng::Rng;
use common::{rand_vec, OpCheck};

/// Sum over `axis` of a row-major tensor of `shape`, CPU reference.
fn cpu_sum_axis(x: &[f64], shape: &[usize], axis: usize, scale: f64) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![0.0; outer * inner];
    for o in 0..outer {
        for a in 0..len {
            for i in 0..inner {
                out[o * inner + i] += x[(o * len + a) * inner + i] * scale;
            }
        }
    }
    out
}

fn cpu_broadcast_axis(dy: &[f64], shape: &[usize], axis: usize, scale: f64) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![0.0; outer * len * inner];
    for o in 0..outer {
        for a in 0..len {
            for i in 0..inner {
                out[(o * len + a) * inner + i] = dy[o * inner + i] * scale;
            }
        }
    }
    out
}

#[test]
fn sum_and_mean_over_each_axis_match_reference() {
    let mut rng = Rng::new(13);
    let shapes: &[&[usize]] = &[
        &[1],
        &[257],
        &[7, 33],
        &[3, 5, 7],
        &[2, 3000],
        &[100_003],
        &[5, 1, 9],
    ];
    for shape in shapes {
        let n: usize = shape.iter().product();
        for axis in 0..shape.len() {
            for mean in [false, true] {
                let scale = if mean { 1.0 / shape[axis] as f64 } else { 1.0 };
                let shape_v = shape.to_vec();
                OpCheck {
                    name: if mean { "mean_axis" } else { "sum_axis" },
                    inputs: vec![(rand_vec(&mut rng, n), shape.to_vec())],
                    grad: vec![true],
                    cpu_forward: &|x| cpu_sum_axis(&x[0], &shape_v, axis, scale),
                    cpu_backward: &|_, dy| vec![cpu_broadcast_axis(dy, &shape_v, axis, scale)],
                    gpu_forward: &|t| {
                        if mean {
                            ops::mean_axis(&t[0], axis)
                        } else {
                            ops::sum_axis(&t[0], axis)
                        }
                    },
                    // Long sums in f32: 1e-4 relative holds for the chunked tree order used here.
                    rel: 1e-4,
                }
                .run(&mut rng);
            }
        }
    }
}

#[test]
fn sum_and_mean_of_everything() {
    let mut rng = Rng::new(14);
    for shape in [vec![1usize], vec![7, 33], vec![33, 257, 3]] {
        let n: usize = shape.iter().product();
        OpCheck {
            name: "mean",
            inputs: vec![(rand_vec(&mut rng, n), shape.clone())],
            grad: vec![true],
            cpu_forward: &|x| vec![x[0].iter().sum::<f64>() / n as f64],
            cpu_backward: &|_, dy| vec![vec![dy[0] / n as f64; n]],
            gpu_forward: &|t| ops::mean(&t[0]),
            rel: 1e-4,
        }
        .run(&mut rng);
        OpCheck {
            name: "sum",
            inputs: vec![(rand_vec(&mut rng, n), shape.clone())],
            grad: vec![true],
            cpu_forward: &|x| vec![x[0].iter().sum::<f64>()],
            cpu_backward: &|_, dy| vec![vec![dy[0]; n]],
            gpu_forward: &|t| ops::sum(&t[0]),
            rel: 1e-4,
        }
        .run(&mut rng);
    }
}

#[test]
fn reducing_a_missing_axis_is_an_error_not_a_panic() {
    let e = common::engine();
    let a = byol::Tensor::zeros(&e, &[3, 4]).unwrap();
    assert!(matches!(ops::sum_axis(&a, 2), Err(byol::Error::Shape(_))));
    assert!(matches!(ops::mean_axis(&a, 2), Err(byol::Error::Shape(_))));
}
