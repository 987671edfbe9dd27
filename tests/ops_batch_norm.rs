//! Gradient checks of batch norm (training and eval, affine on and off), its running statistics,
//! accuracy with a large mean, the split over bindings, ghost batch norm (slices of the batch
//! normalized on their own), and its error paths.

mod common;
mod norm_ref;

use byol::ops::{batch_norm, ghost_batch_norm, BatchNormState};
use byol::rng::Rng;
use byol::{Engine, EngineOptions, Error, Tensor};
use common::{as_f32_values, assert_close, to_f32};
use norm_ref::{NormCase, NormRef};

/// Awkward shapes: C = 1, 3, 7, 33, N >= 2, spatial none, 1x1, 5x3, 7x7, and 4x3, 2x2 (inner a
/// multiple of 4: the vec4 forms of normalize and backward run there). Not [2, C]: with two
/// values per channel xhat is +-1 whatever x is, so dx is only the eps term, a pure f32 cancellation.
const SHAPES: &[&[usize]] = &[
    &[3, 1],
    &[5, 7],
    &[3, 33],
    &[4, 1, 5, 3],
    &[2, 3, 7, 7],
    &[3, 7, 1, 1],
    &[2, 33, 5, 3],
    &[3, 5, 4, 3],
    &[2, 7, 2, 2],
];

fn state_from(e: &Engine, mean: &[f64], var: &[f64]) -> BatchNormState {
    let c = mean.len();
    BatchNormState {
        running_mean: Tensor::from_slice(e, &to_f32(mean), &[c]).unwrap(),
        running_var: Tensor::from_slice(e, &to_f32(var), &[c]).unwrap(),
        momentum: 0.1,
        eps: 1e-5,
    }
}

fn train_case(e: &Engine, rng: &mut Rng, shape: &[usize], gamma: bool, beta: bool, offset: f64) {
    let c = shape[1];
    NormCase {
        name: "batch_norm train",
        shape: shape.to_vec(),
        reference: NormRef::batch_norm(shape),
        gamma,
        beta,
        offset,
        x_grad: true,
        fixed: None,
    }
    .run(e, rng, &|x, g, b| {
        let state = BatchNormState::new(x.engine(), c)?;
        batch_norm(x, g, b, &state, true)
    });
}

#[test]
fn training_mode_matches_reference() {
    let mut rng = Rng::new(41);
    for e in [common::engine(), common::engine_scalar()] {
        for shape in SHAPES {
            train_case(&e, &mut rng, shape, true, true, 0.0);
            train_case(&e, &mut rng, shape, false, false, 0.0);
        }
    }
    let e = common::engine();
    train_case(&e, &mut rng, &[3, 7, 5, 3], true, false, 0.0);
    train_case(&e, &mut rng, &[3, 7, 5, 3], false, true, 0.0);
}

#[test]
fn eval_mode_uses_running_statistics() {
    let mut rng = Rng::new(42);
    let one_sample: &[usize] = &[1, 7, 5, 3];
    let shapes = SHAPES.iter().copied().chain([one_sample]);
    for (e, shape) in shapes.flat_map(|s| [(common::engine(), s), (common::engine_scalar(), s)]) {
        let c = shape[1];
        let mean = as_f32_values(&common::rand_vec(&mut rng, c));
        let var: Vec<f64> =
            as_f32_values(&(0..c).map(|_| rng.uniform(0.2, 2.0)).collect::<Vec<_>>());
        for affine in [true, false] {
            let (m, v) = (mean.clone(), var.clone());
            NormCase {
                name: "batch_norm eval",
                shape: shape.to_vec(),
                reference: NormRef::batch_norm(shape),
                gamma: affine,
                beta: affine,
                offset: 0.0,
                x_grad: true,
                fixed: Some((mean.clone(), var.clone())),
            }
            .run(&e, &mut rng, &|x, g, b| {
                batch_norm(x, g, b, &state_from(x.engine(), &m, &v), false)
            });
        }
    }
}

#[test]
fn affine_gradients_without_an_input_gradient() {
    // The first layer of a network: x needs no gradient, gamma and beta do.
    let e = common::engine();
    let mut rng = Rng::new(43);
    for training in [true, false] {
        let shape = [4, 7, 5, 3];
        NormCase {
            name: "batch_norm affine only",
            shape: shape.to_vec(),
            reference: NormRef::batch_norm(&shape),
            gamma: true,
            beta: true,
            offset: 0.0,
            x_grad: false,
            fixed: (!training).then(|| (vec![0.0; 7], vec![1.0; 7])),
        }
        .run(&e, &mut rng, &|x, g, b| {
            let state = BatchNormState::new(x.engine(), 7)?;
            batch_norm(x, g, b, &state, training)
        });
    }
}

