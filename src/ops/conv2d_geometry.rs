//! The geometry of one convolution and the parameter block its kernels take, shared by the
//! direct kernels (conv2d.rs) and the unfolded ones (conv2d_unfold.rs).

use crate::error::{Error, Result};

/// The geometry of one convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub batch: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    pub fn new(
        x_shape: &[usize],
        w_shape: &[usize],
        stride: usize,
        pad: usize,
    ) -> Result<Geometry> {
        let (&[batch, c, h, wd], &[o, c2, kh, kw]) = (x_shape, w_shape) else {
            return Err(Error::Shape(format!(
                "conv2d needs input [N, C, H, W] and weight [O, C, KH, KW], got {x_shape:?} and {w_shape:?}"
            )));
        };
        if c != c2 {
            return Err(Error::Shape(format!(
                "conv2d: input has {c} channels but the weight expects {c2}"
            )));
        }
        if stride == 0 {
            return Err(Error::Invalid("conv2d: stride must be at least 1".into()));
        }
        if h + 2 * pad < kh || wd + 2 * pad < kw || batch == 0 || c == 0 || o == 0 {
            return Err(Error::Shape(format!(
                "conv2d: a {kh}x{kw} kernel with padding {pad} does not fit input {x_shape:?}"
            )));
        }
        Ok(Geometry {
            batch,
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            stride,
            pad,
            oh: (h + 2 * pad - kh) / stride + 1,
            ow: (wd + 2 * pad - kw) / stride + 1,
        })
    }

    pub fn in_per_sample(&self) -> usize {
        self.c * self.h * self.w
    }

    pub fn out_per_sample(&self) -> usize {
        self.o * self.oh * self.ow
    }

    /// The parameter block of a launch over `batch` samples at these offsets; the channel range
    /// and accumulation flag stay 0 (the direct forward and input gradient set them).
    pub fn params(
        &self,
        batch: usize,
        x_base: u32,
        y_base: u32,
        has_bias: bool,
        k_chunk: usize,
        split0: usize,
    ) -> ConvParams {
        ConvParams {
            batch: batch as u32,
            c: self.c as u32,
            h: self.h as u32,
            w: self.w as u32,
            o: self.o as u32,
            kh: self.kh as u32,
            kw: self.kw as u32,
            stride: self.stride as u32,
            pad: self.pad as u32,
            oh: self.oh as u32,
            ow: self.ow as u32,
            x_base,
            y_base,
            has_bias: has_bias as u32,
            k_chunk: k_chunk as u32,
            split0: split0 as u32,
            o_end: self.o as u32,
            ..ConvParams::default()
        }
    }
}

crate::kernels::kernel_params! {
    /// `ConvParams` of shaders/common.wgsl, shared by conv2d.wgsl, conv2d_tiled.wgsl and conv2d_unfold.wgsl.
    pub struct ConvParams {
        batch: u32,
        c: u32,
        h: u32,
        w: u32,
        o: u32,
        kh: u32,
        kw: u32,
        stride: u32,
        pad: u32,
        oh: u32,
        ow: u32,
        /// Element offsets of this launch inside its x / y bindings (batch-split launches).
        x_base: u32,
        y_base: u32,
        has_bias: u32,
        /// backward_weight: pixels per split, and the index of this launch's first split.
        k_chunk: u32,
        split0: u32,
        /// forward / backward_input: the channel range this launch sums, and whether it adds to
        /// the output (later launches of a split channel loop).
        chan_begin: u32,
        chan_end: u32,
        accumulate: u32,
        /// forward: this launch computes output channels [o_begin, o_end).
        o_begin: u32,
        o_end: u32,
        /// With a uniform weight window: added (wrapping) to a flat weight index to find it there.
        w_shift: u32,
        /// backward_weight of conv2d.wgsl: the splits this launch computes.
        splits: u32,
    }
}
