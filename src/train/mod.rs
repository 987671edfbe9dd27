//! `byol train`: self-supervised training end to end on the GPU, with progress, collapse
//! diagnostics, linear evaluation, metrics and checkpoints that a run resumes from.

pub mod checkpoint;
pub mod config;
pub mod embed;
pub mod kernels;
pub mod memory;
pub mod run_dir;
pub mod schedule;
mod state;
pub mod step;

pub use config::TrainConfig;
pub use state::restore_model;
pub use step::{StepResult, Trainer};

use crate::data::loader::{Loader, LoaderOptions, LoaderPosition};
use crate::data::views::two_views;
use crate::data::{self, Split};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ssl::{DiagnosticValues, SslModel};
use serde::Serialize;
use std::io::IsTerminal;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One line of `metrics.jsonl`.
#[derive(Serialize, Clone, Debug)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub tau: f64,
    pub cos_pos: f64,
    pub cos_neg: f64,
    pub output_std: f64,
    pub output_std_reference: f64,
    /// Effective rank of the last batch's normalized projections.
    pub output_rank: f64,
    pub linear_accuracy: Option<f64>,
    /// Binomial standard error of `linear_accuracy` over the scored images.
    pub linear_accuracy_se: Option<f64>,
    /// kNN accuracy (k 200, cosine, T 0.07; the probe's fit images as the bank) and its standard
    /// error (eval epochs).
    pub knn_accuracy: Option<f64>,
    pub knn_accuracy_se: Option<f64>,
    /// Effective rank of the encoder's embeddings of the evaluation images (eval epochs).
    pub embedding_rank: Option<f64>,
    /// The same probe on the run's untrained initialization, and chance (eval epochs).
    pub random_accuracy: Option<f64>,
    pub chance_accuracy: Option<f64>,
    pub images_per_sec: f64,
    pub seconds: f64,
    pub collapsed: bool,
}

/// Trains as `cfg` says, writing into `out`. With `resume`, continues from `out`'s checkpoint.
/// Returns every epoch's metrics (those of this invocation).
pub fn train(
    engine: &Engine,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    progress: bool,
) -> Result<Vec<EpochMetrics>> {
    let ctl = RunControl {
        progress,
        ..RunControl::default()
    };
    train_with(engine, cfg, out, resume, &ctl)
}

/// As [`train`], but stops (as if interrupted) once `stop_after` epochs are done.
pub fn train_until(
    engine: &Engine,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    progress: bool,
    stop_after: Option<usize>,
) -> Result<Vec<EpochMetrics>> {
    let ctl = RunControl {
        progress,
        stop_after_epochs: stop_after,
        ..RunControl::default()
    };
    train_with(engine, cfg, out, resume, &ctl)
}

/// How a run is driven beyond its config: what it prints, when it saves, when it stops.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// Progress on stderr: from the first step, refreshed about every second on a terminal (a
    /// line every ten seconds, or every `log_every` steps, otherwise).
    pub progress: bool,
    /// Stop (as if interrupted, with the epoch's checkpoint written) after this many epochs.
    pub stop_after_epochs: Option<usize>,
    /// Stop after this many steps of the run, saving a mid-epoch checkpoint (as a signal does).
    pub stop_after_steps: Option<usize>,
    /// Checked after every step (a Ctrl-C handler sets it): the run saves a mid-epoch checkpoint
    /// and returns `Error::Interrupted`.
    pub stop: Option<Arc<AtomicBool>>,
    /// A mid-epoch checkpoint at least this often (besides the one at every epoch's end).
    pub checkpoint_every: Option<Duration>,
    /// A folder where runs that share an encoder and an evaluation (a study's variants) share
    /// their random-encoder baseline, computed once.
    pub shared_baselines: Option<std::path::PathBuf>,
}

