//! The gradient-check harness every kernel test uses.
//!
//! For an op it takes a CPU reference in f64 (forward and backward), checks the reference backward
//! against central finite differences, then runs the GPU op on an engine that fills every fresh
//! buffer with NaN (so an element the kernel forgets fails), and compares forward output and input
//! gradients with the reference at a relative error of 1e-4.
#![allow(dead_code)]

pub mod conv_ref;
pub mod gemm_ref;
pub mod l2_ref;
pub mod loss_ref;
pub mod pool_ref;

use byol::rng::Rng;
use byol::{Engine, EngineOptions, MatmulVariant, Tensor};

/// A test engine: NaN-poisoned outputs, and it fails (never skips) when no adapter exists.
pub fn engine_with(options: EngineOptions) -> Engine {
    let options = EngineOptions {
        poison_outputs: true,
        ..options
    };
    match Engine::new(options) {
        Ok(e) => e,
        Err(e) => panic!("tests need a GPU adapter (software Vulkan is enough): {e}"),
    }
}

thread_local! {
    // Never dropped: wgpu must not release GPU objects from a thread-local destructor.
    static ENGINE: std::mem::ManuallyDrop<Engine> = std::mem::ManuallyDrop::new(engine_with(EngineOptions::default()));
}

thread_local! {
    static SCALAR_ENGINE: std::mem::ManuallyDrop<Engine> = std::mem::ManuallyDrop::new(engine_with(EngineOptions {
        scalar_passes: true,
        ..Default::default()
    }));
}

/// A per-thread test engine that forces the scalar form of the memory-bound passes (the shared
/// engine runs their vec4 form wherever a length allows it).
pub fn engine_scalar() -> Engine {
    SCALAR_ENGINE.with(|e| (**e).clone())
}

/// The shared per-thread test engine.
pub fn engine() -> Engine {
    ENGINE.with(|e| (**e).clone())
}

/// An engine forcing one matmul variant.
pub fn engine_variant(v: MatmulVariant) -> Engine {
    engine_with(EngineOptions {
        matmul: v,
        ..Default::default()
    })
}

/// Random values in ±[0.1, 1]: never zero, never near a relu kink.
pub fn rand_vec(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let m = rng.uniform(0.1, 1.0);
            if rng.next_u64() & 1 == 0 {
                m
            } else {
                -m
            }
        })
        .collect()
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Rounds through f32, so the reference sees exactly the values the GPU sees.
pub fn as_f32_values(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| x as f32 as f64).collect()
}

pub fn upload(e: &Engine, v: &[f64], shape: &[usize], requires_grad: bool) -> Tensor {
    let t = Tensor::from_slice(e, &to_f32(v), shape).expect("upload");
    t.set_requires_grad(requires_grad);
    t
}

/// Relative error check: |gpu - ref| <= 1e-4 * |ref|, with an absolute floor of 1e-4 * 1e-2 * max|ref|
/// for elements that cancel to near zero (their absolute f32 error scales with the tensor, not them).
pub fn assert_close(what: &str, gpu: &[f32], reference: &[f64]) {
    assert_close_tol(what, gpu, reference, 1e-4)
}

pub fn assert_close_tol(what: &str, gpu: &[f32], reference: &[f64], rel: f64) {
    assert_eq!(gpu.len(), reference.len(), "{what}: length");
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = rel * 1e-2 * scale.max(1e-30);
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        let g = g as f64;
        assert!(
            approx::relative_eq!(g, r, epsilon = floor, max_relative = rel),
            "{what}[{i}]: gpu {g} vs reference {r} (scale {scale})"
        );
    }
}

/// d/dx of sum(dy * f(x)) by central differences in f64, at up to `max_points` sampled elements.
pub fn finite_diff(
    f: &dyn Fn(&[Vec<f64>]) -> Vec<f64>,
    inputs: &[Vec<f64>],
    which: usize,
    dy: &[f64],
    points: &[usize],
) -> Vec<(usize, f64)> {
    let h = 1e-6;
    points
        .iter()
        .map(|&i| {
            let mut plus = inputs.to_vec();
            plus[which][i] += h;
            let mut minus = inputs.to_vec();
            minus[which][i] -= h;
            let fp: f64 = f(&plus).iter().zip(dy).map(|(a, b)| a * b).sum();
            let fm: f64 = f(&minus).iter().zip(dy).map(|(a, b)| a * b).sum();
            (i, (fp - fm) / (2.0 * h))
        })
        .collect()
}

