//! The tape: a list of nodes, each knowing its output, its inputs and how to send a gradient back.
//!
//! Ops call `Engine::record` after computing their output; `Engine::backward` walks the tape in
//! reverse, gives every input its gradient (summing where a tensor feeds several ops) and frees the
//! tape, so a training loop's memory stays flat. Backward closures run under no-grad: the tape holds
//! first-order gradients only.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::{Tensor, TensorId};
use std::collections::HashMap;

/// Gradient of the output in, gradients of the inputs out (`None` where an input needs none).
pub type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>>>;

pub(crate) struct Node {
    out: TensorId,
    inputs: Vec<Tensor>,
    backward: BackwardFn,
}

/// Gradients of the leaves that require them, by tensor id.
#[derive(Default)]
pub struct Grads {
    map: HashMap<TensorId, Tensor>,
}

impl Grads {
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.map.get(&t.id())
    }
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.map.remove(&t.id())
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Adds another set of gradients into this one (gradient accumulation over micro-batches).
    pub fn accumulate(&mut self, other: Grads) -> Result<()> {
        for (id, g) in other.map {
            let sum = match self.map.remove(&id) {
                Some(prev) => {
                    let _ng = g.engine().no_grad();
                    ops::add(&prev, &g)?
                }
                None => g,
            };
            self.map.insert(id, sum);
        }
        Ok(())
    }
}

impl Engine {
    /// Records how to differentiate `out` with respect to `inputs`, if gradients are on and any
    /// input needs one. Marks `out` as requiring a gradient in that case.
    pub fn record(
        &self,
        out: &Tensor,
        inputs: &[&Tensor],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + 'static,
    ) {
        if !self.grad_enabled() || !inputs.iter().any(|t| t.requires_grad()) {
            return;
        }
        out.set_requires_grad(true);
        self.0.tape.borrow_mut().push(Node {
            out: out.id(),
            inputs: inputs.iter().map(|t| (*t).clone()).collect(),
            backward: Box::new(backward),
        });
    }

    /// Differentiates a one-element `loss` with respect to every leaf that requires a gradient.
    pub fn backward(&self, loss: &Tensor) -> Result<Grads> {
        if loss.numel() != 1 {
            return Err(Error::Shape(format!(
                "backward needs a one-element loss, got {loss:?}; use backward_from for others"
            )));
        }
        let seed = Tensor::full(self, 1.0, loss.shape())?;
        self.backward_from(loss, seed)
    }

    /// Differentiates `out` given its upstream gradient `dout` (same shape).
    pub fn backward_from(&self, out: &Tensor, dout: Tensor) -> Result<Grads> {
        if out.shape() != dout.shape() {
            return Err(Error::Shape(format!(
                "gradient {dout:?} does not match {out:?}"
            )));
        }
        let tape = std::mem::take(&mut *self.0.tape.borrow_mut());
        let _ng = self.no_grad();
        let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
        grads.insert(out.id(), dout);
        let mut produced: std::collections::HashSet<TensorId> = Default::default();
        for node in tape.into_iter().rev() {
            produced.insert(node.out);
            let Some(g) = grads.remove(&node.out) else {
                continue;
            };
            let input_grads = (node.backward)(&g)?;
            if input_grads.len() != node.inputs.len() {
                return Err(Error::Invalid(format!(
                    "a backward function returned {} gradients for {} inputs",
                    input_grads.len(),
                    node.inputs.len()
                )));
            }
            for (input, ig) in node.inputs.iter().zip(input_grads) {
                let Some(ig) = ig else { continue };
                if !input.requires_grad() {
                    continue;
                }
                if ig.shape() != input.shape() {
                    return Err(Error::Shape(format!(
                        "gradient {ig:?} does not match its input {input:?}"
                    )));
                }
                let sum = match grads.remove(&input.id()) {
                    Some(prev) => ops::add(&prev, &ig)?,
                    None => ig,
                };
                grads.insert(input.id(), sum);
            }
        }
        // What is left belongs to leaves (tensors no recorded op produced).
        grads.retain(|id, _| !produced.contains(id));
        Ok(Grads { map: grads })
    }
}
