//! The uniform window through which the direct convolution kernels read their weight when they
//! run with `WEIGHT_UNIFORM` (shaders/conv2d.wgsl, `weight`). On llvmpipe (Mesa 22) a load from a
//! uniform buffer is a plain gather, while a load from a storage buffer whose address varies
//! across lanes is a bounds-checked branch per lane: the forward read its weight through storage
//! about 1.5x slower (measured on ResNet-18's width-1/4 layers, 2-core llvmpipe).
//!
//! A window is `WINDOW_BYTES` of a buffer: the weight's own buffer where it holds such a window
//! around the rows a launch needs (the parameter arena always does), else a pooled copy of those
//! rows. The kernel maps a flat weight index `i` to `i + shift` (wrapping) in the window.

use crate::engine::{BufSlice, Engine, UNIFORM_WINDOW_BYTES as WINDOW_BYTES};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

const WINDOW_FLOATS: usize = (WINDOW_BYTES / 4) as usize;

/// Floats of a window a launch may fill: a window starts on the adapter's uniform offset
/// alignment, so up to one alignment's worth before the first needed float is lost.
fn usable_floats(engine: &Engine) -> usize {
    let align = engine.gpu().limits.min_uniform_buffer_offset_alignment as usize / 4;
    WINDOW_FLOATS - align.max(1)
}

/// How many weight rows of `row` floats one window holds, or `None` where windows cannot serve
/// this weight: the adapter's uniform bindings are smaller than a window, or a row does not fit.
pub(crate) fn rows_per_window(engine: &Engine, row: usize) -> Option<usize> {
    if engine.gpu().limits.max_uniform_buffer_binding_size < WINDOW_BYTES || row == 0 {
        return None;
    }
    let rows = usable_floats(engine) / row;
    (rows > 0).then_some(rows)
}

/// A window over floats `[start, start + len)` of a weight.
pub(crate) enum WeightWindow {
    /// `WINDOW_BYTES` of the weight's own buffer from this byte offset.
    InPlace { offset: u64, shift: u32 },
    /// A copy of the floats at the start of this tensor's buffer.
    Copy { tensor: Tensor, shift: u32 },
}

impl WeightWindow {
    /// Records the copy where one is needed (callers keep `len` within [`rows_per_window`]).
    pub(crate) fn new(engine: &Engine, w: &Tensor, start: usize, len: usize) -> Result<Self> {
        if start + len > w.numel() || len > usable_floats(engine) {
            return Err(Error::Shape(format!(
                "conv2d weight window [{start}, {}) of a weight of {} floats",
                start + len,
                w.numel()
            )));
        }
        let align = (engine.gpu().limits.min_uniform_buffer_offset_alignment as u64).max(4);
        let (first, end) = (
            w.byte_offset() + 4 * start as u64,
            w.byte_offset() + 4 * (start + len) as u64,
        );
        let size = w.buffer().size();
        if size >= WINDOW_BYTES {
            // As late as the buffer allows, but starting at or before the first float needed.
            let offset = (first / align * align).min((size - WINDOW_BYTES) / align * align);
            if offset <= first && end <= offset + WINDOW_BYTES {
                let shift = ((w.byte_offset() as i64 - offset as i64) / 4) as u32;
                return Ok(WeightWindow::InPlace { offset, shift });
            }
        }
        let tensor = Tensor::empty(engine, &[WINDOW_FLOATS], DType::F32)?;
        engine.copy(
            w.buffer(),
            first,
            tensor.buffer(),
            tensor.byte_offset(),
            4 * len as u64,
        );
        let shift = (-(start as i64)) as u32;
        Ok(WeightWindow::Copy { tensor, shift })
    }

    /// The binding: `w` is the weight this window was made for.
    pub(crate) fn slice<'a>(&'a self, w: &'a Tensor) -> BufSlice<'a> {
        let (buffer, offset) = match self {
            WeightWindow::InPlace { offset, .. } => (w.buffer(), *offset),
            WeightWindow::Copy { tensor, .. } => (tensor.buffer(), tensor.byte_offset()),
        };
        BufSlice {
            buffer,
            offset,
            size: WINDOW_BYTES,
        }
    }

    /// Added (wrapping) to a flat weight index to find it in the window.
    pub(crate) fn shift(&self) -> u32 {
        match self {
            WeightWindow::InPlace { shift, .. } | WeightWindow::Copy { shift, .. } => *shift,
        }
    }
}
