//! The tape: the list of recorded nodes, each knowing its output, its inputs and how to send a
//! gradient back, and the gradient mode (`no_grad` scopes record nothing).
//!
//! Ops call [`record`] after computing their output; [`crate::autograd`] walks the tape backward.
//! The engine records dispatches and knows nothing of this: each engine's tape is kept here, by
//! engine id, on the thread that uses the engine (an `Engine` is single-threaded).

use crate::engine::Engine;
use crate::error::Result;
use crate::tensor::{Tensor, TensorId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;

/// Gradient of the output in, gradients of the inputs out (`None` where an input needs none).
pub type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>>>;

pub(crate) struct Node {
    pub(crate) out: TensorId,
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) backward: BackwardFn,
}

#[derive(Default)]
struct TapeState {
    nodes: Vec<Node>,
    /// Gradient mode is off while this is above 0.
    no_grad_depth: usize,
}

thread_local! {
    // Never dropped: nodes left on a tape at thread exit hold tensors (and so engines), and wgpu
    // must not release GPU objects from a thread-local destructor.
    static TAPES: ManuallyDrop<RefCell<HashMap<u64, TapeState>>> =
        ManuallyDrop::new(RefCell::new(HashMap::new()));
}

fn with_state<R>(engine: &Engine, f: impl FnOnce(&mut TapeState) -> R) -> R {
    TAPES.with(|t| f(t.borrow_mut().entry(engine.id()).or_default()))
}

/// Records how to differentiate `out` with respect to `inputs`, if gradients are on and any input
/// needs one. Marks `out` as requiring a gradient in that case.
pub fn record(
    out: &Tensor,
    inputs: &[&Tensor],
    backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + 'static,
) {
    let engine = out.engine();
    if !engine.grad_enabled() || !inputs.iter().any(|t| t.requires_grad()) {
        return;
    }
    out.set_requires_grad(true);
    let node = Node {
        out: out.id(),
        inputs: inputs.iter().map(|t| (*t).clone()).collect(),
        backward: Box::new(backward),
    };
    with_state(engine, |s| s.nodes.push(node));
}

/// Takes every recorded node out of `engine`'s tape, oldest first.
pub(crate) fn take(engine: &Engine) -> Vec<Node> {
    with_state(engine, |s| std::mem::take(&mut s.nodes))
}

impl Engine {
    /// Whether ops are recorded on the tape now.
    pub fn grad_enabled(&self) -> bool {
        with_state(self, |s| s.no_grad_depth == 0)
    }

    /// Ops run while the guard lives are not recorded on the tape.
    pub fn no_grad(&self) -> NoGradGuard {
        with_state(self, |s| s.no_grad_depth += 1);
        NoGradGuard {
            engine: self.clone(),
        }
    }

    /// Drops every recorded node (for a forward pass that will not be differentiated).
    pub fn clear_tape(&self) {
        // Dropped outside the tape's borrow: a node's tensors return buffers to the pool.
        drop(take(self));
    }

    pub fn tape_len(&self) -> usize {
        with_state(self, |s| s.nodes.len())
    }
}

/// Restores the previous gradient mode when dropped.
pub struct NoGradGuard {
    engine: Engine,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        with_state(&self.engine, |s| s.no_grad_depth -= 1);
    }
}