/// Trains as `cfg` says under `ctl`, writing into `out`; with `resume`, continues from `out`'s
/// checkpoint, mid-epoch if it was written mid-epoch, to the same results as an uninterrupted run.
pub fn train_with(
    engine: &Engine,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    ctl: &RunControl,
) -> Result<Vec<EpochMetrics>> {
    cfg.validate()?;
    // A data-parallel rank: rank 0 alone writes `out`, prints and evaluates.
    let world = engine.collective();
    let writer = engine.rank() == 0;
    if let Some(w) = &world {
        if cfg.ranks != w.size() {
            return Err(Error::Invalid(format!(
                "the config says {} ranks but this run has {}",
                cfg.ranks,
                w.size()
            )));
        }
        let json = serde_json::to_string(cfg).map_err(|e| Error::Io(e.to_string()))?;
        crate::dist::check_same_run(w.as_ref(), &json)?;
    }
    let progress = ctl.progress && writer;
    if cfg.eval_every > 0 {
        // An evaluation that cannot run must fail now, not after an epoch of training.
        embed::check(cfg)?;
    }
    // Held until training ends: a second run into the same directory is refused.
    let _lock = if writer {
        std::fs::create_dir_all(out)
            .map_err(|e| Error::Io(format!("creating {}: {e}", out.display())))?;
        Some(run_dir::lock(out)?)
    } else {
        None
    };
    let set: Arc<dyn data::ImageSet> = Arc::from(data::open(&cfg.dataset, Split::Pretrain)?);
    let views = cfg.augmentations()?;
    let ckpt_path = out.join("checkpoint.bin");
    let steps_per_epoch = cfg.steps_per_epoch(Loader::batches_in(set.len(), cfg.batch_size, true));
    check_memory(engine, cfg)?;
    let mut trainer = Trainer::new(engine, cfg, steps_per_epoch)?;
    let metrics_path = out.join("metrics.jsonl");
    let at = if resume {
        kernels::pin(engine, out)?;
        let at = state::restore(&ckpt_path, cfg, &mut trainer)?;
        // The step count must be the position's: epochs done times steps per epoch, plus the
        // steps of the epoch in progress (the schedules and the EMA depend on it).
        let expected = at.epoch * steps_per_epoch + at.in_epoch;
        if trainer.step_count() != expected {
            return Err(Error::Io(format!(
                "{}: the checkpoint says {} steps, but epoch {} step {} of {steps_per_epoch} \
                 per epoch means {expected}; it was edited or is corrupt and cannot be resumed",
                ckpt_path.display(),
                trainer.step_count(),
                at.epoch + 1,
                at.in_epoch
            )));
        }
        // A kill between a checkpoint and its metrics line, or after a line whose checkpoint was
        // never written, must not leave the two disagreeing: keep the checkpoint's epochs only.
        if writer {
            truncate_metrics(&metrics_path, at.epoch)?;
        }
        at
    } else {
        if let Some(path) = &cfg.init_from {
            let file = crate::interop::weights::read(Path::new(path))?;
            crate::interop::weights::load_encoder(&file, trainer.model())?;
        }
        // A fresh run starts a fresh metrics file.
        if writer {
            let _ = std::fs::remove_file(&metrics_path);
        }
        state::Position::default()
    };
    let start_epoch = at.epoch;
    // Written (again, on resume) so that it always holds the settings in force, e.g. a raised
    // --epochs; through a temporary file and a rename, so it is never half-written.
    if writer {
        write_config(out, cfg)?;
    }
    if start_epoch >= cfg.epochs {
        return Ok(Vec::new());
    }
    let loader_opts = LoaderOptions {
        batch_size: cfg.batch_size,
        seed: cfg.seed,
        shuffle: true,
        drop_last: true,
        augment: Some(views.clone()),
        epochs: Some(cfg.epochs),
    };
    let mut loader = Loader::starting_at(
        set.clone(),
        loader_opts,
        LoaderPosition {
            epoch: start_epoch,
            index: at.in_epoch * cfg.batch_size,
        },
    )?;
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut all = Vec::new();
    let end_epoch = ctl
        .stop_after_epochs
        .map_or(cfg.epochs, |s| s.min(cfg.epochs));
    let mut printer = Progress::new(progress, cfg.log_every);
    let mut last_save = Instant::now();
    for epoch in start_epoch..end_epoch {
        // A run resumed mid-epoch carries on with that epoch's count, images and diagnostics.
        let resumed = epoch == start_epoch && at.in_epoch > 0;
        let (mut in_epoch, mut seen, carried) = if resumed {
            trainer.restore_diagnostics(engine, &at.diagnostics)?;
            (at.in_epoch, at.seen, at.epoch_seconds)
        } else {
            (0, 0, 0.0)
        };
        let t0 = Instant::now();
        let elapsed = |t0: Instant| carried + t0.elapsed().as_secs_f64();
        let (mut last_lr, mut last_tau) = trainer.schedule_now();
        for batch in loader.epoch_batches() {
            if in_epoch >= steps_per_epoch {
                continue; // drain the rest of a capped epoch
            }
            let batch = match &world {
                Some(w) => batch?.shard(w.rank(), w.size())?,
                None => batch?,
            };
            let (v1, v2) = two_views(engine, &batch, &views[0], &views[1], cfg.image_size, None)?;
            let done = trainer.step(&v1, &v2)?;
            (last_lr, last_tau) = (done.lr, done.tau);
            seen += batch.len() * engine.ranks();
            in_epoch += 1;
            let step = trainer.step_count();
            // A divergence seen here ends the run only after the ranks agree on it (below): no
            // rank may leave the loop while another waits for it in a collective.
            let mut diverged = None;
            if printer.due(in_epoch == steps_per_epoch) {
                let loss = done.loss.item()? as f64;
                match check_finite(loss, epoch, step) {
                    Err(e) => diverged = Some(e),
                    Ok(()) => {
                        let rate = seen as f64 / elapsed(t0).max(1e-9);
                        let remaining =
                            (total_steps - step) as f64 * cfg.batch_size as f64 / rate.max(1e-9);
                        printer.print(&format!(
                            "epoch {}/{} step {in_epoch}/{steps_per_epoch} loss {loss:.4} {rate:.1} img/s ETA {}",
                            epoch + 1,
                            cfg.epochs,
                            format_secs(remaining)
                        ));
                    }
                }
            }
            let stop_asked = ctl.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
                || ctl.stop_after_steps.is_some_and(|n| step >= n);
            let save_due = ctl
                .checkpoint_every
                .is_some_and(|every| last_save.elapsed() >= every);
            // Every rank stops and saves where rank 0 does, and stops if any rank diverged.
            let ([stop_asked, save_due], any_diverged) = match &world {
                Some(w) => {
                    crate::dist::step_flags(w.as_ref(), [stop_asked, save_due], diverged.is_some())?
                }
                None => ([stop_asked, save_due], diverged.is_some()),
            };
            if any_diverged {
                printer.finish_line();
                return Err(diverged.unwrap_or_else(|| {
                    Error::Diverged(format!(
                        "another rank's loss became non-finite in epoch {} (step {step})",
                        epoch + 1
                    ))
                }));
            }
            if in_epoch < steps_per_epoch && (stop_asked || save_due) {
                // Read back and check the loss first: a diverged state is never saved (and on
                // every rank, if one rank's is).
                let finite = check_finite(done.loss.item()? as f64, epoch, step);
                let any_bad = match &world {
                    Some(w) => crate::dist::step_flags(w.as_ref(), [], finite.is_err())?.1,
                    None => finite.is_err(),
                };
                if any_bad {
                    return Err(finite.err().unwrap_or_else(|| {
                        Error::Diverged(format!(
                            "another rank's loss became non-finite in epoch {} (step {step})",
                            epoch + 1
                        ))
                    }));
                }
                let here = state::Position {
                    epoch,
                    in_epoch,
                    seen,
                    epoch_seconds: elapsed(t0),
                    diagnostics: trainer.save_diagnostics()?,
                };
                if let Some(w) = &world {
                    crate::dist::average_running_stats(w.as_ref(), &trainer.model().norm_states())?;
                }
                if writer {
                    kernels::save(engine, out)?;
                    state::save(&ckpt_path, cfg, &trainer, &here)?;
                }
                last_save = Instant::now();
                if stop_asked {
                    printer.finish_line();
                    return Err(Error::Interrupted(format!(
                        "stopped in epoch {} at step {in_epoch}/{steps_per_epoch} ({step} steps in all); \
                         the checkpoint in {} holds it: continue with --resume {}",
                        epoch + 1,
                        out.display(),
                        out.display()
                    )));
                }
            }
        }
        engine.flush()?;
        let mut d: DiagnosticValues = trainer.finish_epoch()?;
        if let Some(w) = &world {
            // The epoch's loss and cosines over the global batch (each rank has its shard's);
            // the running statistics every rank's shard saw, for evaluation and the checkpoint.
            let mut means = [d.loss, d.cos_pos, d.cos_neg];
            crate::dist::mean_over_ranks(w.as_ref(), &mut means)?;
            [d.loss, d.cos_pos, d.cos_neg] = means;
            crate::dist::average_running_stats(w.as_ref(), &trainer.model().norm_states())?;
        }
        let step = trainer.step_count();
        check_finite(d.loss, epoch, step)?;
        let seconds = elapsed(t0);
        let evaluation = if writer
            && cfg.eval_every > 0
            && ((epoch + 1) % cfg.eval_every == 0 || epoch + 1 == cfg.epochs)
        {
            Some(embed::evaluate(engine, trainer.model(), cfg)?)
        } else {
            None
        };
        // What the accuracy means: the untrained network's and chance, once per run.
        let baseline = match evaluation {
            Some(_) => Some(embed::baseline(
                engine,
                cfg,
                out,
                ctl.shared_baselines.as_deref(),
            )?),
            None => None,
        };
        let m = EpochMetrics {
            epoch: epoch + 1,
            step,
            loss: d.loss,
            lr: last_lr,
            tau: last_tau,
            cos_pos: d.cos_pos,
            cos_neg: d.cos_neg,
            output_std: d.output_std,
            output_std_reference: d.output_std_reference,
            output_rank: d.output_rank,
            linear_accuracy: evaluation.as_ref().map(|e| e.probe.accuracy),
            linear_accuracy_se: evaluation.as_ref().map(|e| e.probe.standard_error),
            knn_accuracy: evaluation.as_ref().map(|e| e.knn_accuracy),
            knn_accuracy_se: evaluation.as_ref().map(|e| e.knn_standard_error),
            embedding_rank: evaluation.as_ref().map(|e| e.embedding_rank),
            random_accuracy: baseline.map(|b| b.random_accuracy),
            chance_accuracy: baseline.map(|b| b.chance_accuracy),
            images_per_sec: seen as f64 / seconds.max(1e-9),
            seconds,
            collapsed: d.cos_neg > 0.99,
        };
        if progress {
            printer.finish_line();
            eprintln!(
                "epoch {}: loss {:.4}  cos+ {:.4}  cos- {:.4}  std {:.4} (1/sqrt(d) {:.4})  rank {:.1}{}  {:.1} img/s",
                m.epoch,
                m.loss,
                m.cos_pos,
                m.cos_neg,
                m.output_std,
                m.output_std_reference,
                m.output_rank,
                evaluation.as_ref().zip(baseline).map(|(e, b)| format!("  linear acc {:.2} ± {:.2}% (random encoder {:.2}%, chance {:.2}%)  kNN acc {:.2}%  embedding rank {:.1}", e.probe.accuracy * 100.0, e.probe.standard_error * 100.0, b.random_accuracy * 100.0, b.chance_accuracy * 100.0, e.knn_accuracy * 100.0, e.embedding_rank)).unwrap_or_default(),
                m.images_per_sec
            );
            if m.collapsed {
                eprintln!(
                    "warning: the representation has collapsed (negatives' cosine {:.4} > 0.99): every image maps to nearly the same vector",
                    m.cos_neg
                );
            }
        }
        // The checkpoint first, then its metrics line: a kill in between leaves a line missing,
        // which the resumed run writes (a line without its checkpoint would be written twice).
        if writer {
            kernels::save(engine, out)?;
            state::save(
                &ckpt_path,
                cfg,
                &trainer,
                &state::Position::end_of(epoch + 1),
            )?;
            append_metrics(&metrics_path, &m)?;
        }
        last_save = Instant::now();
        all.push(m);
    }
    Ok(all)
}

