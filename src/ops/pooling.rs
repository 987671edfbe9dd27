//! Max pooling (shaders/pooling.wgsl) with argmax routing in backward, and global average pooling
//! (a mean over the spatial axis, built from the reduction kernels).

use super::conv2d::conv_out_size;
use super::{check_f32, check_loop_budget, mean_axis, reshape, window};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::tape;
use crate::tensor::{DType, Tensor};

#[derive(Clone, Copy)]
struct PoolGeometry {
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl PoolGeometry {
    fn params(&self, planes: usize, x_base: u32, y_base: u32) -> PoolParams {
        PoolParams {
            planes: planes as u32,
            h: self.h as u32,
            w: self.w as u32,
            oh: self.oh as u32,
            ow: self.ow as u32,
            k: self.k as u32,
            stride: self.stride as u32,
            pad: self.pad as u32,
            x_base,
            y_base,
        }
    }

    /// Runs `f(first_plane, planes)` over groups of planes whose input and output fit one binding.
    fn for_plane_groups(
        &self,
        engine: &Engine,
        mut f: impl FnMut(usize, usize) -> Result<()>,
    ) -> Result<()> {
        let max = engine.max_binding_words() as usize - 64;
        let per = (max / (self.h * self.w).max(self.oh * self.ow)).min(self.planes);
        if per == 0 {
            return Err(Error::Shape(
                "max_pool2d: one plane exceeds the binding limit".into(),
            ));
        }
        let mut p0 = 0;
        while p0 < self.planes {
            let n = per.min(self.planes - p0);
            f(p0, n)?;
            p0 += n;
        }
        Ok(())
    }
}

crate::kernels::kernel_params! {
    /// shaders/pooling.wgsl: `planes` maps of h x w pooled to oh x ow by k x k windows.
    pub struct PoolParams {
        planes: u32,
        h: u32,
        w: u32,
        oh: u32,
        ow: u32,
        k: u32,
        stride: u32,
        pad: u32,
        x_base: u32,
        y_base: u32,
    }
}

/// Max pooling of x [N, C, H, W] with a k×k window, stride and zero padding (padding never wins,
/// as PyTorch); output [N, C, OH, OW] with OH = floor((H + 2·pad − k) / stride) + 1.
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize, pad: usize) -> Result<Tensor> {
    check_f32("max_pool2d", &[x])?;
    let &[n, c, h, w] = x.shape() else {
        return Err(Error::Shape(format!(
            "max_pool2d needs [N, C, H, W], got {:?}",
            x.shape()
        )));
    };
    if k == 0 || stride == 0 || 2 * pad > k || h + 2 * pad < k || w + 2 * pad < k {
        return Err(Error::Shape(format!(
            "max_pool2d: window {k}, stride {stride}, padding {pad} do not fit input {:?} \
             (padding must be at most half the window)",
            x.shape()
        )));
    }
    // The forward loops over the window's rows and, in each, its columns (the backward over the
    // outputs whose window covers an input: no more).
    check_loop_budget(
        x.engine(),
        "max_pool2d",
        (k * k + k) as u64,
        "use a smaller window there",
    )?;
    let g = PoolGeometry {
        planes: n * c,
        h,
        w,
        oh: conv_out_size(h, k, stride, pad),
        ow: conv_out_size(w, k, stride, pad),
        k,
        stride,
        pad,
    };
    let engine = x.engine();
    let y = Tensor::empty(engine, &[n, c, g.oh, g.ow], DType::F32)?;
    let argmax = Tensor::empty(engine, &[n, c, g.oh, g.ow], DType::U32)?;
    let (hw, ohw) = (h * w, g.oh * g.ow);
    g.for_plane_groups(engine, |p0, planes| {
        let (xs, xb) = window(engine, x, p0 * hw, planes * hw);
        let (ys, yb) = window(engine, &y, p0 * ohw, planes * ohw);
        let (am, _) = window(engine, &argmax, p0 * ohw, planes * ohw);
        let params = g.params(planes, xb, yb);
        engine.dispatch_1d(
            "pooling",
            "max_forward",
            &[],
            &params,
            &[xs, ys, am],
            (planes * ohw) as u64,
        )
    })?;
    let in_shape = x.shape().to_vec();
    tape::record(&y, &[x], move |dy| {
        let engine = dy.engine();
        let dx = Tensor::empty(engine, &in_shape, DType::F32)?;
        g.for_plane_groups(engine, |p0, planes| {
            let (dys, yb) = window(engine, dy, p0 * ohw, planes * ohw);
            let (am, _) = window(engine, &argmax, p0 * ohw, planes * ohw);
            let (dxs, xb) = window(engine, &dx, p0 * hw, planes * hw);
            let params = g.params(planes, xb, yb);
            engine.dispatch_1d(
                "pooling",
                "max_backward",
                &[],
                &params,
                &[dys, am, dxs],
                (planes * hw) as u64,
            )
        })?;
        Ok(vec![Some(dx)])
    });
    Ok(y)
}

/// Mean over the spatial axes: [N, C, H, W] -> [N, C].
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let &[n, c, h, w] = x.shape() else {
        return Err(Error::Shape(format!(
            "global_avg_pool needs [N, C, H, W], got {:?}",
            x.shape()
        )));
    };
    mean_axis(&reshape(x, &[n, c, h * w])?, 2)
}