#[test]
fn statistics_stay_accurate_with_a_large_mean() {
    // Inputs 1e3 ± [0.1, 1]: E[x^2] - mean^2 in f32 would lose every digit of the variance here.
    // The two-pass statistics keep the normalized output within the usual 1e-4.
    let e = common::engine();
    let mut rng = Rng::new(44);
    for shape in [&[5usize, 7][..], &[2, 3, 7, 7], &[3, 33, 5, 3]] {
        train_case(&e, &mut rng, shape, true, true, 1e3);
        train_case(&e, &mut rng, shape, false, false, 1e3);
    }
}

/// PyTorch's update: running = (1 - m) * running + m * batch, unbiased batch variance.
fn expected_running(r: &NormRef, x: &[f64], mean: &mut [f64], var: &mut [f64], momentum: f64) {
    let (m, v) = r.stats(x);
    let n = r.counts();
    for c in 0..mean.len() {
        mean[c] = (1.0 - momentum) * mean[c] + momentum * m[c];
        var[c] = (1.0 - momentum) * var[c] + momentum * v[c] * n[c] / (n[c] - 1.0);
    }
}

#[test]
fn running_statistics_update_like_pytorch() {
    // The last statistics pass updates them; a 4 KiB binding makes [2, 9, 13, 13] and [1100, 3]
    // take several launches, of which only the last may.
    let split = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(45);
    for (e, shape, momentum, fresh) in [
        (common::engine(), &[3usize, 5, 2, 3][..], 0.1f32, true),
        (common::engine(), &[4, 7], 0.1, true),
        (common::engine(), &[2, 3, 7, 7], 0.3, false),
        (split.clone(), &[2, 9, 13, 13], 0.1, true),
        (split.clone(), &[1100, 3], 0.3, false),
    ] {
        let c = shape[1];
        let r = NormRef::batch_norm(shape);
        let (mut mean, mut var) = if fresh {
            (vec![0.0; c], vec![1.0; c])
        } else {
            let m = as_f32_values(&common::rand_vec(&mut rng, c));
            let v = as_f32_values(&(0..c).map(|_| rng.uniform(0.5, 2.0)).collect::<Vec<_>>());
            (m, v)
        };
        let mut state = if fresh {
            BatchNormState::new(&e, c).unwrap()
        } else {
            state_from(&e, &mean, &var)
        };
        state.momentum = momentum;
        let n: usize = shape.iter().product();
        for call in 1..=2 {
            let x = as_f32_values(&common::rand_vec(&mut rng, n));
            let xt = Tensor::from_slice(&e, &to_f32(&x), shape).unwrap();
            batch_norm(&xt, None, None, &state, true).unwrap();
            expected_running(&r, &x, &mut mean, &mut var, momentum as f64);
            let what = format!("{shape:?} after call {call}");
            assert_close(
                &format!("running mean {what}"),
                &state.running_mean.to_vec().unwrap(),
                &mean,
            );
            assert_close(
                &format!("running var {what}"),
                &state.running_var.to_vec().unwrap(),
                &var,
            );
        }
        // Eval mode then normalizes with exactly these running statistics.
        let x = as_f32_values(&common::rand_vec(&mut rng, n));
        let xt = Tensor::from_slice(&e, &to_f32(&x), shape).unwrap();
        let y = batch_norm(&xt, None, None, &state, false).unwrap();
        let mean32 = as_f32_values(&mean);
        let var32 = as_f32_values(&var);
        assert_close(
            "eval output after updates",
            &y.to_vec().unwrap(),
            &r.forward_fixed(&x, &mean32, &var32, None, None),
        );
        // Eval mode leaves the running statistics alone.
        assert_close(
            "running mean after eval",
            &state.running_mean.to_vec().unwrap(),
            &mean,
        );
    }
}

