//! Gradient checks of add, sub, mul, scale, relu, reshape, bias add and reductions.

mod common;
use byol::ops;
use byol::rng::Rng;
use common::{rand_vec, OpCheck};

const SHAPES: &[&[usize]] = &[&[1], &[7], &[33], &[257], &[7, 33], &[3, 5, 7, 2]];

fn binary(
    name: &str,
    f: fn(f64, f64) -> f64,
    da: fn(f64, f64) -> f64,
    db: fn(f64, f64) -> f64,
    gpu: fn(&byol::Tensor, &byol::Tensor) -> byol::Result<byol::Tensor>,
) {
    let mut rng = Rng::new(11);
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        let check = OpCheck {
            name,
            inputs: vec![
                (rand_vec(&mut rng, n), shape.to_vec()),
                (rand_vec(&mut rng, n), shape.to_vec()),
            ],
            grad: vec![true, true],
            cpu_forward: &|x| x[0].iter().zip(&x[1]).map(|(&a, &b)| f(a, b)).collect(),
            cpu_backward: &|x, dy| {
                vec![
                    (0..dy.len())
                        .map(|i| dy[i] * da(x[0][i], x[1][i]))
                        .collect(),
                    (0..dy.len())
                        .map(|i| dy[i] * db(x[0][i], x[1][i]))
                        .collect(),
                ]
            },
            gpu_forward: &|t| gpu(&t[0], &t[1]),
            rel: 1e-4,
        };
        check.run(&mut rng);
    }
}

#[test]
fn add_matches_reference() {
    binary("add", |a, b| a + b, |_, _| 1.0, |_, _| 1.0, ops::add);
}

#[test]
fn sub_matches_reference() {
    binary("sub", |a, b| a - b, |_, _| 1.0, |_, _| -1.0, ops::sub);
}

#[test]
fn mul_matches_reference() {
    binary("mul", |a, b| a * b, |_, b| b, |a, _| a, ops::mul);
}

#[test]
fn scale_and_relu_match_reference() {
    let mut rng = Rng::new(12);
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        let s = -1.7;
        OpCheck {
            name: "scale",
            inputs: vec![(rand_vec(&mut rng, n), shape.to_vec())],
            grad: vec![true],
            cpu_forward: &|x| x[0].iter().map(|v| v * s as f64).collect(),
            cpu_backward: &|_, dy| vec![dy.iter().map(|d| d * s as f64).collect()],
            gpu_forward: &|t| ops::scale(&t[0], s),
            rel: 1e-4,
        }
        .run(&mut rng);
        OpCheck {
            name: "relu",
            inputs: vec![(rand_vec(&mut rng, n), shape.to_vec())],
            grad: vec![true],
            cpu_forward: &|x| x[0].iter().map(|v| v.max(0.0)).collect(),
            cpu_backward: &|x, dy| {
                vec![x[0]
                    .iter()
                    .zip(dy)
                    .map(|(v, d)| if *v > 0.0 { *d } else { 0.0 })
                    .collect()]
            },
            gpu_forward: &|t| ops::relu(&t[0]),
            rel: 1e-4,
        }
        .run(&mut rng);
    }
}

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
fn bias_add_matches_reference() {
    let mut rng = Rng::new(15);
    let shapes: &[&[usize]] = &[&[1, 1], &[7, 33], &[257, 7], &[3, 7, 5, 4], &[2, 33, 1, 9]];
    for shape in shapes {
        let n: usize = shape.iter().product();
        let c = shape[1];
        let inner: usize = shape[2..].iter().product();
        OpCheck {
            name: "bias_add",
            inputs: vec![
                (rand_vec(&mut rng, n), shape.to_vec()),
                (rand_vec(&mut rng, c), vec![c]),
            ],
            grad: vec![true, true],
            cpu_forward: &|x| (0..n).map(|i| x[0][i] + x[1][(i / inner) % c]).collect(),
            cpu_backward: &|_, dy| {
                let mut db = vec![0.0; c];
                for (i, d) in dy.iter().enumerate() {
                    db[(i / inner) % c] += d;
                }
                vec![dy.to_vec(), db]
            },
            gpu_forward: &|t| ops::bias_add(&t[0], &t[1]),
            rel: 1e-4,
        }
        .run(&mut rng);
    }
}

#[test]
fn reshape_passes_gradient_through() {
    let mut rng = Rng::new(16);
    OpCheck {
        name: "reshape",
        inputs: vec![(rand_vec(&mut rng, 33 * 7), vec![33, 7])],
        grad: vec![true],
        cpu_forward: &|x| x[0].iter().map(|v| v * v).collect(),
        cpu_backward: &|x, dy| vec![x[0].iter().zip(dy).map(|(v, d)| 2.0 * v * d).collect()],
        gpu_forward: &|t| {
            let r = ops::reshape(&t[0], &[7, 33])?;
            let sq = ops::mul(&r, &r)?;
            ops::reshape(&sq, &[231])
        },
        rel: 1e-4,
    }
    .run(&mut rng);
}

#[test]
fn mismatched_shapes_are_errors_not_panics() {
    let e = common::engine();
    let a = byol::Tensor::zeros(&e, &[3, 4]).unwrap();
    let b = byol::Tensor::zeros(&e, &[4, 3]).unwrap();
    assert!(matches!(ops::add(&a, &b), Err(byol::Error::Shape(_))));
    assert!(matches!(ops::sum_axis(&a, 2), Err(byol::Error::Shape(_))));
    let bias = byol::Tensor::zeros(&e, &[3]).unwrap();
    assert!(matches!(
        ops::bias_add(&a, &bias),
        Err(byol::Error::Shape(_))
    ));
    assert!(byol::Tensor::from_slice(&e, &[1.0, 2.0], &[3]).is_err());
}
