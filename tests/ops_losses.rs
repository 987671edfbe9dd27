//! Gradient checks of l2_normalize, byol_loss, cross_entropy and info_nce (with and without a MoCo
//! queue), queue_push, and their error paths.

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{EngineOptions, Error, Tensor};
use common::l2_ref::{normalize, normalize_backward};
use common::loss_ref::{byol_backward, byol_forward, ce_backward, ce_forward};
use common::{rand_vec, upload, OpCheck};

// ---- f64 references ------------------------------------------------------------------------------

/// Each query row's candidate keys: all of k̂ (in-batch), or k̂_i followed by the queue's rows.
fn candidates(k: &[f64], queue: Option<&[f64]>, d: usize) -> Vec<Vec<Vec<f64>>> {
    let (kh, _) = normalize(k, d);
    let keys: Vec<Vec<f64>> = kh.chunks(d).map(<[f64]>::to_vec).collect();
    match queue {
        None => vec![keys.clone(); keys.len()],
        Some(queue) => keys
            .iter()
            .map(|ki| {
                let mut c = vec![ki.clone()];
                c.extend(queue.chunks(d).map(<[f64]>::to_vec));
                c
            })
            .collect(),
    }
}

/// InfoNCE logits per row (q̂_i · candidate_j / T) and each row's target.
fn info_nce_logits(
    q: &[f64],
    k: &[f64],
    queue: Option<&[f64]>,
    d: usize,
    t: f64,
) -> (Vec<Vec<f64>>, Vec<usize>) {
    let (qh, _) = normalize(q, d);
    let cands = candidates(k, queue, d);
    let logits = qh
        .chunks(d)
        .zip(&cands)
        .map(|(qi, ci)| {
            ci.iter()
                .map(|c| c.iter().zip(qi).map(|(a, b)| a * b).sum::<f64>() / t)
                .collect()
        })
        .collect();
    let n = q.len() / d;
    let targets = if queue.is_some() {
        vec![0; n]
    } else {
        (0..n).collect()
    };
    (logits, targets)
}

fn info_nce_forward(q: &[f64], k: &[f64], queue: Option<&[f64]>, d: usize, t: f64) -> f64 {
    let (logits, targets) = info_nce_logits(q, k, queue, d, t);
    ce_forward(&logits, &targets)
}

/// d loss / d q̂_i = sum_j g_ij candidate_j / T, then the normalize backward.
fn info_nce_backward(
    q: &[f64],
    k: &[f64],
    queue: Option<&[f64]>,
    d: usize,
    t: f64,
    dy: f64,
) -> Vec<f64> {
    let (logits, targets) = info_nce_logits(q, k, queue, d, t);
    let g = ce_backward(&logits, &targets, dy);
    let cands = candidates(k, queue, d);
    let mut dqh = vec![0.0; q.len()];
    for (i, (gi, ci)) in g.iter().zip(&cands).enumerate() {
        for (gij, c) in gi.iter().zip(ci) {
            for (x, cv) in dqh[i * d..(i + 1) * d].iter_mut().zip(c) {
                *x += gij * cv / t;
            }
        }
    }
    normalize_backward(q, &dqh, d)
}

fn rand_targets(rng: &mut Rng, n: usize, classes: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(classes) as u32).collect()
}

const ROWS: [usize; 3] = [1, 7, 33];
const FEATURES: [usize; 4] = [1, 7, 33, 128];

// ---- l2_normalize ------------------------------------------------------------------------------

#[test]
fn l2_normalize_matches_reference() {
    let mut rng = Rng::new(41);
    for n in ROWS {
        for d in FEATURES {
            OpCheck {
                name: &format!("l2_normalize {n}x{d}"),
                inputs: vec![(rand_vec(&mut rng, n * d), vec![n, d])],
                grad: vec![true],
                cpu_forward: &|x| normalize(&x[0], d).0,
                cpu_backward: &|x, dy| vec![normalize_backward(&x[0], dy, d)],
                gpu_forward: &|t| ops::l2_normalize(&t[0]),
                rel: 1e-4,
            }
            .run(&mut rng);
        }
    }
}

