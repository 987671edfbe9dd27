//! Gradient checks of max pooling (argmax routing, ties to one input) and global average pooling.

mod common;
use byol::ops;
use byol::rng::Rng;
use common::pool_ref::cpu_max_pool;
use common::{rand_vec, OpCheck};

#[test]
fn max_pool_matches_reference() {
    let mut rng = Rng::new(61);
    let cases: &[([usize; 4], usize, usize, usize)] = &[
        ([2, 3, 9, 7], 3, 2, 1), // ResNet stem pool
        ([1, 1, 1, 1], 3, 2, 1),
        ([1, 5, 8, 8], 2, 2, 0),
        ([3, 2, 5, 6], 3, 1, 1),
    ];
    for &(shape, k, s, p) in cases {
        let n: usize = shape.iter().product();
        OpCheck {
            name: &format!("max_pool2d {shape:?} k{k} s{s} p{p}"),
            inputs: vec![(rand_vec(&mut rng, n), shape.to_vec())],
            grad: vec![true],
            cpu_forward: &|x| cpu_max_pool(&x[0], shape, k, s, p).0,
            cpu_backward: &|x, dy| {
                let (_, arg) = cpu_max_pool(&x[0], shape, k, s, p);
                let mut dx = vec![0.0; x[0].len()];
                for (o, &a) in arg.iter().enumerate() {
                    dx[a] += dy[o];
                }
                vec![dx]
            },
            gpu_forward: &|t| ops::max_pool2d(&t[0], k, s, p),
            rel: 1e-4,
        }
        .run(&mut rng);
    }
}

#[test]
fn max_pool_ties_route_to_exactly_one_input() {
    let e = common::engine();
    let x = byol::Tensor::param(&e, &[1.0; 16], &[1, 1, 4, 4]).unwrap();
    let y = ops::max_pool2d(&x, 3, 2, 1).unwrap();
    let g = e.backward(&ops::sum(&y).unwrap()).unwrap();
    let dx = g.get(&x).unwrap().to_vec().unwrap();
    let total: f32 = dx.iter().sum();
    assert_eq!(
        total,
        y.numel() as f32,
        "each output's gradient goes to one input: {dx:?}"
    );
}

#[test]
fn global_avg_pool_matches_reference() {
    let mut rng = Rng::new(62);
    for shape in [[2usize, 3, 5, 7], [1, 1, 1, 1], [3, 33, 2, 2]] {
        let n: usize = shape.iter().product();
        let hw = shape[2] * shape[3];
        OpCheck {
            name: "global_avg_pool",
            inputs: vec![(rand_vec(&mut rng, n), shape.to_vec())],
            grad: vec![true],
            cpu_forward: &|x| {
                x[0].chunks(hw)
                    .map(|c| c.iter().sum::<f64>() / hw as f64)
                    .collect()
            },
            cpu_backward: &|_, dy| {
                vec![dy
                    .iter()
                    .flat_map(|&d| std::iter::repeat_n(d / hw as f64, hw))
                    .collect()]
            },
            gpu_forward: &|t| ops::global_avg_pool(&t[0]),
            rel: 1e-4,
        }
        .run(&mut rng);
    }
}

#[test]
fn impossible_pools_are_errors() {
    let e = common::engine();
    let x = byol::Tensor::zeros(&e, &[1, 1, 2, 2]).unwrap();
    assert!(ops::max_pool2d(&x, 5, 1, 0).is_err());
    assert!(ops::max_pool2d(&x, 3, 1, 2).is_err());
    assert!(ops::max_pool2d(&x, 2, 0, 0).is_err());
    let flat = byol::Tensor::zeros(&e, &[4]).unwrap();
    assert!(ops::global_avg_pool(&flat).is_err());
}
