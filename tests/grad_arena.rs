//! Backward writes the gradients of a trainable arena's parameters straight into the arena's
//! gradient buffer (one slot per parameter, same layout as the parameters), summing a parameter's
//! contributions there, so optimizers read them in place. Checked against hand-derived gradients
//! on a NaN-poisoned engine, for parameters used once, twice, three times and not at all.

mod common;
use byol::ops;
use byol::rng::Rng;
use byol::{ParamSet, Tensor};
use common::{assert_close, rand_vec, to_f32};

/// sum(p * c) has gradient c with respect to p.
fn dot(p: &Tensor, c: &[f64]) -> Tensor {
    let c = Tensor::from_slice(p.engine(), &to_f32(c), p.shape()).unwrap();
    ops::sum(&ops::mul(p, &c).unwrap()).unwrap()
}

fn add_all(terms: Vec<Tensor>) -> Tensor {
    terms
        .into_iter()
        .reduce(|a, b| ops::add(&a, &b).unwrap())
        .unwrap()
}

fn sum_of(vs: &[&Vec<f64>]) -> Vec<f64> {
    (0..vs[0].len())
        .map(|i| vs.iter().map(|v| v[i]).sum())
        .collect()
}

#[test]
fn backward_sums_each_parameter_gradient_into_its_arena_slot() {
    let e = common::engine();
    let mut rng = Rng::new(17);
    let shapes: [&[usize]; 4] = [&[7], &[33], &[1], &[257]];
    let values: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| to_f32(&rand_vec(&mut rng, s.iter().product())))
        .collect();
    let specs: Vec<(&str, &[usize], &[f32])> = ["once", "twice", "thrice", "unused"]
        .into_iter()
        .zip(shapes)
        .zip(&values)
        .map(|((n, s), v)| (n, s, v.as_slice()))
        .collect();
    let set = ParamSet::from_values(&e, &specs).unwrap();
    let arena = set
        .grad_flat()
        .expect("a trainable arena has a gradient arena");
    let [once, twice, thrice, unused] = set.tensors() else {
        unreachable!()
    };
    let mut coef = |t: &Tensor| rand_vec(&mut rng, t.numel());
    let (c1, c2a, c2b) = (coef(once), coef(twice), coef(twice));
    let (c3a, c3b, c3c) = (coef(thrice), coef(thrice), coef(thrice));
    for round in 0..2 {
        // The second round scales every coefficient: the slots must be overwritten, not added to.
        let k = (round + 1) as f64;
        let s = |c: &Vec<f64>| c.iter().map(|v| v * k).collect::<Vec<_>>();
        let loss = add_all(vec![
            dot(twice, &s(&c2a)),
            dot(once, &s(&c1)),
            dot(thrice, &s(&c3a)),
            dot(twice, &s(&c2b)),
            dot(thrice, &s(&c3b)),
            dot(thrice, &s(&c3c)),
        ]);
        let grads = e.backward(&loss).unwrap();
        for (name, t, want) in [
            ("once", once, s(&c1)),
            ("twice", twice, sum_of(&[&s(&c2a), &s(&c2b)])),
            ("thrice", thrice, sum_of(&[&s(&c3a), &s(&c3b), &s(&c3c)])),
        ] {
            let g = grads
                .get(t)
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let slot = t.grad_slot().expect("arena parameters have a slot");
            assert_eq!(g.id(), slot.id(), "{name}: the gradient is not its slot");
            assert_close(
                &format!("round {round} {name}"),
                &g.to_vec().unwrap(),
                &want,
            );
        }
        assert!(
            grads.get(unused).is_none(),
            "an unused parameter got a gradient"
        );
        // Read through the arena itself, at each parameter's offset.
        let flat = arena.to_vec().unwrap();
        let at = set.offsets()[1];
        assert_close(
            "arena view of twice",
            &flat[at..at + twice.numel()],
            &sum_of(&[&s(&c2a), &s(&c2b)]),
        );
    }
}

/// A tensor outside any arena keeps getting a fresh gradient tensor, as before.
#[test]
fn loose_parameters_get_their_own_gradient_tensors() {
    let e = common::engine();
    let mut rng = Rng::new(3);
    let c = rand_vec(&mut rng, 33);
    let p = Tensor::param(&e, &to_f32(&rand_vec(&mut rng, 33)), &[33]).unwrap();
    assert!(p.grad_slot().is_none());
    let loss = ops::add(&dot(&p, &c), &dot(&p, &c)).unwrap();
    let grads = e.backward(&loss).unwrap();
    let twice: Vec<f64> = c.iter().map(|v| 2.0 * v).collect();
    assert_close("loose", &grads.get(&p).unwrap().to_vec().unwrap(), &twice);
}
