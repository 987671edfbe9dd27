//! Everything that defines a training run; saved as `config.json` in the run directory.

use crate::data::augment::AugmentConfig;
use crate::error::{Error, Result};
use crate::nn::{EncoderNorm, NormKind, ResNetConfig, Stem};
use crate::ssl::{Method, ModelConfig};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub dataset: String,
    pub image_size: usize,
    pub method: String,
    pub stem: String,
    pub width_mult: f64,
    pub encoder_norm: String,
    pub proj_norm: String,
    pub pred_norm: String,
    pub proj_hidden: usize,
    pub proj_out: usize,
    pub pred_hidden: usize,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
    pub optimizer: String,
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
    /// byol (BYOL's two asymmetric views), seed (the study's), or none.
    pub augment: String,
    /// Linear evaluation every this many epochs (0: never; the last epoch always when > 0).
    pub eval_every: usize,
    /// At most this many labeled images for linear evaluation (0: all).
    pub eval_images: usize,
    /// half-test: fit on the first half of the test split, score on the second (the seed's
    /// protocol); train-test: fit on the train split, score on the test split.
    pub eval_protocol: String,
    /// Cap on steps per epoch (0: the whole dataset), for quick runs.
    pub max_steps_per_epoch: usize,
    /// Progress line every this many steps.
    pub log_every: usize,
}

impl Default for TrainConfig {
    /// BYOL on the built-in dataset, sized to finish in minutes on a laptop GPU.
    fn default() -> Self {
        TrainConfig {
            dataset: "synthetic".into(),
            image_size: 32,
            method: "byol".into(),
            stem: "cifar".into(),
            width_mult: 0.25,
            encoder_norm: "batch".into(),
            proj_norm: "batch".into(),
            pred_norm: "batch".into(),
            proj_hidden: 512,
            proj_out: 128,
            pred_hidden: 512,
            batch_size: 128,
            epochs: 5,
            seed: 0,
            optimizer: "sgd".into(),
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
            augment: "byol".into(),
            eval_every: 1,
            eval_images: 2000,
            eval_protocol: "half-test".into(),
            max_steps_per_epoch: 0,
            log_every: 5,
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
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("--lr {} must be positive", self.lr));
        }
        if !(0.0..=1.0).contains(&self.tau) {
            return bad(format!("--tau {} must be in [0, 1]", self.tau));
        }
        if !matches!(self.optimizer.as_str(), "sgd" | "lars") {
            return bad(format!(
                "unknown optimizer {:?}: use sgd or lars",
                self.optimizer
            ));
        }
        if !matches!(self.eval_protocol.as_str(), "half-test" | "train-test") {
            return bad(format!(
                "unknown eval protocol {:?}: use half-test or train-test",
                self.eval_protocol
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
            method: Method::parse(&self.method)?,
            encoder: ResNetConfig {
                stem: Stem::parse(&self.stem)?,
                width_mult: self.width_mult,
                norm: EncoderNorm::parse(&self.encoder_norm)?,
            },
            proj_hidden: self.proj_hidden.max(1),
            proj_out: self.proj_out.max(1),
            pred_hidden: self.pred_hidden.max(1),
            proj_norm: NormKind::parse(&self.proj_norm)?,
            pred_norm: NormKind::parse(&self.pred_norm)?,
            temperature: self.temperature,
            queue_size: self.queue_size.max(1),
            contrastive_queue: self.contrastive_queue,
            seed: self.seed,
        })
    }

    pub fn augmentations(&self) -> Result<[AugmentConfig; 2]> {
        let views = match self.augment.as_str() {
            "byol" => AugmentConfig::byol(),
            "seed" => AugmentConfig::seed_preset(),
            "none" => [AugmentConfig::none(), AugmentConfig::none()],
            other => {
                return Err(Error::Invalid(format!(
                    "unknown augmentation {other:?}: use byol, seed or none"
                )))
            }
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
