//! In-place parameter updates: SGD and LARS against an f64 reference of PyTorch's formulas, EMA,
//! the parameter arena, and the recording contract (few dispatches, no submit).

mod common;
use byol::ops;
use byol::optim::{ema_update, ema_update_tensors, Optimizer};
use byol::rng::Rng;
use byol::{Engine, EngineOptions, Grads, ParamSet, Tensor};
use common::{as_f32_values, assert_close, rand_vec, to_f32};

/// Awkward sizes, a weight matrix with its bias among them.
const SHAPES: &[&[usize]] = &[&[1], &[7], &[33], &[257], &[33, 7], &[7]];

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{i}")).collect()
}

/// A parameter set holding `values` (rounded through f32).
fn param_set(e: &Engine, shapes: &[&[usize]], values: &[Vec<f64>]) -> ParamSet {
    let names = names(shapes.len());
    let data: Vec<Vec<f32>> = values.iter().map(|v| to_f32(v)).collect();
    let specs: Vec<(&str, &[usize], &[f32])> = names
        .iter()
        .zip(shapes)
        .zip(&data)
        .map(|((n, s), d)| (n.as_str(), *s, d.as_slice()))
        .collect();
    ParamSet::from_values(e, &specs).unwrap()
}

/// Sum of all elements, in two levels for long tensors (one level cannot cross a small binding).
fn sum_all(x: &Tensor) -> Tensor {
    let n = x.numel();
    let rows = (1..=n.min(256))
        .rev()
        .find(|&d| n.is_multiple_of(d))
        .unwrap();
    let per_row = ops::sum_axis(&ops::reshape(x, &[n / rows, rows]).unwrap(), 1).unwrap();
    ops::sum(&per_row).unwrap()
}

/// Gradients equal to `gs` (exactly: the loss is the sum of p * g over parameters that have one).
fn grads_of(e: &Engine, set: &ParamSet, gs: &[Option<Vec<f64>>]) -> Grads {
    let mut loss: Option<Tensor> = None;
    for (t, g) in set.tensors().iter().zip(gs) {
        let Some(g) = g else { continue };
        let c = Tensor::from_slice(e, &to_f32(g), t.shape()).unwrap();
        let s = sum_all(&ops::mul(t, &c).unwrap());
        loss = Some(match loss {
            None => s,
            Some(prev) => ops::add(&prev, &s).unwrap(),
        });
    }
    e.backward(&loss.expect("some gradient")).unwrap()
}

#[derive(Clone, Copy)]
enum Rule {
    Sgd,
    Lars { eta: f64 },
}