#[test]
fn inputs_larger_than_a_binding_are_split_over_the_batch() {
    // A 4 KiB binding (1024 floats): [5, 3, 9, 9] splits into groups of samples; in [2, 9, 13, 13]
    // one sample is larger than a binding, so each sample is split over channels; [1100, 3] and
    // [7, 200] take several launches whose partial sums fold into one; [4, 6, 8, 8] runs the vec4
    // forms chunk by chunk.
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let mut rng = Rng::new(46);
    for shape in [
        &[5usize, 3, 9, 9][..],
        &[2, 9, 13, 13],
        &[1100, 3],
        &[7, 200],
        &[4, 6, 8, 8],
    ] {
        train_case(&e, &mut rng, shape, true, true, 0.0);
        let c = shape[1];
        NormCase {
            name: "batch_norm eval split",
            shape: shape.to_vec(),
            reference: NormRef::batch_norm(shape),
            gamma: true,
            beta: true,
            offset: 0.0,
            x_grad: true,
            fixed: Some((vec![0.25; c], vec![0.5; c])),
        }
        .run(&e, &mut rng, &|x, g, b| {
            batch_norm(
                x,
                g,
                b,
                &state_from(x.engine(), &vec![0.25; c], &vec![0.5; c]),
                false,
            )
        });
    }
}

#[test]
fn bad_shapes_and_arguments_are_errors() {
    let e = common::engine();
    let st = BatchNormState::new(&e, 3).unwrap();
    let x = Tensor::zeros(&e, &[4, 3, 2, 2]).unwrap();
    let flat = Tensor::zeros(&e, &[12]).unwrap();
    let wrong = Tensor::zeros(&e, &[4]).unwrap();
    let shape_err = |r: byol::Result<Tensor>| matches!(r, Err(Error::Shape(_)));
    assert!(shape_err(batch_norm(&flat, None, None, &st, true)));
    assert!(shape_err(batch_norm(&x, Some(&wrong), None, &st, true)));
    assert!(shape_err(batch_norm(&x, None, Some(&wrong), &st, false)));
    let st4 = BatchNormState::new(&e, 4).unwrap();
    assert!(shape_err(batch_norm(&x, None, None, &st4, true)));
    // One value per channel has no batch variance (PyTorch refuses it too); eval mode is fine.
    let single = Tensor::zeros(&e, &[1, 3]).unwrap();
    assert!(shape_err(batch_norm(&single, None, None, &st, true)));
    assert!(batch_norm(&single, None, None, &st, false).is_ok());
    let empty = Tensor::zeros(&e, &[0, 3]).unwrap();
    assert!(shape_err(batch_norm(&empty, None, None, &st, true)));
    let bad_momentum = BatchNormState {
        momentum: 1.5,
        ..BatchNormState::new(&e, 3).unwrap()
    };
    assert!(matches!(
        batch_norm(&x, None, None, &bad_momentum, true),
        Err(Error::Invalid(_))
    ));
    let bad_eps = BatchNormState {
        eps: -1.0,
        ..BatchNormState::new(&e, 3).unwrap()
    };
    assert!(matches!(
        batch_norm(&x, None, None, &bad_eps, true),
        Err(Error::Invalid(_))
    ));
}

/// The fused batch norm + relu against the two checked ops it replaces (each gradient-checked
/// against f64 above and in ops_elementwise.rs): the same output and the same gradients of x,
/// gamma and beta, bit for bit, in training and eval mode, on the awkward shapes.
#[test]
fn fused_relu_equals_batch_norm_then_relu() {
    let e = common::engine();
    let mut rng = Rng::new(47);
    let (mut clipped, mut passed) = (0, 0);
    for shape in SHAPES {
        let c = shape[1];
        let n: usize = shape.iter().product();
        let x0 = to_f32(&common::rand_vec(&mut rng, n));
        let g0 = to_f32(&common::rand_vec(&mut rng, c));
        let b0 = to_f32(&common::rand_vec(&mut rng, c));
        let r = Tensor::from_slice(&e, &to_f32(&common::rand_vec(&mut rng, n)), shape).unwrap();
        for training in [true, false] {
            let run = |fused: bool| {
                let x = Tensor::param(&e, &x0, shape).unwrap();
                let g = Tensor::param(&e, &g0, &[c]).unwrap();
                let b = Tensor::param(&e, &b0, &[c]).unwrap();
                let state = BatchNormState::new(&e, c).unwrap();
                let y = if fused {
                    byol::ops::batch_norm_relu(&x, Some(&g), Some(&b), &state, training).unwrap()
                } else {
                    let t = batch_norm(&x, Some(&g), Some(&b), &state, training).unwrap();
                    byol::ops::relu(&t).unwrap()
                };
                let loss = byol::ops::sum(&byol::ops::mul(&y, &r).unwrap()).unwrap();
                let grads = e.backward(&loss).unwrap();
                let get = |t: &Tensor| grads.get(t).unwrap().to_vec().unwrap();
                (
                    y.to_vec().unwrap(),
                    get(&x),
                    get(&g),
                    get(&b),
                    state.running_var.to_vec().unwrap(),
                )
            };
            let (fused, composed) = (run(true), run(false));
            assert_eq!(fused, composed, "{shape:?} training={training}");
            clipped += fused.0.iter().filter(|v| **v == 0.0).count();
            passed += fused.0.iter().filter(|v| **v > 0.0).count();
        }
    }
    assert!(
        clipped > 100 && passed > 100,
        "both sides of the relu: {clipped}, {passed}"
    );
}