#[test]
fn l2_normalize_of_a_zero_row_divides_by_eps() {
    let e = common::engine();
    let x = Tensor::param(&e, &[0.0, 0.0, 0.0, 3.0, 4.0, 0.0], &[2, 3]).unwrap();
    let y = ops::l2_normalize(&x).unwrap();
    assert_eq!(y.to_vec().unwrap(), vec![0.0, 0.0, 0.0, 0.6, 0.8, 0.0]);
    let dy = Tensor::from_slice(&e, &[1e-12, -2e-12, 0.5e-12, 0.0, 0.0, 0.0], &[2, 3]).unwrap();
    let mut grads = e.backward_from(&y, dy).unwrap();
    let dx = grads.remove(&x).unwrap().to_vec().unwrap();
    // Below eps the divisor is the constant eps, so the zero row's gradient is dy / eps.
    let eps = 1e-12f32 as f64;
    common::assert_close(
        "zero row grad",
        &dx[..3],
        &[1e-12 / eps, -2e-12 / eps, 0.5e-12 / eps],
    );
}

// ---- byol_loss ---------------------------------------------------------------------------------

#[test]
fn byol_loss_matches_reference() {
    let mut rng = Rng::new(42);
    for n in ROWS {
        for d in FEATURES {
            for prenormalized in [false, true] {
                let mut p = rand_vec(&mut rng, n * d);
                if prenormalized {
                    p = normalize(&p, d).0;
                }
                OpCheck {
                    name: &format!("byol_loss {n}x{d} prenormalized={prenormalized}"),
                    inputs: vec![(p, vec![n, d]), (rand_vec(&mut rng, n * d), vec![n, d])],
                    grad: vec![true, false],
                    cpu_forward: &|x| vec![byol_forward(&x[0], &x[1], d)],
                    cpu_backward: &|x, dy| {
                        vec![byol_backward(&x[0], &x[1], d, dy[0]), vec![0.0; n * d]]
                    },
                    gpu_forward: &|t| ops::byol_loss(&t[0], &t[1]),
                    rel: 1e-4,
                }
                .run(&mut rng);
            }
        }
    }
}

#[test]
fn byol_loss_sends_no_gradient_into_targets() {
    let e = common::engine();
    let mut rng = Rng::new(43);
    let p = upload(&e, &rand_vec(&mut rng, 7 * 33), &[7, 33], true);
    let z = upload(&e, &rand_vec(&mut rng, 7 * 33), &[7, 33], true);
    let loss = ops::byol_loss(&p, &z).unwrap();
    let mut grads = e.backward(&loss).unwrap();
    assert!(grads.remove(&z).is_none(), "z must get no gradient");
    assert!(grads.remove(&p).is_some());
    // Identical rows give the minimum, 0.
    let same = ops::byol_loss(&p, &p).unwrap().item().unwrap();
    assert!(same.abs() < 1e-5, "loss of p against itself is {same}");
    e.clear_tape();
}

// ---- cross_entropy -----------------------------------------------------------------------------

fn check_cross_entropy(rng: &mut Rng, n: usize, k: usize, offset: f64, name: &str) {
    let e = common::engine();
    let targets = rand_targets(rng, n, k);
    let t_idx: Vec<usize> = targets.iter().map(|&t| t as usize).collect();
    let t_gpu = ops::upload_targets(&e, &targets, k).unwrap();
    let rows = |x: &[f64]| -> Vec<Vec<f64>> { x.chunks(k).map(<[f64]>::to_vec).collect() };
    let logits: Vec<f64> = rand_vec(rng, n * k)
        .iter()
        .map(|v| v * 3.0 + offset)
        .collect();
    OpCheck {
        name: &format!("{name} {n}x{k}"),
        inputs: vec![(logits, vec![n, k])],
        grad: vec![true],
        cpu_forward: &|x| vec![ce_forward(&rows(&x[0]), &t_idx)],
        cpu_backward: &|x, dy| vec![ce_backward(&rows(&x[0]), &t_idx, dy[0]).concat()],
        gpu_forward: &|t| ops::cross_entropy(&t[0], &t_gpu),
        rel: 1e-4,
    }
    .run(rng);
}

#[test]
fn cross_entropy_matches_reference() {
    let mut rng = Rng::new(44);
    for n in ROWS {
        for k in FEATURES {
            check_cross_entropy(&mut rng, n, k, 0.0, "cross_entropy");
        }
    }
}

#[test]
fn cross_entropy_is_stable_for_large_logits() {
    let mut rng = Rng::new(45);
    // Logits near 1000 overflow exp() in f32 without the max subtraction.
    for (n, k) in [(7, 33), (33, 7), (1, 128)] {
        check_cross_entropy(&mut rng, n, k, 1000.0, "cross_entropy +1000");
        check_cross_entropy(&mut rng, n, k, -1000.0, "cross_entropy -1000");
    }
}