/// One training step of `cfg` on the first batch of its dataset, for `byol tune`: every pass with
/// more than one kernel meets its shapes and, with tuning on, is measured.
pub fn tune_step(engine: &Engine, cfg: &TrainConfig) -> Result<()> {
    cfg.validate()?;
    check_memory(engine, cfg)?;
    let set: Arc<dyn data::ImageSet> = Arc::from(data::open(&cfg.dataset, Split::Pretrain)?);
    let views = cfg.augmentations()?;
    let mut trainer = Trainer::new(engine, cfg, 1)?;
    let options = LoaderOptions {
        batch_size: cfg.batch_size,
        seed: cfg.seed,
        shuffle: true,
        drop_last: true,
        augment: Some(views.clone()),
        epochs: Some(1),
    };
    let mut loader = Loader::starting_at(set, options, LoaderPosition::default())?;
    let batch = loader.epoch_batches().next().ok_or_else(|| {
        Error::Invalid(format!(
            "{} has fewer images than one batch of {}",
            cfg.dataset, cfg.batch_size
        ))
    })??;
    let (v1, v2) = two_views(engine, &batch, &views[0], &views[1], cfg.image_size, None)?;
    trainer.step(&v1, &v2)?;
    engine.sync()
}

/// Linear evaluation of a run directory's checkpoint (or, with `random`, of the same architecture
/// freshly initialized: the seed's "Random" baseline), with `cfg`'s evaluation settings.
pub fn evaluate_run(
    engine: &Engine,
    run: &Path,
    cfg: &TrainConfig,
    random: bool,
) -> Result<embed::Evaluation> {
    let mut model = SslModel::new(engine, cfg.model_config()?)?;
    if !random {
        state::restore_model(&run.join("checkpoint.bin"), cfg, &mut model)?;
    }
    embed::evaluate(engine, &model, cfg)
}

