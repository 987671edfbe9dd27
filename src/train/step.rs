//! The training step, the one that `byol train`, `benches/step.rs` and the whole-step gradient test
//! all run. [`Trainer::step`] is four named calls: forward (the method's loss on two views),
//! backward (a fresh tape walked into fresh gradients: nothing to zero), update (the optimizer of
//! every trainable arena at the scheduled learning rate, then the EMA target at the scheduled tau)
//! and diagnose (collapse statistics accumulated on the GPU). Nothing in a step reads back.

use super::config::{OptimizerKind, TrainConfig};
use super::schedule::{LrSchedule, TauSchedule};
use crate::autograd::Grads;
use crate::engine::Engine;
use crate::error::Result;
use crate::optim::Optimizer;
use crate::ssl::{DiagnosticValues, Diagnostics, SavedDiagnostics, SslModel, StepOutput};
use crate::tensor::Tensor;

/// Which update rule `TrainConfig::optimizer` names.
fn optimizer_for(cfg: &TrainConfig, params: &crate::ParamSet) -> Result<Optimizer> {
    match cfg.optimizer {
        OptimizerKind::Lars => Optimizer::lars(params, cfg.momentum, cfg.weight_decay),
        OptimizerKind::Sgd => Optimizer::sgd(params, cfg.momentum, cfg.weight_decay),
    }
}

/// What one step leaves on the GPU, and the schedule values it used.
pub struct StepResult {
    /// The step's loss, not read back (reading it waits for the GPU).
    pub loss: Tensor,
    pub lr: f64,
    pub tau: f64,
}

/// The model, its optimizers, the schedules and the epoch's diagnostics.
pub struct Trainer {
    engine: Engine,
    model: SslModel,
    optimizers: Vec<Optimizer>,
    lr: LrSchedule,
    tau: TauSchedule,
    diagnostics: Diagnostics,
    /// Steps taken since the run began (schedules are functions of it).
    step: usize,
}

impl Trainer {
    /// A freshly initialized model with `cfg`'s optimizer, its schedules laid over
    /// `steps_per_epoch * cfg.epochs` steps.
    pub fn new(engine: &Engine, cfg: &TrainConfig, steps_per_epoch: usize) -> Result<Trainer> {
        let model = SslModel::new(engine, cfg.model_config()?)?;
        let optimizers = model
            .trainable()
            .into_iter()
            .map(|p| optimizer_for(cfg, p))
            .collect::<Result<_>>()?;
        let total_steps = steps_per_epoch * cfg.epochs;
        // What training-mode batch norm normalizes over (`--bn-groups`, `--sync-bn`).
        engine.set_batch_norm_groups(cfg.bn_groups);
        engine.set_sync_batch_norm(cfg.sync_bn);
        Ok(Trainer {
            engine: engine.clone(),
            model,
            optimizers,
            lr: LrSchedule {
                base: cfg.scaled_lr(),
                warmup_steps: (cfg.warmup_epochs * steps_per_epoch as f64).round() as usize,
                total_steps,
                cosine: cfg.cosine,
            },
            tau: TauSchedule {
                base: cfg.tau,
                total_steps,
                cosine: cfg.tau_schedule,
            },
            diagnostics: Diagnostics::default(),
            step: 0,
        })
    }

    /// One training step on two augmented views of a batch.
    pub fn step(&mut self, view1: &Tensor, view2: &Tensor) -> Result<StepResult> {
        let out = self.forward(view1, view2)?;
        let grads = self.backward(&out)?;
        self.all_reduce_gradients()?;
        let (lr, tau) = self.update(&grads)?;
        drop(grads);
        self.diagnose(&out)?;
        self.step += 1;
        Ok(StepResult {
            loss: out.loss,
            lr,
            tau,
        })
    }

    /// The method's loss (and the normalized outputs the diagnostics compare), recorded on the tape.
    pub fn forward(&mut self, view1: &Tensor, view2: &Tensor) -> Result<StepOutput> {
        self.model.step_loss(view1, view2)
    }

    /// Gradients of the loss for every trainable parameter; frees the tape.
    pub fn backward(&self, out: &StepOutput) -> Result<Grads> {
        out.loss.engine().backward(&out.loss)
    }

    /// Across the ranks of a data-parallel run, every gradient arena becomes the mean of the
    /// ranks' (each rank's loss is the mean over its shard, so the mean of the ranks' gradients
    /// is the gradient of the global batch's loss): one read-back per arena, ONE all-reduce over
    /// all of them, one upload per arena. Nothing happens in a single process.
    pub fn all_reduce_gradients(&self) -> Result<()> {
        let Some(world) = self.engine.collective() else {
            return Ok(());
        };
        let arenas: Vec<&Tensor> = self
            .model
            .trainable()
            .into_iter()
            .filter_map(|p| p.grad_flat())
            .collect();
        crate::dist::mean_in_place(world.as_ref(), &arenas)
    }

    /// Optimizer on every trainable arena, then the EMA target; returns the (lr, tau) used.
    pub fn update(&mut self, grads: &Grads) -> Result<(f64, f64)> {
        let lr = self.lr.at(self.step);
        for opt in &mut self.optimizers {
            opt.step(grads, lr as f32)?;
        }
        let tau = self.tau.at(self.step);
        self.model.update_target(tau as f32)?;
        Ok((lr, tau))
    }

    /// Adds this step's loss and outputs to the epoch's collapse diagnostics (on the GPU).
    pub fn diagnose(&mut self, out: &StepOutput) -> Result<()> {
        self.diagnostics
            .add(&out.loss, &out.online_z, &out.target_z)
    }

    /// Reads the epoch's diagnostics back and starts a fresh epoch.
    pub fn finish_epoch(&mut self) -> Result<DiagnosticValues> {
        std::mem::take(&mut self.diagnostics).finish()
    }

    /// The epoch's diagnostics so far, read back (for a mid-epoch checkpoint).
    pub fn save_diagnostics(&self) -> Result<SavedDiagnostics> {
        self.diagnostics.save()
    }

    /// Continues an epoch's diagnostics from what `save_diagnostics` read.
    pub fn restore_diagnostics(&mut self, engine: &Engine, saved: &SavedDiagnostics) -> Result<()> {
        self.diagnostics = Diagnostics::restore(engine, saved)?;
        Ok(())
    }

    /// The learning rate and tau the next step will use.
    pub fn schedule_now(&self) -> (f64, f64) {
        (self.lr.at(self.step), self.tau.at(self.step))
    }

    pub fn model(&self) -> &SslModel {
        &self.model
    }

    pub fn optimizers(&self) -> &[Optimizer] {
        &self.optimizers
    }

    /// Steps taken since the run began.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// The model, optimizers and step counter, for restoring a checkpoint into.
    pub(crate) fn state_mut(&mut self) -> (&mut SslModel, &mut [Optimizer], &mut usize) {
        (&mut self.model, &mut self.optimizers, &mut self.step)
    }
}
