//! The backward pass: `Engine::backward` walks the tape ([`crate::tape`]) in reverse, gives every
//! input its gradient (summing where a tensor feeds several ops) and frees the tape, so a training
//! loop's memory stays flat. A parameter of a trainable arena gets its gradient written straight
//! into its slot of the arena's gradient buffer (its last contribution is added there, as a
//! dispatch), which is where optimizers read it. Backward closures run under no-grad: the tape holds
//! first-order gradients only.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ops;
use crate::ops::elementwise::{add_into, copy_into};
use crate::tape;
use crate::tensor::{Tensor, TensorId};
use std::collections::{HashMap, HashSet};

/// Whether backward leaves `t`'s gradient in a fixed slot (a trainable arena's parameter).
fn has_slot(t: &Tensor) -> bool {
    t.requires_grad() && t.grad_slot().is_some()
}

/// Gradients of the leaves that require them, by tensor id. A parameter's gradient is a view of its
/// arena's gradient buffer: valid until the next backward overwrites it.
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
}

impl Engine {
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
        let tape = tape::take(self);
        let _ng = self.no_grad();
        // How many recorded uses each parameter with a gradient slot has: its last contribution is
        // summed (or copied) straight into the slot, so optimizers read it there without copies.
        let mut uses_left: HashMap<TensorId, usize> = HashMap::new();
        for node in &tape {
            for input in node.inputs.iter().filter(|t| has_slot(t)) {
                *uses_left.entry(input.id()).or_default() += 1;
            }
        }
        let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
        grads.insert(out.id(), dout);
        // Contributions summed so far for slotted parameters that still have uses to come.
        let mut partial: HashMap<TensorId, Tensor> = HashMap::new();
        let mut produced: HashSet<TensorId> = HashSet::new();
        for node in tape.into_iter().rev() {
            produced.insert(node.out);
            let input_grads = match grads.remove(&node.out) {
                Some(g) => (node.backward)(&g)?,
                None => vec![None; node.inputs.len()],
            };
            if input_grads.len() != node.inputs.len() {
                return Err(Error::Invalid(format!(
                    "a backward function returned {} gradients for {} inputs",
                    input_grads.len(),
                    node.inputs.len()
                )));
            }
            for (input, ig) in node.inputs.iter().zip(input_grads) {
                let ig = ig.filter(|_| input.requires_grad());
                if let Some(ig) = &ig {
                    if ig.shape() != input.shape() {
                        return Err(Error::Shape(format!(
                            "gradient {ig:?} does not match its input {input:?}"
                        )));
                    }
                }
                let id = input.id();
                if !has_slot(input) {
                    if let Some(ig) = ig {
                        let sum = match grads.remove(&id) {
                            Some(prev) => ops::add(&prev, &ig)?,
                            None => ig,
                        };
                        grads.insert(id, sum);
                    }
                    continue;
                }
                let left = uses_left.get_mut(&id).expect("slotted inputs are counted");
                *left -= 1;
                let sum = match (partial.remove(&id), ig) {
                    (prev, None) => prev,
                    (None, Some(ig)) if *left == 0 => {
                        let slot = input.grad_slot().expect("has_slot");
                        copy_into(slot, &ig)?;
                        grads.insert(id, slot.clone());
                        None
                    }
                    (Some(prev), Some(ig)) if *left == 0 => {
                        let slot = input.grad_slot().expect("has_slot");
                        add_into(slot, &prev, &ig)?;
                        grads.insert(id, slot.clone());
                        None
                    }
                    (None, Some(ig)) => Some(ig),
                    (Some(prev), Some(ig)) => Some(ops::add(&prev, &ig)?),
                };
                match sum {
                    // The last use gave nothing more: what was summed goes into the slot.
                    Some(sum) if *left == 0 => {
                        let slot = input.grad_slot().expect("has_slot");
                        copy_into(slot, &sum)?;
                        grads.insert(id, slot.clone());
                    }
                    Some(sum) => {
                        partial.insert(id, sum);
                    }
                    None => {}
                }
            }
        }
        // What is left belongs to leaves (tensors no recorded op produced).
        grads.retain(|id, _| !produced.contains(id));
        Ok(Grads { map: grads })
    }
}
