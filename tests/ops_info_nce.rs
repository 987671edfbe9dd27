//! Gradient checks of InfoNCE (src/ops/info_nce.rs, shaders/info_nce.wgsl), in-batch and against a
//! MoCo queue read in place, no gradient into keys or queue, queue_push, split inputs, errors.

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{EngineOptions, Error, Tensor};
use common::l2_ref::normalize;
use common::loss_ref::{info_nce_backward, info_nce_forward};
use common::{rand_vec, upload, OpCheck};

const ROWS: [usize; 3] = [1, 7, 33];
const FEATURES: [usize; 4] = [1, 7, 33, 128];

/// Checks info_nce on random [n, d] queries and keys, against a random normalized queue of
/// `queue_len` keys or in-batch negatives.
fn check_info_nce(
    e: &byol::Engine,
    rng: &mut Rng,
    (n, d): (usize, usize),
    queue_len: Option<usize>,
    temp: f32,
) {
    let t = temp as f64;
    // The reference sees the queue exactly as uploaded (rounded to f32).
    let queue = queue_len.map(|q| common::as_f32_values(&normalize(&rand_vec(rng, q * d), d).0));
    let queue_gpu = queue
        .as_ref()
        .map(|v| upload(e, v, &[v.len() / d, d], false));
    OpCheck {
        name: &format!("info_nce {n}x{d} queue {queue_len:?} T={temp}"),
        inputs: vec![
            (rand_vec(rng, n * d), vec![n, d]),
            (rand_vec(rng, n * d), vec![n, d]),
        ],
        grad: vec![true, false],
        cpu_forward: &|x| vec![info_nce_forward(&x[0], &x[1], queue.as_deref(), d, t)],
        cpu_backward: &|x, dy| {
            vec![
                info_nce_backward(&x[0], &x[1], queue.as_deref(), d, t, dy[0]),
                vec![0.0; n * d],
            ]
        },
        gpu_forward: &|ts| ops::info_nce(&ts[0], &ts[1], temp, queue_gpu.as_ref()),
        rel: 1e-4,
    }
    .run_on(e, rng);
}

#[test]
fn info_nce_in_batch_matches_reference() {
    let e = common::engine();
    let mut rng = Rng::new(46);
    for n in ROWS {
        for d in FEATURES {
            for temp in [0.2f32, 0.5] {
                check_info_nce(&e, &mut rng, (n, d), None, temp);
            }
        }
    }
}

#[test]
fn info_nce_with_queue_matches_reference() {
    let e = common::engine();
    let mut rng = Rng::new(47);
    for n in ROWS {
        for d in FEATURES {
            for q in [1, 37] {
                for temp in [0.2f32, 0.5] {
                    check_info_nce(&e, &mut rng, (n, d), Some(q), temp);
                }
            }
        }
    }
}

#[test]
fn info_nce_sends_no_gradient_into_keys_or_queue() {
    let e = common::engine();
    let mut rng = Rng::new(48);
    let q = upload(&e, &rand_vec(&mut rng, 7 * 33), &[7, 33], true);
    let k = upload(&e, &rand_vec(&mut rng, 7 * 33), &[7, 33], true);
    let queue = upload(&e, &rand_vec(&mut rng, 37 * 33), &[37, 33], true);
    for with_queue in [false, true] {
        let loss = ops::info_nce(&q, &k, 0.2, with_queue.then_some(&queue)).unwrap();
        let mut grads = e.backward(&loss).unwrap();
        assert!(grads.remove(&k).is_none(), "k must get no gradient");
        assert!(
            grads.remove(&queue).is_none(),
            "the queue must get no gradient"
        );
        assert!(grads.remove(&q).is_some());
    }
}

