//! A parameter arena: all parameters of a network in ONE buffer.
//!
//! Each parameter is a tensor over its own sub-range of the arena, starting at an offset aligned to
//! the adapter's storage offset alignment, so ops bind it like any other tensor (from its element
//! 0). Whole-network updates (EMA, SGD, LARS in `ops::optim`) then run one dispatch over the arena
//! instead of one per parameter. The gaps between parameters are zero and belong to no parameter.
//!
//! A trainable arena has a second buffer of the same layout, its gradient arena: backward writes
//! each parameter's gradient straight into its range there (`Tensor::grad_slot`), so optimizers
//! read all gradients in place, with no copies.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::tensor::{numel, DType, Tensor};

/// Named parameter tensors sharing one arena buffer. Cloning is cheap (handles, not data).
#[derive(Clone)]
pub struct ParamSet {
    flat: Tensor,
    /// Gradients, laid out like `flat` (trainable arenas only).
    grad: Option<Tensor>,
    names: Vec<String>,
    tensors: Vec<Tensor>,
    offsets: Vec<usize>,
}

/// Element offsets of each parameter in an arena, and the arena's length.
fn layout(engine: &Engine, shapes: &[&[usize]]) -> (Vec<usize>, usize) {
    let align = (engine.gpu().limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    let mut offsets = Vec::with_capacity(shapes.len());
    let mut end = 0usize;
    for shape in shapes {
        let start = end.div_ceil(align) * align;
        offsets.push(start);
        end = start + numel(shape);
    }
    (offsets, end.max(1))
}

impl ParamSet {
    /// Uploads `(name, shape, values)` parameters into one arena. The tensors require gradients.
    pub fn from_values(engine: &Engine, params: &[(&str, &[usize], &[f32])]) -> Result<ParamSet> {
        for (i, (name, shape, values)) in params.iter().enumerate() {
            if numel(shape) == 0 {
                return Err(Error::Shape(format!(
                    "parameter {name:?} has no elements (shape {shape:?})"
                )));
            }
            if values.len() != numel(shape) {
                return Err(Error::Shape(format!(
                    "parameter {name:?}: {} values do not fill shape {shape:?}",
                    values.len()
                )));
            }
            if params[..i].iter().any(|(n, _, _)| n == name) {
                return Err(Error::Invalid(format!(
                    "parameter name {name:?} is used twice"
                )));
            }
        }
        let shapes: Vec<&[usize]> = params.iter().map(|(_, s, _)| *s).collect();
        let (offsets, len) = layout(engine, &shapes);
        let mut data = vec![0.0f32; len];
        for ((_, _, values), &off) in params.iter().zip(&offsets) {
            data[off..off + values.len()].copy_from_slice(values);
        }
        let flat = Tensor::from_slice(engine, &data, &[len])?;
        let names = params.iter().map(|(n, _, _)| n.to_string()).collect();
        Self::over(flat, names, &shapes, offsets, true)
    }

    /// An arena of zeros with the given `(name, shape)` parameters.
    pub fn zeros(engine: &Engine, specs: &[(&str, &[usize])]) -> Result<ParamSet> {
        let zeros: Vec<Vec<f32>> = specs.iter().map(|(_, s)| vec![0.0; numel(s)]).collect();
        let params: Vec<(&str, &[usize], &[f32])> = specs
            .iter()
            .zip(&zeros)
            .map(|((n, s), z)| (*n, *s, z.as_slice()))
            .collect();
        Self::from_values(engine, &params)
    }

    fn over(
        flat: Tensor,
        names: Vec<String>,
        shapes: &[&[usize]],
        offsets: Vec<usize>,
        requires_grad: bool,
    ) -> Result<ParamSet> {
        // Zeros, so the gaps (and a parameter that never got a gradient) hold no garbage.
        let grad = if requires_grad {
            Some(Tensor::zeros(flat.engine(), flat.shape())?)
        } else {
            None
        };
        let tensors = shapes
            .iter()
            .zip(&offsets)
            .map(|(shape, &off)| {
                let t = flat.sub_tensor(off, shape)?;
                t.set_requires_grad(requires_grad);
                if let Some(g) = &grad {
                    t.set_grad_slot(g.sub_tensor(off, shape)?)?;
                }
                Ok(t)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ParamSet {
            flat,
            grad,
            names,
            tensors,
            offsets,
        })
    }

    /// A new arena with the same layout and a GPU copy of these values (e.g. a BYOL target network
    /// made from the online one). Recorded, not submitted.
    pub fn duplicate(&self, requires_grad: bool) -> Result<ParamSet> {
        let flat = Tensor::empty(self.engine(), self.flat.shape(), DType::F32)?;
        let shapes: Vec<&[usize]> = self.tensors.iter().map(|t| t.shape()).collect();
        let copy = Self::over(
            flat,
            self.names.clone(),
            &shapes,
            self.offsets.clone(),
            requires_grad,
        )?;
        copy.copy_from(self)?;
        Ok(copy)
    }

    /// Records a GPU copy of `other`'s values into this arena (same layout required).
    pub fn copy_from(&self, other: &ParamSet) -> Result<()> {
        self.check_same_layout(other)?;
        if self.flat.shares_storage(&other.flat) {
            return Ok(());
        }
        let (dst, src) = (&self.flat, &other.flat);
        self.engine().copy(
            src.buffer(),
            src.elem_offset() as u64 * 4,
            dst.buffer(),
            dst.elem_offset() as u64 * 4,
            dst.numel() as u64 * 4,
        );
        Ok(())
    }

    /// Errors unless both sets have the same parameters at the same offsets.
    pub fn check_same_layout(&self, other: &ParamSet) -> Result<()> {
        let same = self.flat.numel() == other.flat.numel()
            && self.offsets == other.offsets
            && self
                .tensors
                .iter()
                .zip(&other.tensors)
                .all(|(a, b)| a.shape() == b.shape());
        if !same {
            return Err(Error::Shape(format!(
                "parameter sets differ in layout ({} parameters in {} elements vs {} in {})",
                self.len(),
                self.flat.numel(),
                other.len(),
                other.flat.numel()
            )));
        }
        Ok(())
    }

    /// The whole arena as a 1-D tensor (parameters and the zero gaps between them).
    pub fn flat(&self) -> &Tensor {
        &self.flat
    }

    /// The gradient arena (same layout as `flat()`), where backward leaves every parameter's
    /// gradient; `None` for an arena made without gradients.
    pub fn grad_flat(&self) -> Option<&Tensor> {
        self.grad.as_ref()
    }

    /// The parameter tensors, in the order they were given.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Element offset of each parameter inside `flat()`.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(&self.tensors[i])
    }

    /// `(name, tensor)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names.iter().map(String::as_str).zip(&self.tensors)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn engine(&self) -> &Engine {
        self.flat.engine()
    }

    /// Turns gradients on or off for every parameter (off for a target network).
    pub fn set_requires_grad(&self, on: bool) {
        for t in &self.tensors {
            t.set_requires_grad(on);
        }
    }
}
