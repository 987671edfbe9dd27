//! Layers and networks. A network's structure (which parameter is which, strides, norms) is kept
//! apart from its storage (a [`ParamSet`] arena), so the same structure runs with the online
//! parameters or with their EMA copy, and optimizers and EMA see one flat buffer.

pub mod heads;
pub mod layers;
pub mod resnet;

pub use heads::Mlp;
pub use layers::{Conv, Linear, Norm, NormKind};
pub use resnet::{EncoderNorm, ResNet, ResNetConfig, Stem};

use crate::engine::Engine;
use crate::error::Result;
use crate::params::ParamSet;
use crate::rng::Rng;

/// Collects parameter names, shapes and initial values while a network is built, then creates the
/// arena. Layers keep the index of each parameter they own.
pub struct ParamBuilder {
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    values: Vec<Vec<f32>>,
    pub rng: Rng,
}

impl ParamBuilder {
    pub fn new(seed: u64) -> ParamBuilder {
        ParamBuilder {
            names: Vec::new(),
            shapes: Vec::new(),
            values: Vec::new(),
            rng: Rng::new(seed),
        }
    }

    /// Adds a parameter; returns its index in the arena.
    pub fn add(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> usize {
        debug_assert_eq!(values.len(), shape.iter().product::<usize>());
        self.names.push(name.to_string());
        self.shapes.push(shape.to_vec());
        self.values.push(values);
        self.names.len() - 1
    }

    /// Uniform values in [-bound, bound] (PyTorch's default init of conv and linear layers uses
    /// Kaiming-uniform with a = sqrt(5), i.e. bound = 1 / sqrt(fan_in), for weights and biases).
    pub fn uniform(&mut self, n: usize, bound: f64) -> Vec<f32> {
        (0..n)
            .map(|_| self.rng.uniform(-bound, bound) as f32)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn build(self, engine: &Engine) -> Result<ParamSet> {
        let specs: Vec<(&str, &[usize], &[f32])> = self
            .names
            .iter()
            .zip(&self.shapes)
            .zip(&self.values)
            .map(|((n, s), v)| (n.as_str(), s.as_slice(), v.as_slice()))
            .collect();
        let set = ParamSet::from_values(engine, &specs)?;
        set.set_requires_grad(true);
        Ok(set)
    }
}
