//! `byol train` and `byol eval`: flags to a [`TrainConfig`], a run directory, and the loop.

use crate::engine::{Collective, Distributed};
use crate::error::{Error, Result};
use crate::nn::{EncoderNorm, NormKind, Stem};
use crate::ssl::Method;
use crate::train::config::{AugmentPreset, EvalProtocol, OptimizerKind, SizeChange};
use crate::train::RunControl;
use crate::train::{self, TrainConfig};
use clap::Args;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The one set of defaults: every flag's default is `TrainConfig::default()`'s.
fn d() -> TrainConfig {
    TrainConfig::default()
}

/// Flags of `byol train`; each maps to the `TrainConfig` (and `config.json`) field of its name.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    #[arg(long, default_value_t = d().dataset, help = crate::data::spec::SPEC_FORMS)]
    pub dataset: String,
    /// Side of the square views fed to the network, in pixels.
    #[arg(long, default_value_t = d().image_size)]
    pub image_size: usize,
    /// The self-supervised method.
    #[arg(long, value_enum, default_value_t = d().method)]
    pub method: Method,
    /// ResNet-18 stem: imagenet (7x7/2 + max pool, 96px and up) or cifar (3x3/1, 32px).
    #[arg(long, value_enum, default_value_t = d().stem)]
    pub stem: Stem,
    /// ResNet-18 widths 64-128-256-512 times this; the embedding is 512 times it.
    #[arg(long, default_value_t = d().width_mult)]
    pub width_mult: f64,
    /// Normalization inside the encoder.
    #[arg(long, value_enum, default_value_t = d().encoder_norm)]
    pub encoder_norm: EncoderNorm,
    /// Norm after the projection MLP's hidden layer: batch | layer | group | group:G | none.
    #[arg(long, default_value_t = d().proj_norm)]
    pub proj_norm: NormKind,
    /// Norm after the prediction MLP's hidden layer: batch | layer | group | group:G | none.
    #[arg(long, default_value_t = d().pred_norm)]
    pub pred_norm: NormKind,
    /// Hidden width of the projection MLP.
    #[arg(long, default_value_t = d().proj_hidden)]
    pub proj_hidden: usize,
    /// Output width of the projection (and prediction) MLP.
    #[arg(long, default_value_t = d().proj_out)]
    pub proj_out: usize,
    /// Hidden width of the prediction MLP.
    #[arg(long, default_value_t = d().pred_hidden)]
    pub pred_hidden: usize,
    /// Images per step (each gives two views).
    #[arg(long, default_value_t = d().batch_size)]
    pub batch_size: usize,
    /// Epochs to train (with --resume: raises the run's total).
    #[arg(long, default_value_t = d().epochs)]
    pub epochs: usize,
    /// Seed of initialization, data order and augmentations.
    #[arg(long, default_value_t = d().seed)]
    pub seed: u64,
    /// Update rule of the trainable parameters.
    #[arg(long, value_enum, default_value_t = d().optimizer)]
    pub optimizer: OptimizerKind,
    /// Base learning rate (scaled by batch/256 unless --no-lr-scale).
    #[arg(long, default_value_t = d().lr)]
    pub lr: f64,
    /// Use --lr as given instead of scaling it by batch/256.
    #[arg(long)]
    pub no_lr_scale: bool,
    /// SGD/LARS momentum.
    #[arg(long, default_value_t = d().momentum)]
    pub momentum: f32,
    /// Weight decay (L2 added to the gradient, as PyTorch's SGD).
    #[arg(long, default_value_t = d().weight_decay)]
    pub weight_decay: f32,
    /// Epochs of linear learning-rate warmup before the cosine decay.
    #[arg(long, default_value_t = d().warmup_epochs)]
    pub warmup_epochs: f64,
    /// Keep the learning rate constant after warmup (no cosine decay).
    #[arg(long)]
    pub no_cosine: bool,
    /// EMA base decay of the target network [default: 0.999 for moco, as MoCo v2; 0.99 otherwise].
    #[arg(long)]
    pub tau: Option<f64>,
    /// Keep tau constant instead of BYOL's schedule rising to 1.
    #[arg(long)]
    pub no_tau_schedule: bool,
    /// InfoNCE / NT-Xent temperature [default: 0.5 for simclr, as SimCLR; 0.2 otherwise].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Queue length of MoCo (and of `contrastive` with --contrastive-queue).
    #[arg(long, default_value_t = d().queue_size)]
    pub queue_size: usize,
    /// `contrastive` takes its negatives from a MoCo-style queue of past targets (the seed's
    /// setup) instead of the other images of the batch.
    #[arg(long)]
    pub contrastive_queue: bool,
    /// The pair of augmentations that makes the two views.
    #[arg(long, value_enum, default_value_t = d().augment)]
    pub augment: AugmentPreset,
    /// Linear evaluation every N epochs and at the end (0: never).
    #[arg(long, default_value_t = d().eval_every)]
    pub eval_every: usize,
    /// At most this many labeled images for linear evaluation (0: all).
    #[arg(long, default_value_t = d().eval_images)]
    pub eval_images: usize,
    /// Which labeled images the linear probe fits and scores.
    #[arg(long, value_enum, default_value_t = d().eval_protocol)]
    pub eval_protocol: EvalProtocol,
    /// Cap on steps per epoch (0: the whole dataset).
    #[arg(long, default_value_t = d().max_steps_per_epoch)]
    pub max_steps_per_epoch: usize,
    /// Progress line every N steps.
    #[arg(long, default_value_t = d().log_every)]
    pub log_every: usize,
    /// Start the online and target encoders from this safetensors file (torchvision's ResNet-18
    /// names, as `byol export` writes) instead of a random initialization.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// Under `mpirun -np R` (a build with the `mpi` feature): batch norm all-reduces its
    /// statistics and backward sums, so it normalizes over the global batch, not each rank's
    /// 1/R of it (what PyTorch DDP does without SyncBatchNorm).
    #[arg(long)]
    pub sync_bn: bool,
    /// Ghost batch norm: training-mode batch norm normalizes each of G equal slices of the
    /// batch with the slice's own statistics (one process then sees what G ranks without
    /// --sync-bn see; the per-rank batch as a variable of the study).
    #[arg(long, default_value_t = d().bn_groups, value_name = "G")]
    pub bn_groups: usize,
    /// Run directory (default runs/METHOD-DATASET-TIME).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its checkpoint (its config.json gives the flags;
    /// only --epochs, evaluation and logging flags may be given with it).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
    /// Also save a checkpoint mid-epoch at least every this many minutes of training (0: only at
    /// epoch ends). A run resumed from one continues exactly where it stopped.
    #[arg(long, default_value_t = 5.0)]
    pub checkpoint_minutes: f64,
}