/// Refuses, before anything is allocated, a config whose buffers the adapter cannot hold (see
/// [`memory`]); on a CPU adapter its total is held against the system's available memory.
pub fn check_memory(engine: &Engine, cfg: &TrainConfig) -> Result<()> {
    let gpu = engine.gpu();
    let available = if gpu.is_software() {
        memory::system_available()
    } else {
        None
    };
    memory::check(
        cfg,
        gpu.limits.max_buffer_size,
        available,
        &engine.adapter_name(),
    )
}

fn check_finite(loss: f64, epoch: usize, step: usize) -> Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    Err(Error::Diverged(format!(
        "the loss became {loss} in epoch {} (step {step}); stopping. The last good checkpoint is kept; \
         try a lower --lr or more --warmup-epochs",
        epoch + 1
    )))
}

fn write_config(out: &Path, cfg: &TrainConfig) -> Result<()> {
    let json = serde_json::to_string_pretty(cfg).map_err(|e| Error::Io(e.to_string()))?;
    checkpoint::write_atomic(&out.join("config.json"), json.as_bytes())
}

/// Keeps the lines of `metrics.jsonl` up to `epochs` (those the checkpoint holds), rewritten
/// through a temporary file; a missing file is fine.
fn truncate_metrics(path: &Path, epochs: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let keep: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["epoch"].as_u64())
                .is_some_and(|e| e as usize <= epochs)
        })
        .collect();
    if keep.len() == text.lines().count() {
        return Ok(());
    }
    let body: String = keep.iter().map(|l| format!("{l}\n")).collect();
    checkpoint::write_atomic(path, body.as_bytes())
}