#[test]
fn cross_entropy_targets_are_validated_and_clamped() {
    let e = common::engine();
    assert!(matches!(
        ops::check_targets(&[0, 6, 7], 7),
        Err(Error::Invalid(_))
    ));
    assert!(ops::check_targets(&[0, 6, 3], 7).is_ok());
    assert!(ops::upload_targets(&e, &[3, 9], 5).is_err());
    // A label uploaded without validation cannot make the kernel read out of bounds: it is clamped
    // to the last class.
    let logits = Tensor::from_slice(&e, &[0.5, -1.0, 2.0, 0.25], &[2, 2]).unwrap();
    let wild = Tensor::from_u32(&e, &[99, 1], &[2]).unwrap();
    let last = Tensor::from_u32(&e, &[1, 1], &[2]).unwrap();
    let a = ops::cross_entropy(&logits, &wild).unwrap().item().unwrap();
    let b = ops::cross_entropy(&logits, &last).unwrap().item().unwrap();
    assert!(a.is_finite() && a == b, "{a} vs {b}");
}

// ---- info_nce ----------------------------------------------------------------------------------

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

// ---- splitting large inputs --------------------------------------------------------------------

#[test]
fn row_ops_split_inputs_larger_than_one_binding() {
    // A 4 KiB binding holds 1024 floats: [33, 128] rows need several launches.
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(50);
    let (n, d) = (33, 128);
    OpCheck {
        name: "l2_normalize split",
        inputs: vec![(rand_vec(&mut rng, n * d), vec![n, d])],
        grad: vec![true],
        cpu_forward: &|x| normalize(&x[0], d).0,
        cpu_backward: &|x, dy| vec![normalize_backward(&x[0], dy, d)],
        gpu_forward: &|t| ops::l2_normalize(&t[0]),
        rel: 1e-4,
    }
    .run_on(&e, &mut rng);
    OpCheck {
        name: "byol_loss split",
        inputs: vec![
            (rand_vec(&mut rng, n * d), vec![n, d]),
            (rand_vec(&mut rng, n * d), vec![n, d]),
        ],
        grad: vec![true, false],
        cpu_forward: &|x| vec![byol_forward(&x[0], &x[1], d)],
        cpu_backward: &|x, dy| vec![byol_backward(&x[0], &x[1], d, dy[0]), vec![]],
        gpu_forward: &|t| ops::byol_loss(&t[0], &t[1]),
        rel: 1e-4,
    }
    .run_on(&e, &mut rng);
    let targets = rand_targets(&mut rng, n, d);
    let t_idx: Vec<usize> = targets.iter().map(|&t| t as usize).collect();
    let t_gpu = ops::upload_targets(&e, &targets, d).unwrap();
    let rows = |x: &[f64]| -> Vec<Vec<f64>> { x.chunks(d).map(<[f64]>::to_vec).collect() };
    OpCheck {
        name: "cross_entropy split",
        inputs: vec![(rand_vec(&mut rng, n * d), vec![n, d])],
        grad: vec![true],
        cpu_forward: &|x| vec![ce_forward(&rows(&x[0]), &t_idx)],
        cpu_backward: &|x, dy| vec![ce_backward(&rows(&x[0]), &t_idx, dy[0]).concat()],
        gpu_forward: &|t| ops::cross_entropy(&t[0], &t_gpu),
        rel: 1e-4,
    }
    .run_on(&e, &mut rng);
    // [33, 33] logits and [33, 37] negatives exceed one binding; the matmuls split over rows.
    check_info_nce(&e, &mut rng, (33, 16), None, 0.5);
    check_info_nce(&e, &mut rng, (33, 16), Some(37), 0.2);
}

// ---- errors ------------------------------------------------------------------------------------

#[test]
fn bad_inputs_are_errors_not_panics() {
    let e = common::engine();
    let a = Tensor::zeros(&e, &[4, 3]).unwrap();
    let b = Tensor::zeros(&e, &[3, 4]).unwrap();
    let flat = Tensor::zeros(&e, &[12]).unwrap();
    assert!(matches!(ops::l2_normalize(&flat), Err(Error::Shape(_))));
    assert!(matches!(ops::byol_loss(&a, &b), Err(Error::Shape(_))));
    assert!(matches!(ops::byol_loss(&flat, &flat), Err(Error::Shape(_))));

    let labels = Tensor::from_u32(&e, &[0, 1, 2, 0], &[4]).unwrap();
    let float_labels = Tensor::zeros(&e, &[4]).unwrap();
    let short = Tensor::from_u32(&e, &[0, 1], &[2]).unwrap();
    assert!(ops::cross_entropy(&a, &labels).is_ok());
    assert!(matches!(
        ops::cross_entropy(&a, &float_labels),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        ops::cross_entropy(&a, &short),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        ops::cross_entropy(&labels, &labels),
        Err(Error::Invalid(_))
    ));

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
