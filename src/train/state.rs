//! What a checkpoint holds for a training run, and putting it back.

use super::checkpoint;
use super::{TrainConfig, Trainer};
use crate::error::{Error, Result};
use crate::ssl::{SavedDiagnostics, SslModel};
use serde_json::json;
use std::path::Path;

/// Where in its run a checkpoint was written: after `epoch` whole epochs and `in_epoch` steps of
/// the next (0 at an epoch's end), with what that partial epoch had seen and accumulated.
#[derive(Clone, Debug, Default)]
pub struct Position {
    pub epoch: usize,
    pub in_epoch: usize,
    /// Images trained on in the partial epoch, and its seconds so far (for images/s).
    pub seen: usize,
    pub epoch_seconds: f64,
    pub diagnostics: SavedDiagnostics,
}

impl Position {
    /// The end of `epochs` whole epochs.
    pub fn end_of(epochs: usize) -> Position {
        Position {
            epoch: epochs,
            ..Position::default()
        }
    }
}

/// Largest magnitude a healthy run's parameters (and momentum) reach; beyond it the run has
/// diverged even while its loss, squashed by normalization, still looks finite.
const PARAM_LIMIT: f32 = 1e6;
/// The same for batch-norm running variances (activations' squares).
const RUNNING_VAR_LIMIT: f32 = 1e12;

/// Refuses to save a diverged state: a non-finite or exploded parameter, momentum or running
/// statistic ends the run with an error naming it and the likely cause; the last good checkpoint
/// stays on disk.
fn check_sane(
    tensors: &[(String, Vec<f32>)],
    cfg: &TrainConfig,
    at: &Position,
    step: usize,
) -> Result<()> {
    for (name, values) in tensors {
        if name.starts_with("diag.") || name == "queue" {
            continue;
        }
        let limit = if name.ends_with("running_var") {
            RUNNING_VAR_LIMIT
        } else {
            PARAM_LIMIT
        };
        let worst = values.iter().fold(0.0f32, |m, v| {
            if v.is_finite() {
                m.max(v.abs())
            } else {
                f32::INFINITY
            }
        });
        if worst > limit {
            return Err(Error::Diverged(format!(
                "{name} reached {worst:e} (limit {limit:e}) in epoch {} (step {step}): the \
                 learning rate (--lr {}) is likely too high, try a lower one or more \
                 --warmup-epochs; the last good checkpoint is kept",
                at.epoch + usize::from(at.in_epoch > 0),
                cfg.lr
            )));
        }
    }
    Ok(())
}

