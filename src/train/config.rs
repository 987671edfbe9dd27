//! Everything that defines a training run; saved as `config.json` in the run directory. The
//! `byol train` flags, their defaults (`TrainConfig::default()`) and `config.json` are this one
//! struct; its choices are typed enums written as the same words the flags take.

use crate::data::augment::AugmentConfig;
use crate::error::{Error, Result};
use crate::nn::{EncoderNorm, NormKind, ResNetConfig, Stem};
use crate::ssl::{Method, ModelConfig};
use serde::{Deserialize, Serialize};

/// The update rule of the trainable parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum and weight decay, as PyTorch's.
    Sgd,
    /// BYOL's LARS: trust 0.001, biases and norm parameters excluded.
    Lars,
}

/// Which labeled images the linear probe fits and scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum EvalProtocol {
    /// Fit on the first half of the test split, score on the second (the seed's protocol).
    HalfTest,
    /// Fit on the train split, score on the test split.
    TrainTest,
}

/// The pair of augmentations that makes the two views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum AugmentPreset {
    /// BYOL's asymmetric pair of views.
    Byol,
    /// The study's (the seed's) symmetric views.
    Seed,
    /// No augmentation (both views are the image).
    None,
}

macro_rules! display_as_value {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let v = clap::ValueEnum::to_possible_value(self).expect("no skipped variants");
                f.write_str(v.get_name())
            }
        }
    )*};
}
display_as_value!(OptimizerKind, EvalProtocol, AugmentPreset);

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub dataset: String,
    pub image_size: usize,
    pub method: Method,
    pub stem: Stem,
    pub width_mult: f64,
    pub encoder_norm: EncoderNorm,
    pub proj_norm: NormKind,
    pub pred_norm: NormKind,
    pub proj_hidden: usize,
    pub proj_out: usize,
    pub pred_hidden: usize,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
    pub optimizer: OptimizerKind,
    /// Base learning rate; multiplied by batch_size / 256 when `lr_scale` is on (as BYOL).
    pub lr: f64,
    pub lr_scale: bool,
    pub momentum: f32,
    pub weight_decay: f32,
    pub warmup_epochs: f64,
    pub cosine: bool,
    pub tau: f64,
    pub tau_schedule: bool,
    pub temperature: f32,
    pub queue_size: usize,
    /// The contrastive method's negatives come from a queue of past targets (the seed's
    /// contrastive row) rather than from the batch.
    #[serde(default)]
    pub contrastive_queue: bool,
    pub augment: AugmentPreset,
    /// Linear evaluation every this many epochs (0: never; the last epoch always when > 0).
    pub eval_every: usize,
    /// At most this many labeled images for linear evaluation (0: all).
    pub eval_images: usize,
    pub eval_protocol: EvalProtocol,
    /// Cap on steps per epoch (0: the whole dataset), for quick runs.
    pub max_steps_per_epoch: usize,
    /// Progress line every this many steps.
    pub log_every: usize,
    /// A safetensors file (torchvision names) whose encoder the online and target networks start
    /// from instead of a random initialization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<String>,
    /// Processes of a data-parallel run (`mpirun -np R`; set from the run, not a flag). Each
    /// trains on its 1/R of every global batch of `batch_size` images.
    #[serde(default = "one_rank")]
    pub ranks: usize,
    /// Batch norm over the global batch, all-reduced across ranks (`--sync-bn`), rather than over
    /// each rank's shard.
    #[serde(default)]
    pub sync_bn: bool,
    /// Ghost batch norm (`--bn-groups G`): training-mode batch norm normalizes each of G equal
    /// slices of a process's batch with the slice's own statistics. One process with G = R sees
    /// what R ranks without `--sync-bn` see.
    #[serde(default = "one_group")]
    pub bn_groups: usize,
}

fn one_group() -> usize {
    1
}

fn one_rank() -> usize {
    1
}

