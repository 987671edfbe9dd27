//! The engine's contracts: batching without submits, a flat buffer pool across steps, a tape that is
//! freed by backward, no-grad scopes, and errors instead of panics.

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{Engine, Tensor};
use common::rand_vec;

/// A small MLP step: relu(x·W1 + b1)·W2, mean, backward.
fn mlp_step(e: &Engine, x: &Tensor, w1: &Tensor, b1: &Tensor, w2: &Tensor) -> byol::Grads {
    let h = ops::relu(&ops::bias_add(&ops::matmul(x, w1).unwrap(), b1).unwrap()).unwrap();
    let y = ops::matmul(&h, w2).unwrap();
    let loss = ops::mean(&ops::mul(&y, &y).unwrap()).unwrap();
    let grads = e.backward(&loss).unwrap();
    loss.item().unwrap();
    grads
}

fn params(e: &Engine, rng: &mut Rng) -> (Tensor, Tensor, Tensor, Tensor) {
    let x = Tensor::from_slice(e, &common::to_f32(&rand_vec(rng, 33 * 17)), &[33, 17]).unwrap();
    let w1 = Tensor::param(e, &common::to_f32(&rand_vec(rng, 17 * 40)), &[17, 40]).unwrap();
    let b1 = Tensor::param(e, &common::to_f32(&rand_vec(rng, 40)), &[40]).unwrap();
    let w2 = Tensor::param(e, &common::to_f32(&rand_vec(rng, 40 * 7)), &[40, 7]).unwrap();
    (x, w1, b1, w2)
}

#[test]
fn steady_steps_allocate_no_new_buffers_and_free_the_tape() {
    let e = common::engine_with(Default::default());
    let mut rng = Rng::new(31);
    let (x, w1, b1, w2) = params(&e, &mut rng);
    let mut allocations = Vec::new();
    for _ in 0..3 {
        let grads = mlp_step(&e, &x, &w1, &b1, &w2);
        assert_eq!(grads.len(), 3);
        drop(grads);
        assert_eq!(e.tape_len(), 0);
        e.flush().unwrap();
        allocations.push(e.pool_stats().allocations);
    }
    assert_eq!(
        allocations[1], allocations[0],
        "step 2 allocated: {allocations:?}"
    );
    assert_eq!(
        allocations[2], allocations[0],
        "step 3 allocated: {allocations:?}"
    );
    assert!(e.pool_stats().reuses > 0);
}

#[test]
fn ops_record_without_submitting() {
    let e = common::engine_with(Default::default());
    let mut rng = Rng::new(32);
    let (x, w1, b1, w2) = params(&e, &mut rng);
    e.flush().unwrap();
    let before = e.record_stats();
    let h = ops::relu(&ops::bias_add(&ops::matmul(&x, &w1).unwrap(), &b1).unwrap()).unwrap();
    let y = ops::matmul(&h, &w2).unwrap();
    let after = e.record_stats();
    assert!(after.dispatches >= before.dispatches + 4);
    assert_eq!(after.submits, before.submits, "an op submitted on its own");
    y.to_vec().unwrap();
    assert_eq!(
        e.record_stats().submits,
        before.submits + 1,
        "one download, one submit"
    );
}

#[test]
fn no_grad_scope_records_nothing() {
    let e = common::engine();
    e.clear_tape();
    let w = Tensor::param(&e, &[1.0, 2.0, 3.0], &[3]).unwrap();
    {
        let _g = e.no_grad();
        let y = ops::mul(&w, &w).unwrap();
        assert!(!y.requires_grad());
        assert_eq!(e.tape_len(), 0);
    }
    let y = ops::mul(&w, &w).unwrap();
    assert!(y.requires_grad());
    assert_eq!(e.tape_len(), 1);
    let g = e.backward(&ops::sum(&y).unwrap()).unwrap();
    assert_eq!(g.get(&w).unwrap().to_vec().unwrap(), vec![2.0, 4.0, 6.0]);
}

#[test]
fn a_tensor_used_twice_accumulates_its_gradient() {
    let e = common::engine();
    let w = Tensor::param(&e, &[0.5, -1.5], &[2]).unwrap();
    let y = ops::add(&ops::mul(&w, &w).unwrap(), &ops::scale(&w, 3.0).unwrap()).unwrap();
    let g = e.backward(&ops::sum(&y).unwrap()).unwrap();
    assert_eq!(g.get(&w).unwrap().to_vec().unwrap(), vec![4.0, 0.0]);
}

#[test]
fn backward_of_a_non_scalar_is_an_error() {
    let e = common::engine();
    let w = Tensor::param(&e, &[1.0, 2.0], &[2]).unwrap();
    let y = ops::scale(&w, 2.0).unwrap();
    assert!(matches!(e.backward(&y), Err(byol::Error::Shape(_))));
    e.clear_tape();
}

#[test]
fn an_unknown_adapter_is_a_clear_error() {
    let err = Engine::new(byol::EngineOptions {
        adapter: Some("no-such-gpu-xyz".into()),
        ..Default::default()
    })
    .err()
    .expect("must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-gpu-xyz") && msg.contains("available"),
        "{msg}"
    );
}

#[test]
fn values_round_trip_and_writes_do_not_overtake_recorded_work() {
    let e = common::engine();
    let t = Tensor::from_slice(&e, &[1.0, 2.0, 3.0], &[3]).unwrap();
    let doubled = ops::scale(&t, 2.0).unwrap(); // recorded, not yet submitted
    t.write(&[10.0, 20.0, 30.0]).unwrap();
    assert_eq!(doubled.to_vec().unwrap(), vec![2.0, 4.0, 6.0]);
    assert_eq!(t.to_vec().unwrap(), vec![10.0, 20.0, 30.0]);
    let labels = Tensor::from_u32(&e, &[7, 0, 4_000_000_000], &[3]).unwrap();
    assert_eq!(labels.to_vec_u32().unwrap(), vec![7, 0, 4_000_000_000]);
    assert!(labels.to_vec().is_err());
}