/// MoCo pushes this step's keys before calling backward: the gradient must still be that of the
/// loss as computed, against the queue it saw.
#[test]
fn info_nce_gradient_ignores_queue_pushes_after_the_forward() {
    let e = common::engine();
    let mut rng = Rng::new(49);
    let (n, d, slots) = (7, 33, 37);
    let qv = rand_vec(&mut rng, n * d);
    let kv = rand_vec(&mut rng, n * d);
    let original = common::to_f32(&normalize(&rand_vec(&mut rng, slots * d), d).0);
    let queue = Tensor::from_slice(&e, &original, &[slots, d]).unwrap();
    let fresh_keys = upload(&e, &rand_vec(&mut rng, n * d), &[n, d], false);
    let grad_of = |push_before_backward: bool| {
        let q = upload(&e, &qv, &[n, d], true);
        let k = upload(&e, &kv, &[n, d], false);
        let loss = ops::info_nce(&q, &k, 0.2, Some(&queue)).unwrap();
        if push_before_backward {
            ops::queue_push(&queue, &fresh_keys, 3).unwrap();
        }
        let mut grads = e.backward(&loss).unwrap();
        grads.remove(&q).unwrap().to_vec().unwrap()
    };
    let pushed_meanwhile = grad_of(true);
    queue.write(&original).unwrap();
    let undisturbed = grad_of(false);
    assert_eq!(pushed_meanwhile, undisturbed);
    // The push did change the queue, so the comparison above could have failed.
    ops::queue_push(&queue, &fresh_keys, 3).unwrap();
    assert_ne!(grad_of(false), undisturbed);
}

#[test]
fn queue_push_writes_rows_and_wraps_around() {
    let e = common::engine();
    let (slots, d) = (5, 3);
    let init: Vec<f32> = (0..slots * d).map(|i| i as f32).collect();
    let queue = Tensor::from_slice(&e, &init, &[slots, d]).unwrap();
    let keys: Vec<f32> = (0..3 * d).map(|i| 100.0 + i as f32).collect();
    let keys = Tensor::from_slice(&e, &keys, &[3, d]).unwrap();
    assert_eq!(ops::queue_push(&queue, &keys, 3).unwrap(), 1);
    let got = queue.to_vec().unwrap();
    let mut want = init.clone();
    want[9..15].copy_from_slice(&[100.0, 101.0, 102.0, 103.0, 104.0, 105.0]);
    want[0..3].copy_from_slice(&[106.0, 107.0, 108.0]);
    assert_eq!(got, want);
    assert_eq!(ops::queue_push(&queue, &keys, 1).unwrap(), 4);
    assert_eq!(ops::queue_push(&queue, &keys, 2).unwrap(), 0);
    // A full-queue push at 0 returns to 0.
    let all = Tensor::from_slice(&e, &init, &[slots, d]).unwrap();
    assert_eq!(ops::queue_push(&queue, &all, 0).unwrap(), 0);
    assert_eq!(queue.to_vec().unwrap(), init);
}

#[test]
fn info_nce_splits_inputs_larger_than_one_binding() {
    // A 4 KiB binding holds 1024 floats: [33, 128] rows need several launches.
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(53);
    // [33, 33] logits and [33, 37] negatives exceed one binding; the matmuls split over rows.
    check_info_nce(&e, &mut rng, (33, 16), None, 0.5);
    check_info_nce(&e, &mut rng, (33, 16), Some(37), 0.2);
}

#[test]
fn bad_info_nce_inputs_are_errors_not_panics() {
    let e = common::engine();
    let a = Tensor::zeros(&e, &[4, 3]).unwrap();
    let b = Tensor::zeros(&e, &[3, 4]).unwrap();
    let queue_bad = Tensor::zeros(&e, &[5, 4]).unwrap();
    let queue = Tensor::zeros(&e, &[5, 3]).unwrap();
    assert!(matches!(
        ops::info_nce(&a, &b, 0.2, None),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        ops::info_nce(&a, &a, 0.2, Some(&queue_bad)),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        ops::info_nce(&a, &a, 0.0, None),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        ops::info_nce(&a, &a, f32::NAN, None),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        ops::queue_push(&queue, &b, 0),
        Err(Error::Shape(_))
    ));
    let too_many = Tensor::zeros(&e, &[6, 3]).unwrap();
    assert!(matches!(
        ops::queue_push(&queue, &too_many, 0),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        ops::queue_push(&queue, &a, 5),
        Err(Error::Invalid(_))
    ));
    e.clear_tape();
}
