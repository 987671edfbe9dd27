//! Gradient checks of concat0, narrow0 and split0 along the batch axis, and their error paths.

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{EngineOptions, Error, Tensor};
use common::{rand_vec, OpCheck};

/// Checks concat0 of tensors of `shapes` (equal beyond axis 0); `grad` says which get gradients.
fn check_concat(e: &byol::Engine, rng: &mut Rng, shapes: &[&[usize]], grad: &[bool]) {
    let sizes: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
    let offsets: Vec<usize> = sizes
        .iter()
        .scan(0, |at, n| {
            *at += n;
            Some(*at - n)
        })
        .collect();
    OpCheck {
        name: &format!("concat0 {shapes:?}"),
        inputs: shapes
            .iter()
            .zip(&sizes)
            .map(|(s, &n)| (rand_vec(rng, n), s.to_vec()))
            .collect(),
        grad: grad.to_vec(),
        cpu_forward: &|x| x.concat(),
        cpu_backward: &|_, dy| {
            sizes
                .iter()
                .zip(&offsets)
                .map(|(&n, &at)| dy[at..at + n].to_vec())
                .collect()
        },
        gpu_forward: &|t| ops::concat0(&t.iter().collect::<Vec<_>>()),
        rel: 1e-4,
    }
    .run_on(e, rng);
}

#[test]
fn concat0_matches_reference() {
    let e = common::engine();
    let mut rng = Rng::new(61);
    check_concat(&e, &mut rng, &[&[1, 7], &[7, 7], &[33, 7]], &[true; 3]);
    check_concat(&e, &mut rng, &[&[5], &[1]], &[true; 2]);
    check_concat(&e, &mut rng, &[&[2, 3, 5, 1], &[1, 3, 5, 1]], &[true; 2]);
    // BYOL's two views of a batch.
    check_concat(&e, &mut rng, &[&[33, 128], &[33, 128]], &[true; 2]);
    check_concat(&e, &mut rng, &[&[1, 1]], &[true]);
    // Inputs without gradients get none.
    check_concat(
        &e,
        &mut rng,
        &[&[7, 33], &[1, 33], &[7, 33]],
        &[true, false, true],
    );
}

#[test]
fn narrow0_and_split0_match_reference() {
    let e = common::engine();
    let mut rng = Rng::new(62);
    for (rows, start, len, inner) in [(7, 2, 3, 33), (33, 0, 33, 7), (33, 32, 1, 1), (1, 0, 1, 7)] {
        OpCheck {
            name: &format!("narrow0 {rows}x{inner} rows {start}+{len}"),
            inputs: vec![(rand_vec(&mut rng, rows * inner), vec![rows, inner])],
            grad: vec![true],
            cpu_forward: &|x| x[0][start * inner..(start + len) * inner].to_vec(),
            cpu_backward: &|_, dy| {
                let mut dx = vec![0.0; rows * inner];
                dx[start * inner..(start + len) * inner].copy_from_slice(dy);
                vec![dx]
            },
            gpu_forward: &|t| ops::narrow0(&t[0], start, len),
            rel: 1e-4,
        }
        .run_on(&e, &mut rng);
    }
    // Split into three pieces and join them in another order: every piece's gradient lands in
    // its rows and the pieces' gradients add up in the input's.
    let (rows, inner) = (33, 7);
    let sizes = [4usize, 28, 1];
    OpCheck {
        name: "split0 then concat0 reversed",
        inputs: vec![(rand_vec(&mut rng, rows * inner), vec![rows, inner, 1])],
        grad: vec![true],
        cpu_forward: &|x| {
            let (a, rest) = x[0].split_at(sizes[0] * inner);
            let (b, c) = rest.split_at(sizes[1] * inner);
            [c, b, a].concat()
        },
        cpu_backward: &|_, dy| {
            let (c, rest) = dy.split_at(sizes[2] * inner);
            let (b, a) = rest.split_at(sizes[1] * inner);
            vec![[a, b, c].concat()]
        },
        gpu_forward: &|t| {
            let parts = ops::split0(&t[0], &sizes)?;
            ops::concat0(&[&parts[2], &parts[1], &parts[0]])
        },
        rel: 1e-4,
    }
    .run_on(&e, &mut rng);
}

#[test]
fn copies_larger_than_one_binding_are_split() {
    // A 4 KiB binding holds 1024 floats; these tensors span several.
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(63);
    check_concat(&e, &mut rng, &[&[300, 7], &[5, 7], &[257, 7]], &[true; 3]);
    let (rows, inner) = (300, 7);
    OpCheck {
        name: "narrow0 split",
        inputs: vec![(rand_vec(&mut rng, rows * inner), vec![rows, inner])],
        grad: vec![true],
        cpu_forward: &|x| x[0][3 * inner..250 * inner].to_vec(),
        cpu_backward: &|_, dy| {
            let mut dx = vec![0.0; rows * inner];
            dx[3 * inner..250 * inner].copy_from_slice(dy);
            vec![dx]
        },
        gpu_forward: &|t| ops::narrow0(&t[0], 3, 247),
        rel: 1e-4,
    }
    .run_on(&e, &mut rng);
}

#[test]
fn u32_tensors_concatenate_bit_for_bit() {
    let e = common::engine();
    let a = Tensor::from_u32(&e, &[1, 2, u32::MAX, 0x7fc0_0001], &[2, 2]).unwrap();
    let b = Tensor::from_u32(&e, &[5, 6], &[1, 2]).unwrap();
    let c = ops::concat0(&[&a, &b]).unwrap();
    assert_eq!(c.shape(), [3, 2]);
    assert_eq!(
        c.to_vec_u32().unwrap(),
        vec![1, 2, u32::MAX, 0x7fc0_0001, 5, 6]
    );
    let parts = ops::split0(&c, &[1, 2]).unwrap();
    assert_eq!(
        parts[1].to_vec_u32().unwrap(),
        vec![u32::MAX, 0x7fc0_0001, 5, 6]
    );
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let e = common::engine();
    let a = Tensor::zeros(&e, &[4, 3]).unwrap();
    let b = Tensor::zeros(&e, &[4, 2]).unwrap();
    let c = Tensor::zeros(&e, &[4, 3, 1]).unwrap();
    let labels = Tensor::from_u32(&e, &[0; 12], &[4, 3]).unwrap();
    assert!(matches!(ops::concat0(&[]), Err(Error::Shape(_))));
    assert!(matches!(ops::concat0(&[&a, &b]), Err(Error::Shape(_))));
    assert!(matches!(ops::concat0(&[&a, &c]), Err(Error::Shape(_))));
    assert!(matches!(
        ops::concat0(&[&a, &labels]),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(ops::narrow0(&a, 3, 2), Err(Error::Shape(_))));
    assert!(matches!(ops::split0(&a, &[1, 2]), Err(Error::Shape(_))));
    assert!(matches!(ops::split0(&a, &[3, 2]), Err(Error::Shape(_))));
}
