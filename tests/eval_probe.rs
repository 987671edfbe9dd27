//! The linear probe and the kNN monitor separate separable classes and stay at chance on noise.

mod common;
use byol::eval::{knn_accuracy, linear_probe, standard_error, KnnConfig, ProbeConfig};
use byol::rng::Rng;

/// `n` points of dimension `d` around `k` class centres at distance `sep`.
fn blobs(rng: &mut Rng, n: usize, d: usize, k: usize, sep: f64) -> (Vec<f32>, Vec<u32>) {
    blobs_at(rng, n, d, k, sep, 100.0)
}

/// Blobs shifted by `offset` in every coordinate.
fn blobs_at(
    rng: &mut Rng,
    n: usize,
    d: usize,
    k: usize,
    sep: f64,
    offset: f64,
) -> (Vec<f32>, Vec<u32>) {
    let mut centres = Rng::new(99);
    let c: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..d).map(|_| centres.normal() * sep).collect())
        .collect();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let class = i % k;
        y.push(class as u32);
        x.extend(c[class].iter().map(|m| (m + rng.normal() + offset) as f32));
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

#[test]
fn knn_separates_blobs_and_stays_at_chance_on_noise() {
    let e = common::engine();
    let mut rng = Rng::new(8);
    // Centred blobs: cosine similarity sees their directions.
    let (fx, fy) = blobs_at(&mut rng, 1000, 17, 5, 2.0, 0.0);
    let (tx, ty) = blobs_at(&mut rng, 500, 17, 5, 2.0, 0.0);
    let (acc, se) = knn_accuracy(&e, 17, 5, (&fx, &fy), (&tx, &ty), KnnConfig::default()).unwrap();
    assert!(acc > 0.97, "kNN on separable blobs: {acc}");
    assert!((se - standard_error(acc, 500)).abs() < 1e-12);
    // Labels unrelated to the features, for bank and test alike: chance (0.2) within 4 standard
    // errors (0.018 each at 500 images).
    let bank_y: Vec<u32> = (0..1000).map(|_| rng.below(5) as u32).collect();
    let test_y: Vec<u32> = (0..500).map(|_| rng.below(5) as u32).collect();
    let (acc, _) = knn_accuracy(
        &e,
        17,
        5,
        (&fx, &bank_y),
        (&tx, &test_y),
        KnnConfig::default(),
    )
    .unwrap();
    assert!(
        (acc - 0.2).abs() < 4.0 * standard_error(0.2, 500),
        "kNN on noise: {acc}"
    );
    // A label outside the classes and mismatched lengths are errors.
    assert!(knn_accuracy(&e, 17, 4, (&fx, &fy), (&tx, &ty), KnnConfig::default()).is_err());
    assert!(knn_accuracy(&e, 17, 5, (&fx[1..], &fy), (&tx, &ty), KnnConfig::default()).is_err());
}

#[test]
fn standard_error_is_the_binomial_one() {
    assert!((standard_error(0.5, 100) - 0.05).abs() < 1e-12);
    assert_eq!(standard_error(1.0, 10), 0.0);
    assert_eq!(standard_error(0.3, 0), 0.0);
}