/// Flags that may accompany --resume: they do not change what was trained.
const RESUME_FLAGS: &[&str] = &[
    "epochs",
    "eval_every",
    "eval_images",
    "eval_protocol",
    "log_every",
    "quiet",
    "resume",
    "checkpoint_minutes",
];

impl TrainArgs {
    pub fn to_config(&self) -> TrainConfig {
        TrainConfig {
            dataset: self.dataset.clone(),
            image_size: self.image_size,
            method: self.method,
            stem: self.stem,
            width_mult: self.width_mult,
            encoder_norm: self.encoder_norm,
            proj_norm: self.proj_norm,
            pred_norm: self.pred_norm,
            proj_hidden: self.proj_hidden,
            proj_out: self.proj_out,
            pred_hidden: self.pred_hidden,
            batch_size: self.batch_size,
            epochs: self.epochs,
            seed: self.seed,
            optimizer: self.optimizer,
            lr: self.lr,
            lr_scale: !self.no_lr_scale,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            warmup_epochs: self.warmup_epochs,
            cosine: !self.no_cosine,
            tau: self.tau.unwrap_or(self.method.default_tau()),
            tau_schedule: !self.no_tau_schedule,
            temperature: self
                .temperature
                .unwrap_or(self.method.default_temperature()),
            queue_size: self.queue_size,
            contrastive_queue: self.contrastive_queue,
            augment: self.augment,
            eval_every: self.eval_every,
            eval_images: self.eval_images,
            eval_protocol: self.eval_protocol,
            max_steps_per_epoch: self.max_steps_per_epoch,
            log_every: self.log_every,
            init_from: self
                .init_from
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            ranks: 1,
            sync_bn: self.sync_bn,
            bn_groups: self.bn_groups,
        }
    }
}

/// Printed when the chosen adapter runs on the CPU and the run keeps the size it was given.
pub const SOFTWARE_ADAPTER_NOTE: &str =
    "note: this is a software (CPU) adapter, some hundred times \
slower than a GPU; without size flags byol picks a CPU-sized run (16 px, width 1/8, batch 32, \
3 epochs; or pick a GPU with --adapter; `byol adapters` lists them)";

/// A new run directory `runs/METHOD-DATASET-YYYYMMDD-HHMMSS[-N]` (UTC), made exclusively.
fn default_run_dir(cfg: &TrainConfig) -> Result<PathBuf> {
    let data: String = cfg.dataset.split(':').next().unwrap_or("data").to_string();
    train::run_dir::new_run_dir(
        std::path::Path::new("runs"),
        &format!("{}-{data}", cfg.method),
    )
}