/// The f64 reference: PyTorch's SGD (dampening 0, no Nesterov) or BYOL's LARS.
struct Reference {
    rule: Rule,
    momentum: f64,
    weight_decay: f64,
    exclude: Vec<bool>,
    params: Vec<Vec<f64>>,
    bufs: Vec<Option<Vec<f64>>>,
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

impl Reference {
    fn step(&mut self, grads: &[Option<Vec<f64>>], lr: f64) {
        for (i, g) in grads.iter().enumerate() {
            let Some(g) = g else { continue };
            let p = &mut self.params[i];
            let scaled = matches!(self.rule, Rule::Lars { .. }) && !self.exclude[i];
            let wd = if scaled || matches!(self.rule, Rule::Sgd) {
                self.weight_decay
            } else {
                0.0
            };
            let mut d: Vec<f64> = g.iter().zip(p.iter()).map(|(g, p)| g + wd * p).collect();
            if let (Rule::Lars { eta }, true) = (self.rule, scaled) {
                let (pn, dn) = (norm(p), norm(&d));
                let trust = if pn > 0.0 && dn > 0.0 {
                    eta * pn / dn
                } else {
                    1.0
                };
                d.iter_mut().for_each(|x| *x *= trust);
            }
            let buf = match self.bufs[i].take() {
                None => d,
                Some(b) => b
                    .iter()
                    .zip(&d)
                    .map(|(b, d)| self.momentum * b + d)
                    .collect(),
            };
            for (p, b) in p.iter_mut().zip(&buf) {
                *p -= lr * b;
            }
            self.bufs[i] = Some(buf);
        }
    }
}

fn check_params(what: &str, set: &ParamSet, reference: &[Vec<f64>]) {
    for (i, (t, r)) in set.tensors().iter().zip(reference).enumerate() {
        assert_close(&format!("{what} param {i}"), &t.to_vec().unwrap(), r);
    }
}

fn check_buffers(what: &str, got: &[Option<Tensor>], reference: &[Option<Vec<f64>>]) {
    for (i, (g, r)) in got.iter().zip(reference).enumerate() {
        match (g, r) {
            (None, None) => {}
            (Some(g), Some(r)) => {
                assert_close(&format!("{what} buffer {i}"), &g.to_vec().unwrap(), r)
            }
            _ => panic!("{what} buffer {i}: present on one side only"),
        }
    }
}

fn random_values(rng: &mut Rng, shapes: &[&[usize]]) -> Vec<Vec<f64>> {
    shapes
        .iter()
        .map(|s| as_f32_values(&rand_vec(rng, s.iter().product())))
        .collect()
}

/// Three steps with changing lr. Parameter 1 has no gradient at step 2 (skipped: neither it nor
/// its buffer changes) and parameter 2 gets its first gradient only at step 2 (buffer init then).
fn run_three_steps(e: &Engine, shapes: &[&[usize]], rule: Rule, exclude: Option<Vec<bool>>) {
    let mut rng = Rng::new(41);
    let values = random_values(&mut rng, shapes);
    let set = param_set(e, shapes, &values);
    let (momentum, wd) = (0.9f32, 0.05f32);
    let mut reference = Reference {
        rule,
        momentum: momentum as f64,
        weight_decay: wd as f64,
        exclude: exclude
            .clone()
            .unwrap_or_else(|| shapes.iter().map(|s| s.len() == 1).collect()),
        params: values,
        bufs: vec![None; shapes.len()],
    };
    let mut opt = match rule {
        Rule::Sgd => Optimizer::sgd(&set, momentum, wd).unwrap(),
        Rule::Lars { eta } => {
            let mut l = Optimizer::lars(&set, momentum, wd)
                .unwrap()
                .with_eta(eta as f32)
                .unwrap();
            if let Some(x) = exclude {
                l = l.with_exclude(x).unwrap();
            }
            l
        }
    };
    for (step, lr) in [0.1f32, 0.05, 0.02].into_iter().enumerate() {
        let mut gs: Vec<Option<Vec<f64>>> = random_values(&mut rng, shapes)
            .into_iter()
            .map(Some)
            .collect();
        if step == 0 {
            gs[2] = None;
        }
        if step == 1 {
            gs[1] = None;
        }
        let grads = grads_of(e, &set, &gs);
        opt.step(&grads, lr).unwrap();
        reference.step(&gs, lr as f64);
        let what = format!("step {}", step + 1);
        check_params(&what, &set, &reference.params);
        let bufs = opt.momentum_buffers().unwrap();
        check_buffers(&what, &bufs, &reference.bufs);
    }
}

#[test]
fn sgd_matches_pytorch_over_three_steps() {
    run_three_steps(&common::engine(), SHAPES, Rule::Sgd, None);
}

#[test]
fn lars_matches_reference_and_excludes_1d_params() {
    let e = common::engine();
    // BYOL's eta, and a large one so that a wrong trust ratio moves the parameters visibly.
    run_three_steps(&e, SHAPES, Rule::Lars { eta: 0.001 }, None);
    run_three_steps(&e, SHAPES, Rule::Lars { eta: 0.5 }, None);
    // A caller's own exclusion: the matrix and one vector excluded, the other 1-D ones scaled.
    let exclude = vec![false, false, true, false, true, false];
    run_three_steps(&e, SHAPES, Rule::Lars { eta: 0.5 }, Some(exclude));
}

#[test]
fn lars_trust_ratio_is_one_when_a_norm_is_zero() {
    let e = common::engine();
    let shapes: &[&[usize]] = &[&[33, 7], &[7, 2], &[5, 3]];
    let mut rng = Rng::new(42);
    let mut values = random_values(&mut rng, shapes);
    values[0] = vec![0.0; 33 * 7]; // |p| = 0
    for wd in [0.0f32, 0.05] {
        let set = param_set(&e, shapes, &values);
        let mut opt = Optimizer::lars(&set, 0.9, wd)
            .unwrap()
            .with_eta(0.5)
            .unwrap();
        let mut reference = Reference {
            rule: Rule::Lars { eta: 0.5 },
            momentum: 0.9,
            weight_decay: wd as f64,
            exclude: vec![false; 3],
            params: values.clone(),
            bufs: vec![None; 3],
        };
        // Parameter 1 has a zero gradient: |d| = 0 without weight decay, |d| = wd |p| with it.
        let mut gs: Vec<Option<Vec<f64>>> = random_values(&mut rng, shapes)
            .into_iter()
            .map(Some)
            .collect();
        gs[1] = Some(vec![0.0; 14]);
        let grads = grads_of(&e, &set, &gs);
        opt.step(&grads, 0.1).unwrap();
        reference.step(&gs, 0.1);
        check_params(&format!("wd {wd}"), &set, &reference.params);
        check_buffers(
            &format!("wd {wd}"),
            &opt.momentum_buffers().unwrap(),
            &reference.bufs,
        );
    }
}

#[test]
fn arenas_larger_than_a_binding_are_split_into_windows() {
    // 4 KiB bindings: the arena spans several windows and the 1500-element parameter two of them.
    let e = common::engine_with(EngineOptions {
        binding_limit: Some(4096),
        ..Default::default()
    });
    let shapes: &[&[usize]] = &[&[1], &[7], &[33], &[1500], &[33, 7], &[7], &[257]];
    run_three_steps(&e, shapes, Rule::Sgd, None);
    run_three_steps(&e, shapes, Rule::Lars { eta: 0.5 }, None);

    let mut rng = Rng::new(43);
    let (tv, ov) = (
        random_values(&mut rng, shapes),
        random_values(&mut rng, shapes),
    );
    let (target, online) = (param_set(&e, shapes, &tv), param_set(&e, shapes, &ov));
    let gs: Vec<_> = random_values(&mut rng, shapes)
        .into_iter()
        .map(Some)
        .collect();
    let grads = grads_of(&e, &target, &gs);
    let mut sgd = Optimizer::sgd(&target, 0.9, 0.0).unwrap();
    let before = e.record_stats().dispatches;
    sgd.step(&grads, 0.1).unwrap();
    assert!(
        e.record_stats().dispatches - before >= 3,
        "expected windows"
    );
    let target = param_set(&e, shapes, &tv);
    let before = e.record_stats().dispatches;
    ema_update(&target, &online, 0.9).unwrap();
    assert!(e.record_stats().dispatches - before > 1, "expected a split");
    for (i, t) in target.tensors().iter().enumerate() {
        let r: Vec<f64> = tv[i]
            .iter()
            .zip(&ov[i])
            .map(|(t, o)| 0.9f32 as f64 * t + (1.0 - 0.9f32 as f64) * o)
            .collect();
        assert_close(&format!("ema param {i}"), &t.to_vec().unwrap(), &r);
    }
}

#[test]
fn ema_matches_reference_for_several_taus() {
    let e = common::engine();
    let mut rng = Rng::new(44);
    let online_values = random_values(&mut rng, SHAPES);
    let online = param_set(&e, SHAPES, &online_values);
    for tau in [0.99f32, 0.0, 1.0] {
        let target_values = random_values(&mut rng, SHAPES);
        let target = param_set(&e, SHAPES, &target_values);
        ema_update(&target, &online, tau).unwrap();
        for (i, t) in target.tensors().iter().enumerate() {
            let got = t.to_vec().unwrap();
            if tau == 0.0 {
                assert_eq!(got, to_f32(&online_values[i]), "tau 0 copies online");
            } else if tau == 1.0 {
                assert_eq!(got, to_f32(&target_values[i]), "tau 1 keeps target");
            } else {
                let tau = tau as f64;
                let r: Vec<f64> = target_values[i]
                    .iter()
                    .zip(&online_values[i])
                    .map(|(t, o)| tau * t + (1.0 - tau) * o)
                    .collect();
                assert_close(&format!("ema tau {tau} param {i}"), &got, &r);
            }
        }
    }
    // Loose tensors, and a target made by duplicating the online set.
    let target = online.duplicate(false).unwrap();
    assert!(!target.tensors()[0].requires_grad());
    let extra_t = Tensor::from_slice(&e, &[1.0, 2.0, 3.0], &[3]).unwrap();
    let extra_o = Tensor::from_slice(&e, &[3.0, 2.0, 1.0], &[3]).unwrap();
    ema_update_tensors(std::slice::from_ref(&extra_t), &[extra_o], 0.5).unwrap();
    assert_eq!(extra_t.to_vec().unwrap(), vec![2.0, 2.0, 2.0]);
    ema_update(&target, &online, 0.5).unwrap();
    for (t, o) in target.tensors().iter().zip(&online_values) {
        assert_eq!(
            t.to_vec().unwrap(),
            to_f32(o),
            "duplicate copies the values"
        );
    }
}

#[test]
fn steps_record_few_dispatches_and_never_submit() {
    let e = common::engine();
    let mut rng = Rng::new(45);
    let values = random_values(&mut rng, SHAPES);
    let set = param_set(&e, SHAPES, &values);
    let target = set.duplicate(false).unwrap();
    let mut sgd = Optimizer::sgd(&set, 0.9, 1e-4).unwrap();
    let mut lars = Optimizer::lars(&set, 0.9, 1e-4).unwrap();
    for step in 0..3 {
        let gs: Vec<_> = random_values(&mut rng, SHAPES)
            .into_iter()
            .map(Some)
            .collect();
        let grads = grads_of(&e, &set, &gs);
        e.flush().unwrap();
        let before = e.record_stats();
        sgd.step(&grads, 0.1).unwrap();
        let after_sgd = e.record_stats();
        lars.step(&grads, 0.1).unwrap();
        let after_lars = e.record_stats();
        ema_update(&target, &set, 0.99).unwrap();
        let after = e.record_stats();
        assert_eq!(
            after_sgd.dispatches - before.dispatches,
            1,
            "SGD, step {step}"
        );
        assert_eq!(
            after_lars.dispatches - after_sgd.dispatches,
            3,
            "LARS, step {step}"
        );
        assert_eq!(
            after.dispatches - after_lars.dispatches,
            1,
            "EMA, step {step}"
        );
        assert_eq!(after.submits, before.submits, "an update submitted");
        target.flat().to_vec().unwrap();
        assert_eq!(e.record_stats().submits, before.submits + 1);
    }
}

#[test]
fn momentum_buffers_export_and_import() {
    let e = common::engine();
    let mut rng = Rng::new(46);
    let shapes: &[&[usize]] = &[&[33, 7], &[7], &[5]];
    let values = random_values(&mut rng, shapes);
    let (a, b) = (
        param_set(&e, shapes, &values),
        param_set(&e, shapes, &values),
    );
    let mut sgd_a = Optimizer::sgd(&a, 0.9, 0.01).unwrap();
    let mut sgd_b = Optimizer::sgd(&b, 0.9, 0.01).unwrap();
    let mut gs: Vec<_> = random_values(&mut rng, shapes)
        .into_iter()
        .map(Some)
        .collect();
    gs[2] = None;
    sgd_a.step(&grads_of(&e, &a, &gs), 0.1).unwrap();
    let exported = sgd_a.momentum_buffers().unwrap();
    assert!(exported[2].is_none(), "no buffer before a first step");
    // b gets a's state (parameters and buffers), then both take the same step.
    for (i, (ta, tb)) in a.tensors().iter().zip(b.tensors()).enumerate() {
        tb.write(&ta.to_vec().unwrap()).unwrap();
        let buf = exported[i].as_ref().map(|t| t.to_vec().unwrap());
        sgd_b.set_momentum_buffer(i, buf.as_deref()).unwrap();
    }
    let gs: Vec<_> = random_values(&mut rng, shapes)
        .into_iter()
        .map(Some)
        .collect();
    sgd_a.step(&grads_of(&e, &a, &gs), 0.05).unwrap();
    sgd_b.step(&grads_of(&e, &b, &gs), 0.05).unwrap();
    assert_eq!(a.flat().to_vec().unwrap(), b.flat().to_vec().unwrap());
    assert!(sgd_b.set_momentum_buffer(0, Some(&[1.0])).is_err());
    assert!(sgd_b.set_momentum_buffer(3, None).is_err());
}

#[test]
fn arena_tensors_behave_like_tensors_in_ops() {
    let e = common::engine();
    let mut rng = Rng::new(47);
    let (n, k, m) = (5, 33, 7);
    let shapes: &[&[usize]] = &[&[1], &[k, m], &[m]];
    let values = random_values(&mut rng, shapes);
    let set = param_set(&e, shapes, &values);
    // Layout: aligned offsets, values in place, gaps zero.
    let flat = set.flat().to_vec().unwrap();
    let align = (e.gpu().limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    for (i, (&off, v)) in set.offsets().iter().zip(&values).enumerate() {
        assert_eq!(off % align, 0, "offset of param {i}");
        assert_eq!(&flat[off..off + v.len()], &to_f32(v)[..]);
        assert_eq!(set.tensors()[i].to_vec().unwrap(), to_f32(v));
    }
    assert!(flat[1..set.offsets()[1]].iter().all(|&x| x == 0.0));
    assert_eq!(set.get("p1").unwrap().shape(), &[k, m]);
    assert_eq!(set.names()[2], "p2");

    // y = x·W + b; loss = sum(y * c): dW = xᵀc, db = column sums of c.
    let x = as_f32_values(&rand_vec(&mut rng, n * k));
    let c = as_f32_values(&rand_vec(&mut rng, n * m));
    let xt = Tensor::from_slice(&e, &to_f32(&x), &[n, k]).unwrap();
    let ct = Tensor::from_slice(&e, &to_f32(&c), &[n, m]).unwrap();
    let (w, b) = (&set.tensors()[1], &set.tensors()[2]);
    let y = ops::bias_add(&ops::matmul(&xt, w).unwrap(), b).unwrap();
    let loss = ops::sum(&ops::mul(&y, &ct).unwrap()).unwrap();
    let mut y_ref = vec![0.0; n * m];
    let mut dw = vec![0.0; k * m];
    let mut db = vec![0.0; m];
    for r in 0..n {
        for j in 0..m {
            y_ref[r * m + j] = values[2][j]
                + (0..k)
                    .map(|q| x[r * k + q] * values[1][q * m + j])
                    .sum::<f64>();
            db[j] += c[r * m + j];
            for q in 0..k {
                dw[q * m + j] += x[r * k + q] * c[r * m + j];
            }
        }
    }
    assert_close("x·W + b", &y.to_vec().unwrap(), &y_ref);
    let grads = e.backward(&loss).unwrap();
    assert_eq!(grads.len(), 2, "W and b get gradients, the unused p0 none");
    assert_close("dW", &grads.get(w).unwrap().to_vec().unwrap(), &dw);
    assert_close("db", &grads.get(b).unwrap().to_vec().unwrap(), &db);

    // Writing one parameter leaves its neighbours alone.
    b.write(&[9.0; 7]).unwrap();
    assert_eq!(set.tensors()[0].to_vec().unwrap(), to_f32(&values[0]));
    assert_eq!(w.to_vec().unwrap(), to_f32(&values[1]));
    assert_eq!(b.to_vec().unwrap(), vec![9.0; 7]);
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let e = common::engine();
    let a = ParamSet::zeros(&e, &[("w", &[3, 4]), ("b", &[4])]).unwrap();
    let other = ParamSet::zeros(&e, &[("w", &[4, 3]), ("b", &[4])]).unwrap();
    assert!(matches!(
        ema_update(&a, &other, 0.9),
        Err(byol::Error::Shape(_))
    ));
    assert!(matches!(
        ema_update(&a, &a, 0.9),
        Err(byol::Error::Invalid(_))
    ));
    let b = a.duplicate(false).unwrap();
    assert!(ema_update(&b, &a, 1.5).is_err());
    assert!(ema_update(&b, &a, f32::NAN).is_err());
    assert!(ema_update_tensors(&a.tensors()[..1], &b.tensors()[1..], 0.9).is_err());
    assert!(ema_update_tensors(&a.tensors()[..1], &[], 0.9).is_err());
    assert!(ParamSet::zeros(&e, &[("w", &[3]), ("w", &[4])]).is_err());
    assert!(matches!(
        ParamSet::zeros(&e, &[("w", &[3, 0])]),
        Err(byol::Error::Shape(_))
    ));
    assert!(matches!(
        ParamSet::from_values(&e, &[("w", &[3], &[1.0, 2.0])]),
        Err(byol::Error::Shape(_))
    ));
    assert!(Optimizer::sgd(&a, -0.9, 0.0).is_err());
    assert!(Optimizer::sgd(&a, 0.9, f32::INFINITY).is_err());
    assert!(Optimizer::lars(&a, 0.9, 0.0)
        .unwrap()
        .with_exclude(vec![true])
        .is_err());
    assert!(Optimizer::lars(&a, 0.9, 0.0)
        .unwrap()
        .with_eta(-1.0)
        .is_err());
    assert!(Optimizer::lars(&a, 0.9, 0.0)
        .unwrap()
        .with_eta(0.0)
        .is_err());
    // SGD has no trust coefficient and excludes nothing.
    assert!(Optimizer::sgd(&a, 0.9, 0.0).unwrap().with_eta(0.5).is_err());
    assert!(Optimizer::sgd(&a, 0.9, 0.0)
        .unwrap()
        .with_exclude(vec![false])
        .is_err());
    let mut sgd = Optimizer::sgd(&a, 0.9, 0.0).unwrap();
    assert!(sgd.step(&Grads::default(), f32::NAN).is_err());
    // No gradients at all: nothing to do.
    sgd.step(&Grads::default(), 0.1).unwrap();
    assert_eq!(a.flat().to_vec().unwrap(), vec![0.0; a.flat().numel()]);
}