/// Saves everything needed to continue the trainer's run from `at`.
pub fn save(path: &Path, cfg: &TrainConfig, trainer: &Trainer, at: &Position) -> Result<()> {
    let (model, optimizers, step) = (trainer.model(), trainer.optimizers(), trainer.step_count());
    let epoch = at.epoch;
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
    let d = &at.diagnostics;
    if at.in_epoch > 0 {
        tensors.push(("diag.sums".into(), d.sums.to_vec()));
        tensors.push(("diag.mean".into(), d.last_moments.0.clone()));
        tensors.push(("diag.mean_square".into(), d.last_moments.1.clone()));
        tensors.push(("diag.last_z".into(), d.last_z.0.clone()));
    }
    let state = json!({
        "config": cfg,
        "epoch": epoch,
        "step": step,
        "queue_pos": queue_pos,
        "momentum_present": present,
        "in_epoch": at.in_epoch,
        "seen": at.seen,
        "epoch_seconds": at.epoch_seconds,
        "diag_steps": d.steps,
        "diag_pairs": [d.pairs_pos, d.pairs_neg],
        "diag_last_z_shape": d.last_z.1,
    });
    check_sane(&tensors, cfg, at, step)?;
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
pub fn restore(path: &Path, cfg: &TrainConfig, trainer: &mut Trainer) -> Result<Position> {
    let (model, optimizers, step) = trainer.state_mut();
    let (at, steps) = restore_into(path, cfg, model, optimizers, Purpose::Resume)?;
    *step = steps;
    Ok(at)
}

/// Loads only the networks of `path` (for evaluation and export); returns the run's step count.
pub fn restore_model(path: &Path, cfg: &TrainConfig, model: &mut SslModel) -> Result<usize> {
    restore_into(path, cfg, model, &mut [], Purpose::Evaluate).map(|(_, steps)| steps)
}

/// Why a checkpoint is read, for errors that say what the user was doing.
#[derive(Clone, Copy)]
enum Purpose {
    Resume,
    Evaluate,
}

/// A checkpoint's optimizer state must be one training could have written: one momentum flag per
/// parameter of each optimizer, none set before the first step and all set after it (every
/// parameter of every method gets a gradient each step, and a step initializes its momentum).
/// Anything else is an edited or corrupt file, and resuming it would silently restart momentum.
fn check_optimizer_state(
    path: &Path,
    present: &[Vec<bool>],
    optimizers: &[crate::optim::Optimizer],
    steps: usize,
) -> Result<()> {
    let bad = |m: String| {
        Err(Error::Io(format!(
            "{}: {m}; it cannot be resumed",
            path.display()
        )))
    };
    if present.len() != optimizers.len() {
        return bad(format!(
            "the checkpoint has optimizer state for {} parameter sets, the run {}",
            present.len(),
            optimizers.len()
        ));
    }
    for (j, (flags, opt)) in present.iter().zip(optimizers).enumerate() {
        if flags.len() != opt.len() {
            return bad(format!(
                "optimizer {j} has momentum flags for {} parameters, the run has {}",
                flags.len(),
                opt.len()
            ));
        }
        if let Some(k) = flags.iter().position(|&f| f != (steps > 0)) {
            let state = if steps > 0 { "no momentum" } else { "momentum" };
            return bad(format!(
                "after {steps} steps, parameter {k} of optimizer {j} has {state}, which \
                 training never leaves"
            ));
        }
    }
    Ok(())
}

/// Returns where the checkpoint was written and the run's step count.
fn restore_into(
    path: &Path,
    cfg: &TrainConfig,
    model: &mut SslModel,
    optimizers: &mut [crate::optim::Optimizer],
    purpose: Purpose,
) -> Result<(Position, usize)> {
    let doing = match purpose {
        Purpose::Resume => "--resume",
        Purpose::Evaluate => "eval",
    };
    if !path.exists() {
        return Err(Error::Io(format!(
            "{doing}: no checkpoint at {} (a run writes one at each epoch's end and every \
             --checkpoint-minutes)",
            path.display()
        )));
    }
    let (state, tensors) = checkpoint::load(path)?;
    let saved: TrainConfig = serde_json::from_value(state["config"].clone())
        .map_err(|e| Error::Io(format!("{}: bad config in checkpoint: {e}", path.display())))?;
    if comparable(&saved) != comparable(cfg) {
        let hint = match purpose {
            Purpose::Resume => {
                "resume with the same flags (only --epochs and evaluation flags may change)"
            }
            Purpose::Evaluate => {
                "the run's config.json does not match its checkpoint: was it edited, or copied \
                 from another run?"
            }
        };
        return Err(Error::Invalid(format!(
            "{doing}: the checkpoint in {} was trained with a different configuration; {hint}",
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
    let steps = state["step"]
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| Error::Io(format!("{}: checkpoint lacks step", path.display())))?;
    if matches!(purpose, Purpose::Resume) {
        check_optimizer_state(path, &present, optimizers, steps)?;
    }
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
    // Mid-epoch state (absent in checkpoints written at epoch ends, and in older ones).
    let in_epoch = state["in_epoch"].as_u64().unwrap_or(0) as usize;
    let mut at = Position::end_of(field("epoch")?);
    if in_epoch > 0 {
        let bad = |what: &str| Error::Io(format!("{}: bad mid-epoch {what}", path.display()));
        let sums = take("diag.sums")?;
        let sums: [f32; 3] = sums.try_into().map_err(|_| bad("sums"))?;
        let pairs: Vec<f64> =
            serde_json::from_value(state["diag_pairs"].clone()).map_err(|_| bad("pair counts"))?;
        let [pairs_pos, pairs_neg] = pairs[..] else {
            return Err(bad("pair counts"));
        };
        let z_shape: Vec<usize> = serde_json::from_value(state["diag_last_z_shape"].clone())
            .map_err(|_| bad("output shape"))?;
        let last_z = take("diag.last_z")?;
        if last_z.len() != z_shape.iter().product::<usize>() {
            return Err(bad("outputs"));
        }
        at = Position {
            in_epoch,
            seen: field("seen")?,
            epoch_seconds: state["epoch_seconds"].as_f64().unwrap_or(0.0),
            diagnostics: SavedDiagnostics {
                steps: field("diag_steps")?,
                pairs_pos,
                pairs_neg,
                sums,
                last_moments: (take("diag.mean")?, take("diag.mean_square")?),
                last_z: (last_z, z_shape),
            },
            ..at
        };
    }
    Ok((at, steps))
}