/// CPU reference forward: inputs to output.
pub type CpuForward<'a> = &'a dyn Fn(&[Vec<f64>]) -> Vec<f64>;
/// CPU reference backward: inputs and output gradient to input gradients.
pub type CpuBackward<'a> = &'a dyn Fn(&[Vec<f64>], &[f64]) -> Vec<Vec<f64>>;

/// One op under test.
pub struct OpCheck<'a> {
    pub name: &'a str,
    /// Input values (rounded through f32) and shapes.
    pub inputs: Vec<(Vec<f64>, Vec<usize>)>,
    /// Which inputs get gradients.
    pub grad: Vec<bool>,
    pub cpu_forward: CpuForward<'a>,
    pub cpu_backward: CpuBackward<'a>,
    pub gpu_forward: &'a dyn Fn(&[Tensor]) -> byol::Result<Tensor>,
    /// Relative tolerance (1e-4 unless the test says why).
    pub rel: f64,
}

impl OpCheck<'_> {
    /// Runs the whole check on `engine`.
    pub fn run_on(&self, e: &Engine, rng: &mut Rng) {
        let xs: Vec<Vec<f64>> = self.inputs.iter().map(|(v, _)| as_f32_values(v)).collect();
        let y = (self.cpu_forward)(&xs);
        let dy = as_f32_values(&rand_vec(rng, y.len()));
        let grads = (self.cpu_backward)(&xs, &dy);

        // 1. The reference backward agrees with finite differences (sampled elements).
        for (which, g) in grads.iter().enumerate() {
            if !self.grad[which] {
                continue;
            }
            let n = xs[which].len();
            let points: Vec<usize> = if n <= 48 {
                (0..n).collect()
            } else {
                (0..48).map(|_| rng.below(n)).collect()
            };
            for (i, fd) in finite_diff(self.cpu_forward, &xs, which, &dy, &points) {
                let tol = 1e-6 * (1.0 + fd.abs().max(g[i].abs()));
                assert!(
                    (fd - g[i]).abs() <= tol,
                    "{}: reference gradient of input {which}[{i}] is {} but finite differences give {fd}",
                    self.name,
                    g[i]
                );
            }
        }

        // 2. GPU forward against the reference.
        let ts: Vec<Tensor> = self
            .inputs
            .iter()
            .zip(&xs)
            .zip(&self.grad)
            .map(|(((_, shape), v), &g)| upload(e, v, shape, g))
            .collect();
        let out = (self.gpu_forward)(&ts)
            .unwrap_or_else(|err| panic!("{}: forward failed: {err}", self.name));
        assert_close_tol(
            &format!("{} forward", self.name),
            &out.to_vec().unwrap(),
            &y,
            self.rel,
        );

        // 3. GPU backward against the reference.
        let dy_t = upload(e, &dy, out.shape(), false);
        let mut got = e
            .backward_from(&out, dy_t)
            .unwrap_or_else(|err| panic!("{}: backward failed: {err}", self.name));
        for (which, t) in ts.iter().enumerate() {
            if !self.grad[which] {
                continue;
            }
            let g = got
                .remove(t)
                .unwrap_or_else(|| panic!("{}: no gradient for input {which}", self.name));
            assert_eq!(
                g.shape(),
                t.shape(),
                "{}: gradient shape of input {which}",
                self.name
            );
            assert_close_tol(
                &format!("{} grad of input {which}", self.name),
                &g.to_vec().unwrap(),
                &grads[which],
                self.rel,
            );
        }
        assert_eq!(
            e.tape_len(),
            0,
            "{}: tape must be empty after backward",
            self.name
        );
    }

    pub fn run(&self, rng: &mut Rng) {
        self.run_on(&engine(), rng)
    }

    /// The check on both forms of the memory-bound passes: vec4 (the shared engine) and scalar.
    pub fn run_both_forms(&self, rng: &mut Rng) {
        self.run_on(&engine(), rng);
        self.run_on(&engine_scalar(), rng);
    }
}