impl Default for TrainConfig {
    /// BYOL on the built-in dataset, sized to finish in minutes on a laptop GPU.
    fn default() -> Self {
        TrainConfig {
            dataset: "synthetic".into(),
            image_size: 32,
            method: Method::Byol,
            stem: Stem::Cifar,
            width_mult: 0.25,
            encoder_norm: EncoderNorm::Batch,
            proj_norm: NormKind::Batch,
            pred_norm: NormKind::Batch,
            proj_hidden: 512,
            proj_out: 128,
            pred_hidden: 512,
            batch_size: 128,
            epochs: 5,
            seed: 0,
            optimizer: OptimizerKind::Sgd,
            lr: 0.2,
            lr_scale: true,
            momentum: 0.9,
            weight_decay: 1e-4,
            warmup_epochs: 0.0,
            cosine: true,
            tau: 0.99,
            tau_schedule: true,
            temperature: 0.2,
            queue_size: 4096,
            contrastive_queue: false,
            augment: AugmentPreset::Byol,
            eval_every: 1,
            eval_images: 0,
            eval_protocol: EvalProtocol::HalfTest,
            max_steps_per_epoch: 0,
            log_every: 5,
            init_from: None,
            ranks: 1,
            sync_bn: false,
            bn_groups: 1,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        self.model_config()?;
        self.augmentations()?;
        let bad = |m: String| Err(Error::Invalid(m));
        if self.image_size < 8 {
            return bad(format!(
                "--image-size {} is too small (at least 8)",
                self.image_size
            ));
        }
        if self.batch_size < 2 {
            return bad(
                "--batch-size must be at least 2 (batch norm and the negatives need pairs)".into(),
            );
        }
        if self.ranks == 0 {
            return bad("a run has at least one rank".into());
        }
        if self.ranks > 1
            && (!self.batch_size.is_multiple_of(self.ranks) || self.batch_size / self.ranks < 2)
        {
            return bad(format!(
                "--batch-size {} is the global batch: it must split evenly over the {} ranks, \
                 at least 2 images each",
                self.batch_size, self.ranks
            ));
        }
        let per_process = self.batch_size / self.ranks;
        if self.bn_groups == 0
            || !per_process.is_multiple_of(self.bn_groups)
            || per_process / self.bn_groups < 2
        {
            return bad(format!(
                "--bn-groups {} must split each process's batch of {per_process} into equal \
                 groups of at least 2 images",
                self.bn_groups
            ));
        }
        if self.bn_groups > 1 && self.sync_bn {
            return bad(
                "--bn-groups (batch norm over slices of the batch) and --sync-bn (over the \
                 global batch) exclude each other"
                    .into(),
            );
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("--lr {} must be positive", self.lr));
        }
        if !(0.0..=1.0).contains(&self.tau) {
            return bad(format!("--tau {} must be in [0, 1]", self.tau));
        }
        for (flag, v) in [
            ("--proj-hidden", self.proj_hidden),
            ("--proj-out", self.proj_out),
            ("--pred-hidden", self.pred_hidden),
        ] {
            if v == 0 {
                return bad(format!("{flag} must be at least 1"));
            }
        }
        let uses_queue = self.method == Method::Moco
            || (self.method == Method::Contrastive && self.contrastive_queue);
        if uses_queue && self.queue_size == 0 {
            return bad("--queue-size must be at least 1 for a method with a queue".into());
        }
        if !(self.width_mult > 0.0 && self.width_mult.is_finite()) {
            return bad(format!("--width-mult {} must be positive", self.width_mult));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "--temperature {} must be positive",
                self.temperature
            ));
        }
        if !self.warmup_epochs.is_finite() {
            return bad(format!(
                "--warmup-epochs {} must be finite",
                self.warmup_epochs
            ));
        }
        if self.warmup_epochs < 0.0
            || !(self.momentum >= 0.0 && self.momentum < 1.0)
            || self.weight_decay < 0.0
        {
            return bad(
                "warmup, momentum (in [0, 1)) and weight decay must not be negative".into(),
            );
        }
        Ok(())
    }

    pub fn model_config(&self) -> Result<ModelConfig> {
        Ok(ModelConfig {
            method: self.method,
            encoder: ResNetConfig {
                stem: self.stem,
                width_mult: self.width_mult,
                norm: self.encoder_norm,
            },
            proj_hidden: self.proj_hidden,
            proj_out: self.proj_out,
            pred_hidden: self.pred_hidden,
            proj_norm: self.proj_norm,
            pred_norm: self.pred_norm,
            temperature: self.temperature,
            queue_size: self.queue_size.max(1),
            contrastive_queue: self.contrastive_queue,
            seed: self.seed,
        })
    }

    pub fn augmentations(&self) -> Result<[AugmentConfig; 2]> {
        let views = match self.augment {
            AugmentPreset::Byol => AugmentConfig::byol(),
            AugmentPreset::Seed => AugmentConfig::seed_preset(),
            AugmentPreset::None => [AugmentConfig::none(), AugmentConfig::none()],
        };
        for v in &views {
            v.validate()?;
        }
        Ok(views)
    }

    pub fn scaled_lr(&self) -> f64 {
        if self.lr_scale {
            self.lr * self.batch_size as f64 / 256.0
        } else {
            self.lr
        }
    }

    pub fn steps_per_epoch(&self, batches: usize) -> usize {
        if self.max_steps_per_epoch > 0 {
            batches.min(self.max_steps_per_epoch)
        } else {
            batches
        }
    }
}

/// The size a run takes on a software (CPU) adapter when no size flag is given: the default
/// config would take about two hours on a 2-core machine; this one finishes there in minutes and
/// learns (see README, "The two commands"). GPU runs keep `TrainConfig::default()`.
pub struct CpuSize {
    pub image_size: usize,
    pub width_mult: f64,
    pub batch_size: usize,
    pub epochs: usize,
}

pub const CPU_SIZE: CpuSize = CpuSize {
    image_size: 16,
    width_mult: 0.125,
    batch_size: 32,
    epochs: 3,
};

/// One field [`TrainConfig::apply_cpu_size`] replaced: its flag, the value it had, the new one.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeChange {
    pub flag: String,
    pub was: String,
    pub now: String,
}

impl TrainConfig {
    /// Replaces each size field the command line did not set (`given(field)` is false) by
    /// [`CPU_SIZE`]'s and returns what changed (empty when every size flag was given). Flags
    /// always win: a given one is never replaced.
    pub fn apply_cpu_size(&mut self, given: impl Fn(&str) -> bool) -> Vec<SizeChange> {
        let c = &CPU_SIZE;
        let mut changed = Vec::new();
        macro_rules! size {
            ($($field:ident),*) => {$(
                if !given(stringify!($field)) && self.$field != c.$field {
                    changed.push(SizeChange {
                        flag: format!("--{}", stringify!($field).replace('_', "-")),
                        was: self.$field.to_string(),
                        now: c.$field.to_string(),
                    });
                    self.$field = c.$field;
                }
            )*};
        }
        // The heads keep their GPU size: at batch 32 they cost little, and 512 -> 128 learned
        // more than 256 -> 64 in 3 epochs (58.3% against 52.4%, one run each).
        size!(image_size, width_mult, batch_size, epochs);
        changed
    }
}
