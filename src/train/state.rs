//! What a checkpoint holds for a training run, and putting it back.

use super::checkpoint;
use super::{TrainConfig, Trainer};
use crate::error::{Error, Result};
use crate::ssl::SslModel;
use serde_json::json;
use std::path::Path;

/// Saves everything needed to continue the trainer's run after `epoch` epochs.
pub fn save(path: &Path, cfg: &TrainConfig, trainer: &Trainer, epoch: usize) -> Result<()> {
    let (model, optimizers, step) = (trainer.model(), trainer.optimizers(), trainer.step_count());
    let mut tensors: Vec<(String, Vec<f32>)> = Vec::new();
    for (i, p) in model.trainable().into_iter().enumerate() {
        tensors.push((format!("trainable{i}"), p.flat().to_vec()?));
    }
    if let Some(t) = model.target_params() {
        tensors.push(("target".into(), t.flat().to_vec()?));
    }
    for (i, s) in model.norm_states().into_iter().enumerate() {
        tensors.push((format!("norm{i}.running_mean"), s.running_mean.to_vec()?));
        tensors.push((format!("norm{i}.running_var"), s.running_var.to_vec()?));
    }
    let mut present = Vec::new();
    for (j, opt) in optimizers.iter().enumerate() {
        let bufs = opt.momentum_buffers()?;
        present.push(bufs.iter().map(Option::is_some).collect::<Vec<_>>());
        for (k, b) in bufs.iter().enumerate() {
            if let Some(b) = b {
                tensors.push((format!("opt{j}.momentum{k}"), b.to_vec()?));
            }
        }
    }
    let mut queue_pos = 0;
    if let Some((q, pos)) = model.queue() {
        tensors.push(("queue".into(), q.to_vec()?));
        queue_pos = pos;
    }
    let state = json!({
        "config": cfg,
        "epoch": epoch,
        "step": step,
        "queue_pos": queue_pos,
        "momentum_present": present,
    });
    checkpoint::save(path, state, &tensors)
}

/// Fields that may change when a run is resumed (they do not change what was trained).
fn comparable(cfg: &TrainConfig) -> TrainConfig {
    TrainConfig {
        epochs: 0,
        eval_every: 0,
        eval_images: 0,
        eval_protocol: super::config::EvalProtocol::HalfTest,
        log_every: 0,
        ..cfg.clone()
    }
}

/// Loads `path` into the trainer (model, optimizers, step); returns the epochs it had done. The
/// run's config must match the checkpoint's.
pub fn restore(path: &Path, cfg: &TrainConfig, trainer: &mut Trainer) -> Result<usize> {
    let (model, optimizers, step) = trainer.state_mut();
    let (epoch, steps) = restore_into(path, cfg, model, optimizers)?;
    *step = steps;
    Ok(epoch)
}

/// Loads only the networks of `path` (for evaluation).
pub fn restore_model(path: &Path, cfg: &TrainConfig, model: &mut SslModel) -> Result<()> {
    restore_into(path, cfg, model, &mut []).map(|_| ())
}

/// Returns (epoch, step) of the checkpoint.
fn restore_into(
    path: &Path,
    cfg: &TrainConfig,
    model: &mut SslModel,
    optimizers: &mut [crate::optim::Optimizer],
) -> Result<(usize, usize)> {
    if !path.exists() {
        return Err(Error::Io(format!(
            "--resume: no checkpoint at {}",
            path.display()
        )));
    }
    let (state, tensors) = checkpoint::load(path)?;
    let saved: TrainConfig = serde_json::from_value(state["config"].clone())
        .map_err(|e| Error::Io(format!("{}: bad config in checkpoint: {e}", path.display())))?;
    if comparable(&saved) != comparable(cfg) {
        return Err(Error::Invalid(format!(
            "--resume: the checkpoint in {} was trained with a different configuration; \
             resume with the same flags (only --epochs and evaluation flags may change)",
            path.display()
        )));
    }
    let mut by_name: std::collections::HashMap<String, Vec<f32>> = tensors.into_iter().collect();
    let mut take = |name: &str| {
        by_name
            .remove(name)
            .ok_or_else(|| Error::Io(format!("{}: checkpoint lacks {name}", path.display())))
    };
    for (i, p) in model.trainable().into_iter().enumerate() {
        p.flat().write(&take(&format!("trainable{i}"))?)?;
    }
    if let Some(t) = model.target_params() {
        t.flat().write(&take("target")?)?;
    }
    for (i, s) in model.norm_states().into_iter().enumerate() {
        s.running_mean
            .write(&take(&format!("norm{i}.running_mean"))?)?;
        s.running_var
            .write(&take(&format!("norm{i}.running_var"))?)?;
    }
    let present: Vec<Vec<bool>> = serde_json::from_value(state["momentum_present"].clone())
        .map_err(|e| Error::Io(format!("{}: bad optimizer state: {e}", path.display())))?;
    for (j, opt) in optimizers.iter_mut().enumerate() {
        let flags = present.get(j).cloned().unwrap_or_default();
        for (k, has) in flags.into_iter().enumerate() {
            let values = if has {
                Some(take(&format!("opt{j}.momentum{k}"))?)
            } else {
                None
            };
            opt.set_momentum_buffer(k, values.as_deref())?;
        }
    }
    if let Some((q, _)) = model.queue() {
        q.write(&take("queue")?)?;
        model.set_queue_pos(state["queue_pos"].as_u64().unwrap_or(0) as usize);
    }
    let field = |name: &str| {
        state[name]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| Error::Io(format!("{}: checkpoint lacks {name}", path.display())))
    };
    Ok((field("epoch")?, field("step")?))
}
