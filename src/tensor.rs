//! GPU tensors: a shape, an element type and a pooled buffer.
//!
//! Tensors are immutable values from the tape's point of view: every op makes a new one. Reshape
//! shares the buffer. A tensor may also start at an element offset inside a shared buffer (the
//! parameters of a `ParamSet` live in one arena); bindings, uploads and downloads add that offset.
//! A tensor's buffer returns to the pool when its last handle drops.

use crate::engine::{BufSlice, Engine};
use crate::error::{Error, Result};
use std::cell::{Cell, OnceCell};
use std::rc::Rc;

pub type TensorId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
}

/// The GPU memory behind one or more tensors (reshapes share it).
pub(crate) struct Storage {
    pub(crate) buffer: Option<wgpu::Buffer>,
    engine: Engine,
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.engine.release(b);
        }
    }
}

pub(crate) struct TensorData {
    id: TensorId,
    shape: Vec<usize>,
    dtype: DType,
    storage: Rc<Storage>,
    /// Where this tensor starts inside its storage, in elements.
    offset: usize,
    requires_grad: Cell<bool>,
    /// For a parameter: its range of the gradient arena, where backward leaves its gradient.
    grad_slot: OnceCell<Tensor>,
    engine: Engine,
}

#[derive(Clone)]
pub struct Tensor(Rc<TensorData>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor#{}{:?}{:?}",
            self.id(),
            self.shape(),
            self.dtype()
        )
    }
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor whose contents are undefined until an op writes them (NaN under `poison_outputs`).
    pub fn empty(engine: &Engine, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = numel(shape) as u64 * 4;
        let buffer = engine.alloc(bytes)?;
        Ok(Self::wrap(engine, shape, dtype, buffer))
    }

    fn wrap(engine: &Engine, shape: &[usize], dtype: DType, buffer: wgpu::Buffer) -> Tensor {
        Tensor(Rc::new(TensorData {
            id: engine.next_id(),
            shape: shape.to_vec(),
            dtype,
            storage: Rc::new(Storage {
                buffer: Some(buffer),
                engine: engine.clone(),
            }),
            offset: 0,
            requires_grad: Cell::new(false),
            grad_slot: OnceCell::new(),
            engine: engine.clone(),
        }))
    }

    /// Uploads f32 values. The copy happens before the next submitted commands.
    pub fn from_slice(engine: &Engine, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        let buffer = engine.0.pool_acquire(data.len() as u64 * 4)?;
        engine.write_fresh(&buffer, bytemuck::cast_slice(data));
        Ok(Self::wrap(engine, shape, DType::F32, buffer))
    }

    /// Uploads u32 values (labels, indices).
    pub fn from_u32(engine: &Engine, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        let buffer = engine.0.pool_acquire(data.len() as u64 * 4)?;
        engine.write_fresh(&buffer, bytemuck::cast_slice(data));
        Ok(Self::wrap(engine, shape, DType::U32, buffer))
    }

    /// A trainable leaf: gradients flow into it.
    pub fn param(engine: &Engine, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        let t = Self::from_slice(engine, data, shape)?;
        t.set_requires_grad(true);
        Ok(t)
    }

    pub fn full(engine: &Engine, value: f32, shape: &[usize]) -> Result<Tensor> {
        let buffer = engine.0.pool_acquire(numel(shape) as u64 * 4)?;
        engine.fill_raw(&buffer, value.to_bits())?;
        Ok(Self::wrap(engine, shape, DType::F32, buffer))
    }

    pub fn zeros(engine: &Engine, shape: &[usize]) -> Result<Tensor> {
        Self::full(engine, 0.0, shape)
    }

    /// Overwrites the contents in place (not recorded on the tape). Commands recorded before this
    /// call still see the old values.
    pub fn write(&self, data: &[f32]) -> Result<()> {
        check_len(data.len(), &self.0.shape)?;
        self.0.engine.write(
            self.buffer(),
            self.byte_offset(),
            bytemuck::cast_slice(data),
        )
    }

    /// Downloads the values; waits for the GPU.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        if self.dtype() != DType::F32 {
            return Err(Error::Invalid(format!("{self:?} is not f32")));
        }
        let bytes =
            self.0
                .engine
                .read(self.buffer(), self.byte_offset(), self.numel() as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        if self.dtype() != DType::U32 {
            return Err(Error::Invalid(format!("{self:?} is not u32")));
        }
        let bytes =
            self.0
                .engine
                .read(self.buffer(), self.byte_offset(), self.numel() as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::Shape(format!("item() of {self:?}")));
        }
        Ok(self.to_vec()?[0])
    }

    pub fn id(&self) -> TensorId {
        self.0.id
    }
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    pub fn dims(&self) -> usize {
        self.0.shape.len()
    }
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.get()
    }
    pub fn set_requires_grad(&self, on: bool) {
        self.0.requires_grad.set(on);
    }

    /// Where backward writes this tensor's gradient (a parameter's range of its arena's gradient
    /// buffer), if it has such a place.
    pub fn grad_slot(&self) -> Option<&Tensor> {
        self.0.grad_slot.get()
    }

    /// Gives this tensor a fixed place for its gradient (once; same shape, distinct storage).
    pub(crate) fn set_grad_slot(&self, slot: Tensor) -> Result<()> {
        if slot.shape() != self.shape() || slot.dtype() != self.dtype() || slot.shares_storage(self)
        {
            return Err(Error::Shape(format!(
                "gradient slot {slot:?} does not fit {self:?}"
            )));
        }
        self.0
            .grad_slot
            .set(slot)
            .map_err(|_| Error::Invalid(format!("{self:?} already has a gradient slot")))
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.0
            .storage
            .buffer
            .as_ref()
            .expect("storage buffer present until drop")
    }

    /// The whole tensor as a binding.
    pub fn slice(&self) -> BufSlice<'_> {
        self.slice_elems(0, self.numel())
    }

    /// `len` elements from `start`, as a binding (callers keep `start` aligned to the adapter's
    /// storage offset alignment; see `Engine::max_binding_words`).
    pub fn slice_elems(&self, start: usize, len: usize) -> BufSlice<'_> {
        BufSlice {
            buffer: self.buffer(),
            offset: self.byte_offset() + start as u64 * 4,
            size: (len.max(1) as u64) * 4,
        }
    }

    /// Same data, new shape; no copy. Not recorded: use `ops::reshape` inside differentiated code.
    pub(crate) fn view(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::Shape(format!("cannot view {self:?} as {shape:?}")));
        }
        Ok(Tensor(Rc::new(TensorData {
            id: self.0.engine.next_id(),
            shape: shape.to_vec(),
            dtype: self.0.dtype,
            storage: self.0.storage.clone(),
            offset: self.0.offset,
            requires_grad: Cell::new(false),
            grad_slot: OnceCell::new(),
            engine: self.0.engine.clone(),
        })))
    }

    /// A tensor of `shape` over this one's elements `start..start + numel(shape)`, sharing the
    /// storage (no copy). Callers keep `start` aligned to the storage offset alignment so the new
    /// tensor can be bound from its first element.
    pub(crate) fn sub_tensor(&self, start: usize, shape: &[usize]) -> Result<Tensor> {
        if start + numel(shape) > self.numel() {
            return Err(Error::Shape(format!(
                "elements {start}..{} of {self:?} are out of range",
                start + numel(shape)
            )));
        }
        Ok(Tensor(Rc::new(TensorData {
            id: self.0.engine.next_id(),
            shape: shape.to_vec(),
            dtype: self.0.dtype,
            storage: self.0.storage.clone(),
            offset: self.0.offset + start,
            requires_grad: Cell::new(false),
            grad_slot: OnceCell::new(),
            engine: self.0.engine.clone(),
        })))
    }

    /// Where this tensor starts inside its buffer, in elements.
    pub(crate) fn elem_offset(&self) -> usize {
        self.0.offset
    }

    pub(crate) fn byte_offset(&self) -> u64 {
        self.0.offset as u64 * 4
    }

    /// Whether both tensors live in the same buffer (a kernel must not bind one buffer both
    /// read-only and writable).
    pub(crate) fn shares_storage(&self, other: &Tensor) -> bool {
        Rc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// A tensor of the same shape and type with fresh storage (NaN-poisoned under test options).
    pub fn empty_like(&self) -> Result<Tensor> {
        Tensor::empty(&self.0.engine, &self.0.shape, self.0.dtype)
    }
}

fn check_len(len: usize, shape: &[usize]) -> Result<()> {
    if len != numel(shape) {
        return Err(Error::Shape(format!(
            "{len} values do not fill shape {shape:?} ({} elements)",
            numel(shape)
        )));
    }
    Ok(())
}