/// Runs `byol train`. `given` names the flags (by field name) the command line set; with
/// `--resume`, any that would change what is trained is refused rather than silently ignored.
pub fn run(args: &TrainArgs, dev: &super::Device, given: &[String]) -> Result<()> {
    let world = crate::dist::init()?;
    let result = run_rank(args, dev, given, world.clone());
    match (&result, &world) {
        // Every rank stopped at the same step; rank 0 says so.
        (Err(Error::Interrupted(_)), Some(w)) if w.rank() != 0 => return Ok(()),
        (Err(Error::Interrupted(_)), _) => {}
        // The other ranks would wait for this one forever: stop them all.
        (Err(e), Some(_)) => crate::dist::fail(world.as_ref(), &e.to_string()),
        _ => {}
    }
    result
}

/// `byol train` in one process: the whole run, or one rank of a data-parallel one.
fn run_rank(
    args: &TrainArgs,
    dev: &super::Device,
    given: &[String],
    world: Option<Rc<dyn Collective>>,
) -> Result<()> {
    let (rank, ranks) = world.as_ref().map_or((0, 1), |w| (w.rank(), w.size()));
    // Only rank 0 prints (and writes; see train::train_with).
    let quiet = args.quiet || rank != 0;
    if args.resume.is_some() {
        let ignored: Vec<String> = given
            .iter()
            .filter(|g| !RESUME_FLAGS.contains(&g.as_str()))
            .map(|g| format!("--{}", g.replace('_', "-")))
            .collect();
        if !ignored.is_empty() {
            return Err(Error::Invalid(format!(
                "--resume continues a run with its own config.json; these flags would be ignored: {} \
                 (only --epochs, --eval-every, --eval-images, --eval-protocol, --log-every and \
                 --checkpoint-minutes may be given)",
                ignored.join(", ")
            )));
        }
    }
    let engine = dev.open_slot(rank)?;
    let mut cpu_sized = Vec::new();
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
            let given = |f: &str| given.iter().any(|g| g == f);
            if given("epochs") {
                cfg.epochs = args.epochs;
            }
            if given("eval_every") {
                cfg.eval_every = args.eval_every;
            }
            if given("eval_images") {
                cfg.eval_images = args.eval_images;
            }
            if given("eval_protocol") {
                cfg.eval_protocol = args.eval_protocol;
            }
            if given("log_every") {
                cfg.log_every = args.log_every;
            }
            if cfg.ranks != ranks {
                return Err(Error::Invalid(format!(
                    "--resume: {} was trained on {} rank(s) and this run has {ranks}; resume it \
                     with `mpirun -np {} byol train --resume ...` (the shards, and batch norm \
                     over them, depend on the number of ranks)",
                    dir.display(),
                    cfg.ranks,
                    cfg.ranks
                )));
            }
            (cfg, dir.clone(), true)
        }
        None => {
            let mut cfg = args.to_config();
            cfg.ranks = ranks;
            if engine.gpu().is_software() {
                cpu_sized = cfg.apply_cpu_size(|f| given.iter().any(|g| g == f));
            }
            // Checked before a directory is made, so a bad flag leaves nothing behind.
            cfg.validate()?;
            train::check_memory(&engine, &cfg)?;
            if let Some(path) = &cfg.init_from {
                crate::interop::weights::check_fits(&engine, Path::new(path), cfg.model_config()?)?;
            }
            let out = match &args.out {
                // Rank 0 alone claims (and writes) the run directory.
                Some(dir) if rank != 0 => dir.clone(),
                None if rank != 0 => PathBuf::new(),
                Some(dir) => {
                    train::run_dir::claim_fresh(dir)?;
                    dir.clone()
                }
                None => default_run_dir(&cfg)?,
            };
            (cfg, out, false)
        }
    };
    if let Some(w) = &world {
        engine.set_distributed(Distributed {
            world: w.clone(),
            sync_batch_norm: cfg.sync_bn,
        });
    }
    if !quiet {
        eprintln!("adapter: {}", engine.adapter_name());
        if ranks > 1 {
            eprintln!(
                "data-parallel: {ranks} ranks, {} images each per step of {}; batch norm over {}",
                cfg.batch_size / ranks,
                cfg.batch_size,
                if cfg.sync_bn {
                    "the global batch (--sync-bn)".to_string()
                } else if cfg.bn_groups > 1 {
                    format!(
                        "slices of {} images (--bn-groups)",
                        cfg.batch_size / ranks / cfg.bn_groups
                    )
                } else {
                    "each rank's shard".to_string()
                }
            );
        } else if cfg.bn_groups > 1 {
            eprintln!(
                "ghost batch norm: each of {} slices of {} images normalized on its own (--bn-groups)",
                cfg.bn_groups,
                cfg.batch_size / cfg.bn_groups
            );
        }
        if !cpu_sized.is_empty() {
            let list = |f: fn(&SizeChange) -> &str| {
                let items: Vec<String> = cpu_sized
                    .iter()
                    .map(|c| format!("{} {}", c.flag, f(c)))
                    .collect();
                items.join(" ")
            };
            eprintln!(
                "CPU-sized run (software adapter): {} in place of the GPU defaults {}; a size \
                 flag you give keeps its value",
                list(|c| &c.now),
                list(|c| &c.was)
            );
        } else if engine.gpu().is_software() && !resume {
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
    if !(args.checkpoint_minutes >= 0.0 && args.checkpoint_minutes.is_finite()) {
        return Err(Error::Invalid(format!(
            "--checkpoint-minutes {} must be a number of minutes, 0 or more",
            args.checkpoint_minutes
        )));
    }
    let ctl = RunControl {
        progress: !quiet,
        stop: Some(stop_on_signal()),
        checkpoint_every: (args.checkpoint_minutes > 0.0)
            .then(|| Duration::from_secs_f64(args.checkpoint_minutes * 60.0)),
        ..RunControl::default()
    };
    let t0 = std::time::Instant::now();
    let metrics = train::train_with(&engine, &cfg, &out, resume, &ctl)?;
    if let (Some(w), false) = (&world, quiet) {
        let (calls, secs) = w.time_spent();
        eprintln!(
            "rank 0 spent {secs:.1} s of {:.1} s in {calls} collectives (all-reduces, and waiting \
             for the other ranks there)",
            t0.elapsed().as_secs_f64()
        );
    }
    if let Some(last) = metrics.last().filter(|_| rank == 0) {
        println!(
            "done: {} epochs, loss {:.4}, cos+ {:.4}, cos- {:.4}{}; metrics in {}",
            last.epoch,
            last.loss,
            last.cos_pos,
            last.cos_neg,
            last.linear_accuracy
                .zip(last.random_accuracy.zip(last.chance_accuracy))
                .map(|(a, (r, c))| format!(
                    ", linear accuracy {:.2}% (random encoder {:.2}%, chance {:.2}%), kNN accuracy {:.2}%",
                    a * 100.0,
                    r * 100.0,
                    c * 100.0,
                    last.knn_accuracy.unwrap_or(f64::NAN) * 100.0
                ))
                .unwrap_or_default(),
            out.join("metrics.jsonl").display()
        );
    }
    Ok(())
}

/// A flag that the first Ctrl-C (SIGINT) or SIGTERM sets: the run finishes its step, saves a
/// checkpoint and exits. A second one exits at once; checkpoints are written through a temporary
/// file and a rename, so that never leaves a broken one.
fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let installed = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now; the last checkpoint is intact");
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step to save a checkpoint (Ctrl-C again to quit at once)");
    });
    if let Err(e) = installed {
        eprintln!("warning: Ctrl-C will not save a checkpoint ({e})");
    }
    stop
}

