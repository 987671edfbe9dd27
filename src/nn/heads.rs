//! The MLP heads of BYOL and its relatives: Linear -> Norm -> ReLU -> Linear, with the norm chosen
//! per head (batch, layer, group, none): the switch the batch-norm study turns.

use super::layers::{Linear, Norm, NormKind};
use super::ParamBuilder;
use crate::engine::Engine;
use crate::error::Result;
use crate::params::ParamSet;
use crate::tensor::Tensor;

pub struct Mlp {
    fc1: Linear,
    norm: Norm,
    fc2: Linear,
}

impl Mlp {
    pub fn new(
        b: &mut ParamBuilder,
        engine: &Engine,
        name: &str,
        dims: [usize; 3],
        norm: NormKind,
    ) -> Result<Mlp> {
        let [d_in, hidden, d_out] = dims;
        let fc1 = Linear::new(b, &format!("{name}.fc1"), d_in, hidden);
        let norm = Norm::new(b, engine, &format!("{name}.norm"), norm, hidden)?;
        let fc2 = Linear::new(b, &format!("{name}.fc2"), hidden, d_out);
        Ok(Mlp { fc1, norm, fc2 })
    }

    pub fn norm(&self) -> &Norm {
        &self.norm
    }

    pub fn forward(&self, p: &ParamSet, x: &Tensor, training: bool) -> Result<Tensor> {
        let h = self
            .norm
            .forward_relu(p, &self.fc1.forward(p, x)?, training)?;
        self.fc2.forward(p, &h)
    }
}