/// The vec4 forms do the scalar form's arithmetic in the same order: the same bits, forward and
/// backward, in training and eval mode.
#[test]
fn vec4_and_scalar_forms_give_the_same_bits() {
    let mut rng = Rng::new(49);
    // Profiled engines: the kernels that ran are checked below.
    let engine = |scalar_passes| {
        common::engine_with(EngineOptions {
            profile: true,
            scalar_passes,
            ..Default::default()
        })
    };
    let (vec4_engine, scalar_engine) = (engine(false), engine(true));
    for shape in [&[3usize, 5, 4, 3][..], &[2, 7, 2, 2], &[4, 3, 8, 8]] {
        let c = shape[1];
        let n: usize = shape.iter().product();
        let x0 = to_f32(&common::rand_vec(&mut rng, n));
        let g0 = to_f32(&common::rand_vec(&mut rng, c));
        let b0 = to_f32(&common::rand_vec(&mut rng, c));
        let r0 = to_f32(&common::rand_vec(&mut rng, n));
        for training in [true, false] {
            let run = |e: &Engine| {
                let x = Tensor::param(e, &x0, shape).unwrap();
                let g = Tensor::param(e, &g0, &[c]).unwrap();
                let b = Tensor::param(e, &b0, &[c]).unwrap();
                let r = Tensor::from_slice(e, &r0, shape).unwrap();
                let state = BatchNormState::new(e, c).unwrap();
                let y = batch_norm(&x, Some(&g), Some(&b), &state, training).unwrap();
                let loss = byol::ops::sum(&byol::ops::mul(&y, &r).unwrap()).unwrap();
                let grads = e.backward(&loss).unwrap();
                let get = |t: &Tensor| grads.get(t).unwrap().to_vec().unwrap();
                (y.to_vec().unwrap(), get(&x), get(&g), get(&b))
            };
            let (vec4, scalar) = (run(&vec4_engine), run(&scalar_engine));
            assert_eq!(vec4, scalar, "{shape:?} training={training}");
        }
    }
    let ran = |e: &Engine| -> Vec<String> { e.profile_report().into_iter().map(|k| k.0).collect() };
    let (vec4_ran, scalar_ran) = (ran(&vec4_engine), ran(&scalar_engine));
    for entry in ["normalize", "backward_train", "backward_eval"] {
        let (four, one) = (
            format!("batch_norm::{entry}4"),
            format!("batch_norm::{entry}"),
        );
        assert!(
            vec4_ran.contains(&four) && !vec4_ran.contains(&one),
            "{vec4_ran:?}"
        );
        assert!(
            scalar_ran.contains(&one) && !scalar_ran.contains(&four),
            "{scalar_ran:?}"
        );
    }
}

/// Ghost batch norm against the f64 reference whose statistics sets are (slice, channel): output
/// and the gradients of x, gamma and beta (finite-difference checked), on awkward shapes, slices
/// of one sample included.
#[test]
fn ghost_batch_norm_matches_reference() {
    let e = common::engine();
    let mut rng = Rng::new(48);
    for (shape, groups) in [
        (&[6usize, 7][..], 2),
        (&[9, 33], 3),
        (&[4, 3, 5, 3], 2),
        (&[3, 1, 5, 3], 3),
        (&[7, 3, 2, 2], 7),
        (&[4, 7, 1, 1], 1),
    ] {
        let c = shape[1];
        for affine in [true, false] {
            NormCase {
                name: "ghost batch_norm",
                shape: shape.to_vec(),
                reference: NormRef::ghost_batch_norm(shape, groups),
                gamma: affine,
                beta: affine,
                offset: 0.0,
                x_grad: true,
                fixed: None,
            }
            .run(&e, &mut rng, &|x, g, b| {
                let state = BatchNormState::new(x.engine(), c)?;
                ghost_batch_norm(x, g, b, &state, groups, false)
            });
        }
    }
}

