//! The two augmented views of a loaded batch: one upload of its images, then each view drawn on
//! the GPU with the batch's own augmentation parameters.

use super::augment::{augment_batch, upload_images, AugmentConfig};
use super::loader::HostBatch;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Uploads a loader batch once and computes both views from that one buffer. The views use the
/// parameters the loader drew (`host.view_params`); where a view has none, they are drawn here
/// from `rng` (and without one, that is an error: training always takes the loader's).
pub fn two_views(
    engine: &Engine,
    host: &HostBatch,
    cfg1: &AugmentConfig,
    cfg2: &AugmentConfig,
    out_size: usize,
    mut rng: Option<&mut Rng>,
) -> Result<(Tensor, Tensor)> {
    let n = host.indices.len();
    if host.pixels.len() != n * host.h * host.w * 3 {
        return Err(Error::Shape(format!(
            "two_views: {} bytes for {n} images of {}x{}",
            host.pixels.len(),
            host.h,
            host.w
        )));
    }
    let images = upload_images(engine, &host.pixels)?;
    let mut views = Vec::with_capacity(2);
    for (v, cfg) in [cfg1, cfg2].into_iter().enumerate() {
        let drawn;
        let params = match host.view_params[v].len() {
            len if len == n => &host.view_params[v],
            0 => {
                let Some(rng) = rng.as_deref_mut() else {
                    return Err(Error::Invalid(format!(
                        "two_views: view {} has no augmentation parameters and no generator to draw them",
                        v + 1
                    )));
                };
                drawn = (0..n)
                    .map(|_| cfg.sample(rng, host.h, host.w))
                    .collect::<Vec<_>>();
                &drawn
            }
            len => {
                return Err(Error::Shape(format!(
                    "two_views: view {} has parameters for {len} of {n} images",
                    v + 1
                )))
            }
        };
        views.push(augment_batch(
            engine, &images, host.h, host.w, params, cfg, out_size,
        )?);
    }
    let second = views.pop().expect("two views");
    let first = views.pop().expect("two views");
    Ok((first, second))
}
