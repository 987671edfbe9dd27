//! The EMA of a target network (BYOL, MoCo): target <- tau * target + (1 - tau) * online, over a
//! whole parameter arena in one dispatch (shaders/optim.wgsl's `ema`). Never on the tape.

use super::kernel_params;
use crate::error::{Error, Result};
use crate::ops::{check_f32, chunks};
use crate::params::ParamSet;
use crate::tensor::Tensor;

/// target <- tau * target + (1 - tau) * online over a whole arena: one dispatch when the arena fits
/// one binding.
pub fn ema_update(target: &ParamSet, online: &ParamSet, tau: f32) -> Result<()> {
    target.check_same_layout(online)?;
    ema_raw(target.flat(), online.flat(), tau)
}

/// The same for loose tensors (e.g. batch-norm running statistics): one dispatch per tensor.
pub fn ema_update_tensors(target: &[Tensor], online: &[Tensor], tau: f32) -> Result<()> {
    if target.len() != online.len() {
        return Err(Error::Shape(format!(
            "ema: {} target tensors for {} online tensors",
            target.len(),
            online.len()
        )));
    }
    for (t, o) in target.iter().zip(online) {
        if t.shape() != o.shape() {
            return Err(Error::Shape(format!("ema: {t:?} does not match {o:?}")));
        }
    }
    for (t, o) in target.iter().zip(online) {
        ema_raw(t, o, tau)?;
    }
    Ok(())
}

fn ema_raw(target: &Tensor, online: &Tensor, tau: f32) -> Result<()> {
    check_f32("ema", &[target, online])?;
    if !(0.0..=1.0).contains(&tau) {
        return Err(Error::Invalid(format!(
            "ema: tau must be in [0, 1], got {tau}"
        )));
    }
    if target.shares_storage(online) {
        return Err(Error::Invalid(
            "ema: target and online share one buffer (a kernel cannot read and write it at once)"
                .into(),
        ));
    }
    let engine = target.engine();
    for (start, len) in chunks(target.numel(), engine.max_binding_words() as usize) {
        engine.dispatch_1d(
            "optim",
            "ema",
            &[],
            &kernel_params(len, 0, [0.0, 0.0, 0.0, 0.0, tau]),
            &[
                target.slice_elems(start, len),
                online.slice_elems(start, len),
            ],
            len as u64,
        )?;
    }
    Ok(())
}
