//! `byol train` and `byol eval`: flags to a [`TrainConfig`], a run directory, and the loop.

use crate::error::{Error, Result};
use crate::train::{self, TrainConfig};
use crate::{Engine, EngineOptions};
use clap::Args;
use std::path::PathBuf;

/// Flags of `byol train`; every default is `TrainConfig::default()`'s.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// synthetic | stl10:DIR | cifar10:DIR | idx:DIR | fashion-mnist:DIR | folder:DIR
    #[arg(long, default_value = "synthetic")]
    pub dataset: String,
    /// Side of the square views fed to the network.
    #[arg(long, default_value_t = 32)]
    pub image_size: usize,
    /// byol | contrastive | moco | simsiam | simclr
    #[arg(long, default_value = "byol")]
    pub method: String,
    /// imagenet (7x7/2 + max pool, 96px and up) | cifar (3x3/1, 32px)
    #[arg(long, default_value = "cifar")]
    pub stem: String,
    /// ResNet-18 widths 64-128-256-512 times this.
    #[arg(long, default_value_t = 0.25)]
    pub width_mult: f64,
    /// batch | group-ws | none
    #[arg(long, default_value = "batch")]
    pub encoder_norm: String,
    /// Norm in the projection MLP: batch | layer | group | group:G | none
    #[arg(long, default_value = "batch")]
    pub proj_norm: String,
    /// Norm in the prediction MLP: batch | layer | group | group:G | none
    #[arg(long, default_value = "batch")]
    pub pred_norm: String,
    #[arg(long, default_value_t = 512)]
    pub proj_hidden: usize,
    #[arg(long, default_value_t = 128)]
    pub proj_out: usize,
    #[arg(long, default_value_t = 512)]
    pub pred_hidden: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// sgd | lars
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// Base learning rate (scaled by batch/256 unless --no-lr-scale).
    #[arg(long, default_value_t = 0.2)]
    pub lr: f64,
    #[arg(long)]
    pub no_lr_scale: bool,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f32,
    #[arg(long, default_value_t = 0.0)]
    pub warmup_epochs: f64,
    /// Keep the learning rate constant after warmup (no cosine decay).
    #[arg(long)]
    pub no_cosine: bool,
    /// EMA base decay of the target network (default 0.999 for moco, as MoCo v2; 0.99 otherwise).
    #[arg(long)]
    pub tau: Option<f64>,
    /// Keep tau constant instead of BYOL's schedule rising to 1.
    #[arg(long)]
    pub no_tau_schedule: bool,
    /// InfoNCE / NT-Xent temperature (default 0.5 for simclr, as SimCLR; 0.2 otherwise).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Queue length of MoCo (and of `contrastive` with --contrastive-queue).
    #[arg(long, default_value_t = 4096)]
    pub queue_size: usize,
    /// `contrastive` takes its negatives from a MoCo-style queue of past targets (the seed's
    /// setup) instead of the other images of the batch.
    #[arg(long)]
    pub contrastive_queue: bool,
    /// byol | seed | none
    #[arg(long, default_value = "byol")]
    pub augment: String,
    /// Linear evaluation every N epochs (0: never).
    #[arg(long, default_value_t = 1)]
    pub eval_every: usize,
    /// At most this many labeled images for linear evaluation (0: all).
    #[arg(long, default_value_t = 2000)]
    pub eval_images: usize,
    /// half-test (the seed's) | train-test
    #[arg(long, default_value = "half-test")]
    pub eval_protocol: String,
    /// Cap on steps per epoch (0: the whole dataset).
    #[arg(long, default_value_t = 0)]
    pub max_steps_per_epoch: usize,
    #[arg(long, default_value_t = 5)]
    pub log_every: usize,
    /// Run directory (default runs/METHOD-DATASET-TIME).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its checkpoint (its config.json gives the flags;
    /// only --epochs may be raised).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    pub fn to_config(&self) -> TrainConfig {
        TrainConfig {
            dataset: self.dataset.clone(),
            image_size: self.image_size,
            method: self.method.clone(),
            stem: self.stem.clone(),
            width_mult: self.width_mult,
            encoder_norm: self.encoder_norm.clone(),
            proj_norm: self.proj_norm.clone(),
            pred_norm: self.pred_norm.clone(),
            proj_hidden: self.proj_hidden,
            proj_out: self.proj_out,
            pred_hidden: self.pred_hidden,
            batch_size: self.batch_size,
            epochs: self.epochs,
            seed: self.seed,
            optimizer: self.optimizer.clone(),
            lr: self.lr,
            lr_scale: !self.no_lr_scale,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            warmup_epochs: self.warmup_epochs,
            cosine: !self.no_cosine,
            tau: self
                .tau
                .unwrap_or(if self.method == "moco" { 0.999 } else { 0.99 }),
            tau_schedule: !self.no_tau_schedule,
            temperature: self.temperature.unwrap_or(if self.method == "simclr" {
                0.5
            } else {
                0.2
            }),
            queue_size: self.queue_size,
            contrastive_queue: self.contrastive_queue,
            augment: self.augment.clone(),
            eval_every: self.eval_every,
            eval_images: self.eval_images,
            eval_protocol: self.eval_protocol.clone(),
            max_steps_per_epoch: self.max_steps_per_epoch,
            log_every: self.log_every,
        }
    }
}

