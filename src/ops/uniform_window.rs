//! Uniform windows: 64 KiB of a buffer that a kernel reads an operand through instead of a storage
//! binding (the direct convolutions' weight, shaders/conv2d.wgsl `weight`). On llvmpipe (Mesa 22)
//! a load from a uniform buffer is a plain gather, while a load from a storage buffer whose
//! address varies across lanes is a bounds-checked branch per lane: the convolution forward read
//! its weight through storage 1.4-1.8x slower (measured on ResNet-18's width-1/4 layers, 2-core
//! llvmpipe). It is no rule: a matmul that read A through a window (16 x 8 blocks per invocation)
//! ran 3x slower than the vec4 storage kernel (unfolded layer 1, 4.1 against 12.3 GFLOP/s) and was
//! left out, so each use is measured.
//!
//! A window is `WINDOW_BYTES` of the operand's own buffer where that buffer holds such a window
//! around the floats a launch needs (the parameter arena always does), else of a pooled copy of
//! them. The kernel maps the operand's flat index `i` to `i + shift` (wrapping) in the window.

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

/// How many rows of `row` floats one window holds, or `None` where windows cannot serve them: the
/// adapter's uniform bindings are smaller than a window, or a row does not fit.
pub(crate) fn rows_per_window(engine: &Engine, row: usize) -> Option<usize> {
    if engine.gpu().limits.max_uniform_buffer_binding_size < WINDOW_BYTES || row == 0 {
        return None;
    }
    let rows = usable_floats(engine) / row;
    (rows > 0).then_some(rows)
}

/// A window over floats `[start, start + len)` of an operand.
pub(crate) enum UniformWindow {
    /// `WINDOW_BYTES` of the operand's own buffer from this byte offset.
    InPlace { offset: u64, shift: u32 },
    /// A copy of the floats at the start of this tensor's buffer.
    Copy { tensor: Tensor, shift: u32 },
}

impl UniformWindow {
    /// A window over floats `[start, start + len)` of the operand bound as `src` (whose flat
    /// index 0 is the binding's first float); records the copy where one is needed (callers keep
    /// `len` within [`rows_per_window`]).
    pub(crate) fn new(engine: &Engine, src: BufSlice, start: usize, len: usize) -> Result<Self> {
        if 4 * (start + len) as u64 > src.size || len > usable_floats(engine) {
            return Err(Error::Shape(format!(
                "uniform window [{start}, {}) of an operand of {} floats",
                start + len,
                src.size / 4
            )));
        }
        let align = (engine.gpu().limits.min_uniform_buffer_offset_alignment as u64).max(4);
        let (first, end) = (
            src.offset + 4 * start as u64,
            src.offset + 4 * (start + len) as u64,
        );
        let size = src.buffer.size();
        if size >= WINDOW_BYTES {
            // As late as the buffer allows, but starting at or before the first float needed.
            let offset = (first / align * align).min((size - WINDOW_BYTES) / align * align);
            if offset <= first && end <= offset + WINDOW_BYTES {
                let shift = ((src.offset as i64 - offset as i64) / 4) as u32;
                return Ok(UniformWindow::InPlace { offset, shift });
            }
        }
        let tensor = Tensor::empty(engine, &[WINDOW_FLOATS], DType::F32)?;
        engine.copy(
            src.buffer,
            first,
            tensor.buffer(),
            tensor.byte_offset(),
            4 * len as u64,
        );
        let shift = (-(start as i64)) as u32;
        Ok(UniformWindow::Copy { tensor, shift })
    }

    /// The binding: `src` is the operand's buffer this window was made for.
    pub(crate) fn slice<'a>(&'a self, src: &'a wgpu::Buffer) -> BufSlice<'a> {
        let (buffer, offset) = match self {
            UniformWindow::InPlace { offset, .. } => (src, *offset),
            UniformWindow::Copy { tensor, .. } => (tensor.buffer(), tensor.byte_offset()),
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
            UniformWindow::InPlace { shift, .. } | UniformWindow::Copy { shift, .. } => *shift,
        }
    }
}