/// The progress line: on a terminal one line rewritten about every second, elsewhere a line every
/// ten seconds or every `log_every` steps; always at the run's first step and an epoch's last.
struct Progress {
    on: bool,
    tty: bool,
    log_every: usize,
    steps: usize,
    last: Option<Instant>,
    open_line: bool,
}

impl Progress {
    fn new(on: bool, log_every: usize) -> Progress {
        Progress {
            on,
            tty: std::io::stderr().is_terminal(),
            log_every: log_every.max(1),
            steps: 0,
            last: None,
            open_line: false,
        }
    }

    /// Counts a step; whether a line should be printed after it.
    fn due(&mut self, epoch_end: bool) -> bool {
        self.steps += 1;
        if !self.on {
            return false;
        }
        let every = Duration::from_secs(if self.tty { 1 } else { 10 });
        let by_time = self.last.is_none_or(|t| t.elapsed() >= every);
        by_time || epoch_end || (!self.tty && self.steps.is_multiple_of(self.log_every))
    }

    fn print(&mut self, line: &str) {
        self.last = Some(Instant::now());
        if self.tty {
            eprint!("\r{line}   ");
            self.open_line = true;
        } else {
            eprintln!("{line}");
        }
    }

    /// Ends a rewritten line before other output.
    fn finish_line(&mut self) {
        if self.open_line {
            eprintln!();
            self.open_line = false;
        }
    }
}

fn append_metrics(path: &Path, m: &EpochMetrics) -> Result<()> {
    let line = serde_json::to_string(m).map_err(|e| Error::Io(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    writeln!(f, "{line}").map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

fn format_secs(s: f64) -> String {
    if !s.is_finite() {
        return "?".into();
    }
    let s = s as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
