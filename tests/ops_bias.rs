//! Gradient check of the per-channel bias add (src/ops/bias.rs, shaders/bias.wgsl) and its errors.

mod common;
use byol::ops;
use byol::rng::Rng;
use common::{rand_vec, OpCheck};

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
fn a_bias_of_the_wrong_length_is_an_error_not_a_panic() {
    let e = common::engine();
    let a = byol::Tensor::zeros(&e, &[3, 4]).unwrap();
    let bias = byol::Tensor::zeros(&e, &[3]).unwrap();
    assert!(matches!(
        ops::bias_add(&a, &bias),
        Err(byol::Error::Shape(_))
    ));
}
