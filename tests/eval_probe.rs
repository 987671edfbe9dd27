//! The linear probe separates separable classes and stays at chance on noise.

mod common;
use byol::eval::{linear_probe, ProbeConfig};
use byol::rng::Rng;

/// `n` points of dimension `d` around `k` class centres at distance `sep`.
fn blobs(rng: &mut Rng, n: usize, d: usize, k: usize, sep: f64) -> (Vec<f32>, Vec<u32>) {
    let mut centres = Rng::new(99);
    let c: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..d).map(|_| centres.normal() * sep).collect())
        .collect();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let class = i % k;
        y.push(class as u32);
        x.extend(c[class].iter().map(|m| (m + rng.normal()) as f32 + 100.0));
    }
    (x, y)
}

#[test]
fn separable_classes_are_learned_and_noise_is_not() {
    let e = common::engine();
    let mut rng = Rng::new(5);
    let (fx, fy) = blobs(&mut rng, 300, 17, 5, 2.0);
    let (tx, ty) = blobs(&mut rng, 200, 17, 5, 2.0);
    let r = linear_probe(&e, 17, 5, (&fx, &fy), (&tx, &ty), ProbeConfig::default()).unwrap();
    assert!(r.accuracy > 0.95, "{r:?}");
    // Labels unrelated to the features: test accuracy near chance (0.2).
    let noise_y: Vec<u32> = (0..200).map(|_| rng.below(5) as u32).collect();
    let r = linear_probe(
        &e,
        17,
        5,
        (&fx, &fy),
        (&tx, &noise_y),
        ProbeConfig::default(),
    )
    .unwrap();
    assert!(r.accuracy < 0.4, "{r:?}");
}

#[test]
fn mismatched_inputs_are_errors() {
    let e = common::engine();
    assert!(linear_probe(
        &e,
        3,
        2,
        (&[0.0; 5], &[0, 1]),
        (&[], &[]),
        ProbeConfig::default()
    )
    .is_err());
    assert!(linear_probe(
        &e,
        3,
        1,
        (&[0.0; 6], &[0, 0]),
        (&[], &[]),
        ProbeConfig::default()
    )
    .is_err());
}
