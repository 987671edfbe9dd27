//! Gradient checks of add, sub, mul, scale, relu, add_relu (src/ops/elementwise.rs,
//! shaders/elementwise.wgsl)
//! and reshape, and their errors.

mod common;
use byol::ops;
use byol::rng::Rng;
use common::{rand_vec, OpCheck};

// Lengths off a multiple of 4 run the scalar kernels; [4, 33] and [257, 4] run the vec4 ones on
// the shared engine (and the scalar ones again on `engine_scalar`).
const SHAPES: &[&[usize]] = &[
    &[1],
    &[7],
    &[33],
    &[257],
    &[7, 33],
    &[3, 5, 7, 2],
    &[4, 33],
    &[257, 4],
];

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
        check.run_both_forms(&mut rng);
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
        .run_both_forms(&mut rng);
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
        .run_both_forms(&mut rng);
    }
}

#[test]
fn add_relu_matches_reference() {
    let mut rng = Rng::new(13);
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        let b = rand_vec(&mut rng, n);
        // Sums at least 0.05 from the kink, where finite differences of the reference hold.
        let a: Vec<f64> = rand_vec(&mut rng, n)
            .iter()
            .zip(&b)
            .map(|(&a, &b)| {
                if (a + b).abs() < 0.05 {
                    a + 0.2 * (a + b).signum()
                } else {
                    a
                }
            })
            .collect();
        OpCheck {
            name: "add_relu",
            inputs: vec![(a, shape.to_vec()), (b, shape.to_vec())],
            grad: vec![true, true],
            cpu_forward: &|x| {
                x[0].iter()
                    .zip(&x[1])
                    .map(|(a, b)| (a + b).max(0.0))
                    .collect()
            },
            cpu_backward: &|x, dy| {
                let d: Vec<f64> = (0..dy.len())
                    .map(|i| if x[0][i] + x[1][i] > 0.0 { dy[i] } else { 0.0 })
                    .collect();
                vec![d.clone(), d]
            },
            gpu_forward: &|t| ops::add_relu(&t[0], &t[1]),
            rel: 1e-4,
        }
        .run_both_forms(&mut rng);
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
    .run_both_forms(&mut rng);
}

/// The kernel names an op's dispatches ran, from the engine's profiler.
fn kernels_run(e: &byol::Engine, f: impl Fn(&byol::Engine)) -> Vec<String> {
    e.profile_report();
    f(e);
    let mut names: Vec<String> = e.profile_report().into_iter().map(|(k, _, _)| k).collect();
    names.sort();
    names
}

#[test]
fn vec4_kernels_run_where_lengths_allow_and_scalar_ones_elsewhere() {
    let options = |scalar_passes| byol::EngineOptions {
        profile: true,
        scalar_passes,
        ..Default::default()
    };
    let add = |shape: &'static [usize]| {
        move |e: &byol::Engine| {
            let a = byol::Tensor::full(e, 1.5, shape).unwrap();
            let s = ops::add(&a, &a).unwrap();
            assert!(s.to_vec().unwrap().iter().all(|&v| v == 3.0));
        }
    };
    let vec4 = common::engine_with(options(false));
    let scalar = common::engine_with(options(true));
    let ran = kernels_run(&vec4, add(&[4, 33]));
    assert!(ran.contains(&"elementwise::add4".to_string()), "{ran:?}");
    let ran = kernels_run(&vec4, add(&[7, 33]));
    assert!(ran.contains(&"elementwise::add".to_string()), "{ran:?}");
    let ran = kernels_run(&scalar, add(&[4, 33]));
    assert!(ran.contains(&"elementwise::add".to_string()), "{ran:?}");
    assert!(!ran.iter().any(|k| k.ends_with('4')), "{ran:?}");
}

#[test]
fn mismatched_shapes_are_errors_not_panics() {
    let e = common::engine();
    let a = byol::Tensor::zeros(&e, &[3, 4]).unwrap();
    let b = byol::Tensor::zeros(&e, &[4, 3]).unwrap();
    assert!(matches!(ops::add(&a, &b), Err(byol::Error::Shape(_))));
    assert!(byol::Tensor::from_slice(&e, &[1.0, 2.0], &[3]).is_err());
}