/// The running statistics move by the mean of the slices' PyTorch updates; `--bn-groups` (the
/// engine's setting) routes training-mode `batch_norm` and `batch_norm_relu` through the ghost
/// op and leaves eval mode alone; a batch that does not split is an error.
#[test]
fn ghost_running_statistics_are_the_mean_of_the_slices() {
    let e = common::engine_with(EngineOptions::default());
    let mut rng = Rng::new(49);
    let (shape, groups) = ([6usize, 5, 2, 3], 3);
    let c = shape[1];
    let n: usize = shape.iter().product();
    let per_slice = [shape[0] / groups, c, 2, 3];
    let r = NormRef::batch_norm(&per_slice);
    let mut mean = as_f32_values(&common::rand_vec(&mut rng, c));
    let mut var = as_f32_values(&(0..c).map(|_| rng.uniform(0.5, 2.0)).collect::<Vec<_>>());
    let state = state_from(&e, &mean, &var);
    for call in 1..=2 {
        let x = as_f32_values(&common::rand_vec(&mut rng, n));
        let xt = Tensor::from_slice(&e, &to_f32(&x), &shape).unwrap();
        ghost_batch_norm(&xt, None, None, &state, groups, false).unwrap();
        let (mut m_sum, mut v_sum) = (vec![0.0; c], vec![0.0; c]);
        for slice in x.chunks(n / groups) {
            let (mut m, mut v) = (mean.clone(), var.clone());
            expected_running(&r, slice, &mut m, &mut v, 0.1);
            m_sum.iter_mut().zip(&m).for_each(|(s, x)| *s += x);
            v_sum.iter_mut().zip(&v).for_each(|(s, x)| *s += x);
        }
        mean = m_sum.iter().map(|s| s / groups as f64).collect();
        var = v_sum.iter().map(|s| s / groups as f64).collect();
        let what = format!("after call {call}");
        assert_close(
            &format!("ghost running mean {what}"),
            &state.running_mean.to_vec().unwrap(),
            &mean,
        );
        assert_close(
            &format!("ghost running var {what}"),
            &state.running_var.to_vec().unwrap(),
            &var,
        );
    }

    // The engine's setting: training-mode batch_norm (+ relu) is the ghost op, bit for bit.
    let x0 = to_f32(&common::rand_vec(&mut rng, n));
    let x = Tensor::from_slice(&e, &x0, &shape).unwrap();
    let run = |ghost: bool, relu: bool, training: bool| {
        let st = BatchNormState::new(&e, c).unwrap();
        let y = if ghost {
            ghost_batch_norm(&x, None, None, &st, groups, relu).unwrap()
        } else if relu {
            byol::ops::batch_norm_relu(&x, None, None, &st, training).unwrap()
        } else {
            batch_norm(&x, None, None, &st, training).unwrap()
        };
        (y.to_vec().unwrap(), st.running_var.to_vec().unwrap())
    };
    let whole = run(false, false, true);
    let eval_before = run(false, false, false);
    e.set_batch_norm_groups(groups);
    assert_eq!(run(false, false, true), run(true, false, true));
    assert_eq!(run(false, true, true), run(true, true, true));
    assert_ne!(
        run(false, false, true).0,
        whole.0,
        "the slices' statistics differ"
    );
    assert_eq!(
        run(false, false, false),
        eval_before,
        "eval mode ignores the groups"
    );
    e.set_batch_norm_groups(1);
    assert_eq!(run(false, false, true), whole);

    let st = BatchNormState::new(&e, c).unwrap();
    for bad in [0, 4] {
        assert!(matches!(
            ghost_batch_norm(&x, None, None, &st, bad, false),
            Err(Error::Shape(_))
        ));
    }
    // Slices of one value per channel have no variance.
    let flat = Tensor::from_slice(&e, &x0[..6 * c], &[6, c]).unwrap();
    assert!(matches!(
        ghost_batch_norm(&flat, None, None, &st, 6, false),
        Err(Error::Shape(_))
    ));
}