/// Flags of `byol eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    #[command(flatten)]
    pub encoder: super::interop::EncoderArgs,
    /// Which labeled images the probe fits and scores; default: the run's.
    #[arg(long, value_enum)]
    pub eval_protocol: Option<EvalProtocol>,
    /// At most this many labeled images (0: all); default: the run's.
    #[arg(long)]
    pub eval_images: Option<usize>,
    /// Evaluate the same architecture freshly initialized instead (the "Random" baseline).
    #[arg(long)]
    pub random: bool,
}

pub fn eval(args: &EvalArgs, dev: &super::Device) -> Result<()> {
    let engine = dev.open()?;
    let (model, mut cfg) = args.encoder.open(&engine, args.random)?;
    if let Some(p) = args.eval_protocol {
        cfg.eval_protocol = p;
    }
    if let Some(n) = args.eval_images {
        cfg.eval_images = n;
    }
    cfg.validate()?;
    train::embed::check(&cfg)?;
    let e = train::embed::evaluate(&engine, &model, &cfg)?;
    let r = &e.probe;
    println!(
        "linear accuracy {:.2} ± {:.2}% ({} protocol, fit accuracy {:.2}%, {} iterations, final loss {:.4}); kNN accuracy {:.2} ± {:.2}% (k 200, cosine, T 0.07); embedding effective rank {:.1}",
        r.accuracy * 100.0,
        r.standard_error * 100.0,
        cfg.eval_protocol,
        r.fit_accuracy * 100.0,
        r.iterations,
        r.final_loss,
        e.knn_accuracy * 100.0,
        e.knn_standard_error * 100.0,
        e.embedding_rank
    );
    Ok(())
}