/// Printed when the chosen adapter runs on the CPU, where a default-sized run takes hours.
pub const SOFTWARE_ADAPTER_NOTE: &str =
    "note: this is a software (CPU) adapter, some hundred times \
slower than a GPU; for a first look try --width-mult 0.125 --image-size 16 --batch-size 32 \
--max-steps-per-epoch 20 (or pick a GPU with --adapter; `byol adapters` lists them)";

fn default_run_dir(cfg: &TrainConfig) -> PathBuf {
    let data: String = cfg.dataset.split(':').next().unwrap_or("data").to_string();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{}-{}-{}", cfg.method, data, secs))
}

pub fn run(args: &TrainArgs, adapter: Option<&str>, epochs_given: bool) -> Result<()> {
    let engine = Engine::new(EngineOptions {
        adapter: adapter.map(str::to_owned),
        ..Default::default()
    })?;
    let (cfg, out, resume) = match &args.resume {
        Some(dir) => {
            let path = dir.join("config.json");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Io(format!("--resume: cannot read {}: {e}", path.display())))?;
            let mut cfg: TrainConfig = serde_json::from_str(&text).map_err(|e| {
                Error::Io(format!(
                    "--resume: {} is not a byol config: {e}",
                    path.display()
                ))
            })?;
            if epochs_given {
                cfg.epochs = args.epochs;
            }
            (cfg, dir.clone(), true)
        }
        None => {
            let cfg = args.to_config();
            let out = args.out.clone().unwrap_or_else(|| default_run_dir(&cfg));
            if out.join("checkpoint.bin").exists() {
                return Err(Error::Invalid(format!(
                    "{} already holds a run; continue it with --resume {} or choose another --out",
                    out.display(),
                    out.display()
                )));
            }
            (cfg, out, false)
        }
    };
    if !args.quiet {
        eprintln!("adapter: {}", engine.adapter_name());
        if engine.gpu().is_software() {
            eprintln!("{SOFTWARE_ADAPTER_NOTE}");
        }
        eprintln!(
            "run: {} ({} on {}, {}px, batch {})",
            out.display(),
            cfg.method,
            cfg.dataset,
            cfg.image_size,
            cfg.batch_size
        );
    }
    let metrics = train::train(&engine, &cfg, &out, resume, !args.quiet)?;
    if let Some(last) = metrics.last() {
        println!(
            "done: {} epochs, loss {:.4}, cos+ {:.4}, cos- {:.4}{}; metrics in {}",
            last.epoch,
            last.loss,
            last.cos_pos,
            last.cos_neg,
            last.linear_accuracy
                .map(|a| format!(", linear accuracy {:.2}%", a * 100.0))
                .unwrap_or_default(),
            out.join("metrics.jsonl").display()
        );
    }
    Ok(())
}

/// Flags of `byol eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// The run directory (holds config.json and checkpoint.bin).
    #[arg(long)]
    pub run: PathBuf,
    /// half-test (the seed's) | train-test; default: the run's.
    #[arg(long)]
    pub eval_protocol: Option<String>,
    /// At most this many labeled images (0: all); default: the run's.
    #[arg(long)]
    pub eval_images: Option<usize>,
    /// Evaluate the same architecture freshly initialized instead (the "Random" baseline).
    #[arg(long)]
    pub random: bool,
}

pub fn eval(args: &EvalArgs, adapter: Option<&str>) -> Result<()> {
    let engine = Engine::new(EngineOptions {
        adapter: adapter.map(str::to_owned),
        ..Default::default()
    })?;
    let path = args.run.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
    let mut cfg: TrainConfig = serde_json::from_str(&text)
        .map_err(|e| Error::Io(format!("{} is not a byol config: {e}", path.display())))?;
    if let Some(p) = &args.eval_protocol {
        cfg.eval_protocol = p.clone();
    }
    if let Some(n) = args.eval_images {
        cfg.eval_images = n;
    }
    cfg.validate()?;
    let e = train::evaluate_run(&engine, &args.run, &cfg, args.random)?;
    let r = &e.probe;
    println!(
        "linear accuracy {:.2}% ({} protocol, fit accuracy {:.2}%, {} iterations, final loss {:.4}); embedding effective rank {:.1}",
        r.accuracy * 100.0,
        cfg.eval_protocol,
        r.fit_accuracy * 100.0,
        r.iterations,
        r.final_loss,
        e.embedding_rank
    );
    Ok(())
}
