//! `byol study`: the seed's experiment end to end. Every variant of its table is trained from one
//! base config with the same seed (same initialization, data order and augmentations), evaluated
//! linearly every epoch, and summarized as `results.json`, `table.md` and two figures.
//! Each variant runs in its own directory under `OUT/runs/`, so an interrupted study resumes.

pub mod plot;
pub mod stats;
pub mod summary;
pub mod variants;

pub use variants::{select, variants, Group, Variant};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::nn::{NormKind, Stem};
use crate::train::config::{AugmentPreset, EvalProtocol, OptimizerKind, CPU_SIZE};
use crate::train::{self, TrainConfig};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How big a study is: from a CI smoke test to the seed's exact setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    Smoke,
    /// Decides on a 2-core CPU: the seven seed rows, 3 seeds, in under 2 hours (README, The study).
    Cpu,
    Quick,
    Seed,
}

impl Preset {
    pub fn parse(s: &str) -> Result<Preset> {
        match s {
            "smoke" => Ok(Preset::Smoke),
            "cpu" => Ok(Preset::Cpu),
            "quick" => Ok(Preset::Quick),
            "seed" => Ok(Preset::Seed),
            other => Err(Error::Invalid(format!(
                "unknown preset {other:?}: use smoke, cpu, quick or seed"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Smoke => "smoke",
            Preset::Cpu => "cpu",
            Preset::Quick => "quick",
            Preset::Seed => "seed",
        }
    }

    /// The config every variant is derived from (BYOL with batch norm in both MLPs).
    pub fn base_config(self) -> TrainConfig {
        let base = TrainConfig {
            eval_every: 1,
            ..TrainConfig::default()
        };
        match self {
            Preset::Smoke => TrainConfig {
                dataset: "synthetic:512:16".into(),
                image_size: 16,
                width_mult: 0.125,
                proj_hidden: 64,
                proj_out: 32,
                pred_hidden: 64,
                batch_size: 32,
                epochs: 2,
                max_steps_per_epoch: 4,
                eval_images: 160,
                stem: Stem::Cifar,
                log_every: 1000,
                ..base
            },
            // The main job's CPU size (`byol train` on a software adapter): on the built-in
            // shapes a random encoder's probe is weak (about 41%), so what training adds shows.
            Preset::Cpu => TrainConfig {
                dataset: "synthetic".into(),
                image_size: CPU_SIZE.image_size,
                width_mult: CPU_SIZE.width_mult,
                batch_size: CPU_SIZE.batch_size,
                epochs: CPU_SIZE.epochs,
                // 3 x 200 steps: 18 trained runs of about 5 minutes on 2 cores with llvmpipe.
                max_steps_per_epoch: 200,
                stem: Stem::Cifar,
                ..base
            },
            Preset::Quick => TrainConfig {
                dataset: "synthetic".into(),
                image_size: 32,
                width_mult: 0.25,
                proj_hidden: 512,
                proj_out: 128,
                pred_hidden: 512,
                batch_size: 128,
                epochs: 5,
                stem: Stem::Cifar,
                ..base
            },
            // SEED-PRESET.md, as far as TrainConfig can say it.
            Preset::Seed => TrainConfig {
                dataset: String::new(), // --dataset stl10:DIR is required
                image_size: 96,
                stem: Stem::ImageNet,
                width_mult: 1.0,
                proj_hidden: 512,
                proj_out: 128,
                pred_hidden: 512,
                batch_size: 256,
                epochs: 10,
                optimizer: OptimizerKind::Sgd,
                lr: 0.8,
                lr_scale: false,
                cosine: false,
                warmup_epochs: 0.0,
                momentum: 0.9,
                weight_decay: 1e-4,
                tau: 0.996,
                tau_schedule: false,
                augment: AugmentPreset::Seed,
                temperature: 0.2,
                // The contrastive row's negatives: a queue of 65,536 past targets.
                contrastive_queue: true,
                queue_size: 65536,
                eval_protocol: EvalProtocol::HalfTest,
                eval_images: 0,
                ..base
            },
        }
    }
}

/// What `byol study` was asked to do.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    pub preset: Preset,
    /// Overrides the preset's dataset.
    pub dataset: Option<String>,
    pub out: PathBuf,
    /// Overrides the preset's epochs.
    pub epochs: Option<usize>,
    /// Slugs and group names of the variants to run (None: the seed's table).
    pub variants: Option<Vec<String>>,
    /// `key=value` overrides of the preset's config (any field of `config.json`).
    pub overrides: Vec<String>,
    /// Seeds every variant trains under: the config's seed, seed + 1, ... (rows of one seed are
    /// paired: same initialization, data order and augmentations).
    pub seeds: usize,
    pub progress: bool,
}

/// One variant's results, as written to `results.json`.
#[derive(Serialize, Clone, Debug)]
pub struct VariantResult {
    pub slug: String,
    /// The config seed this run trained with.
    pub seed: u64,
    pub name: String,
    pub group: String,
    pub encoder_norm: String,
    pub proj_norm: String,
    pub pred_norm: String,
    pub loss: String,
    pub contrastive: String,
    /// sgd or lars, with the weight decay: "sgd, wd 0.0001".
    pub optimizer: String,
    /// The lines of the variant's `metrics.jsonl` (empty for "Random").
    pub metrics: Vec<Value>,
    /// Linear accuracy in [0, 1] after the last epoch (or of the untrained encoder).
    pub final_accuracy: Option<f64>,
    /// Binomial standard error of `final_accuracy` over the scored images.
    pub final_accuracy_se: Option<f64>,
    /// kNN accuracy (k 200, cosine, T 0.07) of the same evaluation, in [0, 1].
    pub final_knn_accuracy: Option<f64>,
    pub final_cos_pos: Option<f64>,
    pub final_cos_neg: Option<f64>,
    pub final_output_std: Option<f64>,
    /// 1/sqrt(d): the output std of unit vectors spread evenly (SimSiam's reference).
    pub output_std_reference: Option<f64>,
    /// Effective rank of the last batch's normalized projections (1: total collapse).
    pub final_output_rank: Option<f64>,
    /// Effective rank of the encoder's embeddings of the evaluation images.
    pub final_embedding_rank: Option<f64>,
    pub seed_accuracy: Option<f64>,
    /// Whether this invocation trained (or evaluated) it, rather than finding it done.
    pub ran_now: bool,
    /// Why training stopped early (a NaN or infinite loss); its metrics end at the last good epoch.
    pub diverged: Option<String>,
}

/// The whole study, as written to `results.json`.
#[derive(Serialize, Clone, Debug)]
pub struct StudyResults {
    pub preset: String,
    pub dataset: String,
    pub adapter: String,
    pub epochs: usize,
    /// Classes of the evaluation split (the chance accuracy is 1 / classes; 0 if unknown).
    pub classes: usize,
    /// Seconds this invocation took.
    pub wall_seconds: f64,
    /// Seconds of training summed over every variant's epochs (across invocations).
    pub train_seconds: f64,
    /// The seeds of the study, in order; `variants` holds the first one's runs.
    pub seeds: Vec<u64>,
    pub variants: Vec<VariantResult>,
    /// The runs of every further seed, in `seeds` order, each in `variants`' order.
    pub later_seeds: Vec<Vec<VariantResult>>,
    /// Per variant, across all seeds: spreads and paired differences to Random and BYOL.
    pub summary: Vec<summary::VariantSummary>,
}

/// Written into a variant's directory when its training diverged.
const DIVERGED_NOTE: &str = "diverged.txt";

/// Runs (or resumes) the study and writes its outputs into `opts.out`.
pub fn run_study(engine: &Engine, opts: &StudyOptions) -> Result<StudyResults> {
    let t0 = Instant::now();
    let mut base = opts.preset.base_config();
    if let Some(d) = &opts.dataset {
        base.dataset = d.clone();
    }
    if base.dataset.is_empty() {
        return Err(Error::Invalid(
            "the seed preset needs --dataset stl10:DIR (fetch it with `byol data fetch stl10 --dir DIR`)"
                .into(),
        ));
    }
    if let Some(e) = opts.epochs {
        base.epochs = e;
    }
    let mut base = apply_overrides(base, &opts.overrides)?;
    // Under `mpirun -np R` every variant trains on R ranks (rank 0 writes the study).
    base.ranks = engine.ranks();
    base.validate()?;
    let chosen = select(opts.variants.as_deref())?;
    if opts.seeds == 0 {
        return Err(Error::Invalid("--seeds must be at least 1".into()));
    }
    let seeds: Vec<u64> = (0..opts.seeds as u64)
        .map(|s| base.seed.checked_add(s))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::Invalid(format!("seed {} + {} overflows", base.seed, opts.seeds)))?;
    let runs = opts.out.join("runs");
    let mut by_seed = Vec::new();
    for (s, &seed) in seeds.iter().enumerate() {
        let base = TrainConfig {
            seed,
            ..base.clone()
        };
        let mut results = Vec::new();
        for v in &chosen {
            let dir = variant_dir(&runs, v.slug, s, seed);
            let r = run_variant(engine, v, &base, opts, &dir)?;
            results.push(r);
        }
        by_seed.push(results);
    }
    let mut by_seed = by_seed.into_iter();
    let results = by_seed.next().unwrap_or_default();
    let later_seeds: Vec<Vec<VariantResult>> = by_seed.collect();
    let train_seconds = results
        .iter()
        .chain(later_seeds.iter().flatten())
        .flat_map(|r| r.metrics.iter())
        .filter_map(|m| m.get("seconds").and_then(Value::as_f64))
        .sum::<f64>()
        // An empty sum is -0.0, which would print as "-0 s".
        + 0.0;
    let study = StudyResults {
        preset: opts.preset.name().into(),
        dataset: base.dataset.clone(),
        adapter: engine.adapter_name(),
        epochs: base.epochs,
        classes: crate::data::open(&base.dataset, crate::data::Split::Test)
            .map(|t| t.classes().len())
            .unwrap_or(0),
        wall_seconds: t0.elapsed().as_secs_f64(),
        train_seconds,
        summary: Vec::new(),
        seeds,
        variants: results,
        later_seeds,
    };
    // Only rank 0 has the results (the other ranks of a data-parallel study only trained).
    if engine.rank() != 0 {
        return Ok(study);
    }
    let study = StudyResults {
        summary: summary::summarize(&study.variants, &study.later_seeds),
        ..study
    };
    write_outputs(&opts.out, &study)?;
    Ok(study)
}

/// Where a variant's run lives: `runs/SLUG` for the study's first seed (so a one-seed study is the
/// same as before seeds existed), `runs/SLUG.seedN` for the others.
fn variant_dir(runs: &Path, slug: &str, seed_index: usize, seed: u64) -> PathBuf {
    if seed_index == 0 {
        runs.join(slug)
    } else {
        runs.join(format!("{slug}.seed{seed}"))
    }
}

/// Trains (or finds done, or evaluates untrained) one variant under `base`'s seed.
fn run_variant(
    engine: &Engine,
    v: &Variant,
    base: &TrainConfig,
    opts: &StudyOptions,
    dir: &Path,
) -> Result<VariantResult> {
    v.check_ranks(base.ranks)?;
    let cfg = v.config(base, opts.preset);
    if opts.progress {
        eprintln!("== {}, seed {} ({})", v.name, cfg.seed, dir.display());
    }
    cfg.validate()
        .map_err(|e| Error::Invalid(format!("variant {}: {e}", v.slug)))?;
    if engine.rank() != 0 {
        return follow_variant(engine, v, &cfg, dir);
    }
    let r = match v.method {
        // A variant that diverges is a result (the table says so), not the end of the study.
        // Its note keeps a rerun of the study from training it into the same NaN again.
        Some(_) => match std::fs::read_to_string(dir.join(DIVERGED_NOTE)) {
            Ok(m) => {
                plan(engine, &cfg, dir)?;
                VariantResult {
                    diverged: Some(m),
                    ..finished(v, &cfg, dir)?
                }
            }
            Err(_) => match run_trained(engine, v, &cfg, dir, opts.progress) {
                Err(Error::Diverged(m)) => {
                    eprintln!("{}: {m}", v.name);
                    write(&dir.join(DIVERGED_NOTE), &m)?;
                    VariantResult {
                        diverged: Some(m),
                        ran_now: true,
                        ..finished(v, &cfg, dir)?
                    }
                }
                r => r?,
            },
        },
        None => run_random(engine, v, &cfg, dir)?,
    };
    if opts.progress {
        eprintln!(
            "{}: linear accuracy {}{}",
            v.name,
            pct(r.final_accuracy),
            if r.ran_now { "" } else { " (already done)" }
        );
    }
    Ok(r)
}

/// Applies `key=value` overrides to a config through its JSON form, so every field of
/// `config.json` can be set; values parse as JSON (numbers, booleans) or else as strings.
pub fn apply_overrides(base: TrainConfig, overrides: &[String]) -> Result<TrainConfig> {
    if overrides.is_empty() {
        return Ok(base);
    }
    let mut json = serde_json::to_value(&base).map_err(|e| Error::Io(e.to_string()))?;
    let fields = json.as_object_mut().expect("a config is a JSON object");
    for o in overrides {
        let Some((key, value)) = o.split_once('=') else {
            return Err(Error::Invalid(format!(
                "--set {o:?}: expected KEY=VALUE, e.g. --set image_size=16"
            )));
        };
        let key = key.trim().replace('-', "_");
        let Some(old) = fields.get(&key) else {
            let mut known: Vec<&String> = fields.keys().collect();
            known.sort();
            let known: Vec<&str> = known.iter().map(|k| k.as_str()).collect();
            return Err(Error::Invalid(format!(
                "--set {key}: no such config field; known: {}",
                known.join(", ")
            )));
        };
        let parsed = serde_json::from_str::<Value>(value.trim())
            .ok()
            .filter(|v| !old.is_string() || v.is_string())
            .unwrap_or_else(|| Value::String(value.trim().to_string()));
        fields.insert(key.clone(), parsed);
        serde_json::from_value::<TrainConfig>(Value::Object(fields.clone())).map_err(|e| {
            Error::Invalid(format!(
                "--set {key}={value}: wrong type for this field ({e})"
            ))
        })?;
    }
    serde_json::from_value(json).map_err(|e| Error::Invalid(e.to_string()))
}

/// Whether a trained variant trains now, and whether from its checkpoint: rank 0 reads its
/// directory (a diverged note, a checkpoint, finished epochs) and every rank of a data-parallel
/// study follows that decision, so that all enter (or skip) the same training.
fn plan(engine: &Engine, cfg: &TrainConfig, dir: &Path) -> Result<(bool, bool)> {
    let mine = if engine.rank() == 0 {
        let resume = dir.join("checkpoint.bin").exists();
        let done = read_metrics(&dir.join("metrics.jsonl"))?.len();
        let diverged = dir.join(DIVERGED_NOTE).exists();
        let finished = resume && done >= cfg.epochs;
        [!(diverged || finished), resume]
    } else {
        [false, false]
    };
    let [train, resume] = match engine.collective() {
        Some(w) => crate::dist::rank0_flags(w.as_ref(), mine)?,
        None => mine,
    };
    Ok((train, resume))
}

/// A variant on a rank other than 0: it trains where rank 0 does and writes nothing (a
/// divergence is rank 0's to record; the random baseline and evaluations are rank 0's alone).
fn follow_variant(
    engine: &Engine,
    v: &Variant,
    cfg: &TrainConfig,
    dir: &Path,
) -> Result<VariantResult> {
    if v.method.is_some() {
        let (train, resume) = plan(engine, cfg, dir)?;
        if train {
            match train::train_with(engine, cfg, dir, resume, &train::RunControl::default()) {
                Err(Error::Diverged(_)) => {}
                r => {
                    r?;
                }
            }
        }
    }
    Ok(describe(v, cfg))
}

/// Trains a variant, continuing its checkpoint if there is one; skips one already finished.
fn run_trained(
    engine: &Engine,
    v: &Variant,
    cfg: &TrainConfig,
    dir: &Path,
    progress: bool,
) -> Result<VariantResult> {
    let (ran_now, resume) = plan(engine, cfg, dir)?;
    if ran_now {
        // Variants with one encoder and evaluation share one random baseline (the study's
        // `baselines/` folder), computed by the first of them.
        let ctl = train::RunControl {
            progress,
            shared_baselines: dir.parent().map(|study| study.join("baselines")),
            ..train::RunControl::default()
        };
        train::train_with(engine, cfg, dir, resume, &ctl)?;
    }
    Ok(VariantResult {
        ran_now,
        ..finished(v, cfg, dir)?
    })
}

/// A trained variant's result, read from its run directory.
fn finished(v: &Variant, cfg: &TrainConfig, dir: &Path) -> Result<VariantResult> {
    let metrics = read_metrics(&dir.join("metrics.jsonl"))?;
    let last = metrics.last();
    let field = |k: &str| last.and_then(|m| m.get(k)).and_then(Value::as_f64);
    let final_accuracy = metrics
        .iter()
        .rev()
        .find_map(|m| m.get("linear_accuracy").and_then(Value::as_f64));
    let last_of = |k: &str| {
        metrics
            .iter()
            .rev()
            .find_map(|m| m.get(k).and_then(Value::as_f64))
    };
    Ok(VariantResult {
        final_accuracy,
        final_accuracy_se: last_of("linear_accuracy_se"),
        final_knn_accuracy: last_of("knn_accuracy"),
        final_cos_pos: field("cos_pos"),
        final_cos_neg: field("cos_neg"),
        final_output_std: field("output_std"),
        output_std_reference: field("output_std_reference"),
        final_output_rank: field("output_rank"),
        final_embedding_rank: last_of("embedding_rank"),
        metrics,
        ..describe(v, cfg)
    })
}

/// The untrained baseline; its accuracy is kept in `result.json` so a resumed study reuses it.
fn run_random(
    engine: &Engine,
    v: &Variant,
    cfg: &TrainConfig,
    dir: &Path,
) -> Result<VariantResult> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
    let path = dir.join("result.json");
    let key = serde_json::to_value(cfg).map_err(|e| Error::Io(e.to_string()))?;
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(saved) = serde_json::from_str::<Value>(&text) {
            if saved.get("config") == Some(&key) {
                let knn = saved.get("knn_accuracy").and_then(Value::as_f64);
                // A result saved before the kNN monitor existed is computed again.
                if let (Some(acc), Some(_)) = (saved.get("accuracy").and_then(Value::as_f64), knn) {
                    return Ok(VariantResult {
                        final_accuracy: Some(acc),
                        final_accuracy_se: saved.get("accuracy_se").and_then(Value::as_f64),
                        final_knn_accuracy: knn,
                        final_embedding_rank: saved.get("embedding_rank").and_then(Value::as_f64),
                        ..describe(v, cfg)
                    });
                }
            }
        }
    }
    let r = train::evaluate_run(engine, dir, cfg, true)?;
    let saved = serde_json::json!({
        "config": key,
        "accuracy": r.probe.accuracy,
        "accuracy_se": r.probe.standard_error,
        "knn_accuracy": r.knn_accuracy,
        "embedding_rank": r.embedding_rank,
    });
    write(&path, &saved.to_string())?;
    Ok(VariantResult {
        final_accuracy: Some(r.probe.accuracy),
        final_accuracy_se: Some(r.probe.standard_error),
        final_knn_accuracy: Some(r.knn_accuracy),
        final_embedding_rank: Some(r.embedding_rank),
        ran_now: true,
        ..describe(v, cfg)
    })
}

fn describe(v: &Variant, cfg: &TrainConfig) -> VariantResult {
    let trained = v.method.is_some();
    let norm = |n: NormKind| if trained { n.to_string() } else { "-".into() };
    VariantResult {
        slug: v.slug.into(),
        seed: cfg.seed,
        name: v.name.into(),
        group: v.group.name().into(),
        encoder_norm: cfg.encoder_norm.to_string(),
        proj_norm: norm(v.proj_norm),
        pred_norm: norm(v.pred_norm),
        loss: v.loss_name().into(),
        contrastive: v.contrastive_kind().into(),
        optimizer: if trained {
            format!("{}, wd {}", cfg.optimizer, cfg.weight_decay)
        } else {
            "-".into()
        },
        metrics: Vec::new(),
        final_accuracy: None,
        final_accuracy_se: None,
        final_knn_accuracy: None,
        final_cos_pos: None,
        final_cos_neg: None,
        final_output_std: None,
        output_std_reference: None,
        final_output_rank: None,
        final_embedding_rank: None,
        seed_accuracy: v.seed_accuracy,
        ran_now: false,
        diverged: None,
    }
}

fn read_metrics(path: &Path) -> Result<Vec<Value>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| Error::Io(format!("{}: bad metrics line: {e}", path.display())))
        })
        .collect()
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::Io(format!("writing {}: {e}", path.display())))
}

fn pct(a: Option<f64>) -> String {
    a.map(|a| format!("{:.1}", a * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn write_outputs(out: &Path, s: &StudyResults) -> Result<()> {
    std::fs::create_dir_all(out)
        .map_err(|e| Error::Io(format!("creating {}: {e}", out.display())))?;
    let json = serde_json::to_string_pretty(s).map_err(|e| Error::Io(e.to_string()))?;
    write(&out.join("results.json"), &json)?;
    write(&out.join("table.md"), &table(s))?;
    plot::accuracy_figure(s).save_png(&out.join("accuracy.png"))?;
    plot::cosine_figure(s).save_png(&out.join("cosine.png"))?;
    plot::std_figure(s).save_png(&out.join("std.png"))?;
    plot::rank_figure(s).save_png(&out.join("rank.png"))?;
    Ok(())
}

/// The seed's table with this run's numbers beside the seed's, and the collapse diagnostics.
pub fn table(s: &StudyResults) -> String {
    let mut t = format!(
        "Preset {}, dataset {}, {} epochs, adapter {}, wall time {:.0} s (this invocation), \
         training time {:.0} s (all epochs)\n\n",
        s.preset, s.dataset, s.epochs, s.adapter, s.wall_seconds, s.train_seconds
    );
    t.push_str(
        "| Name | Encoder Norm | Projection MLP Norm | Prediction MLP Norm | Loss Function | \
         Contrastive | Optimizer | Accuracy (%) | kNN accuracy (%) | Seed's accuracy (%) | \
         cos+ / cos- | Output std (1/√d) | Effective rank: output / embedding |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let num = |v: Option<f64>, digits: usize| {
        v.map(|v| format!("{v:.digits$}"))
            .unwrap_or_else(|| "-".into())
    };
    for r in &s.variants {
        let cos = match (r.final_cos_pos, r.final_cos_neg) {
            (Some(p), Some(n)) => format!("{p:.4} / {n:.4}"),
            _ => "-".into(),
        };
        let std = match (r.final_output_std, r.output_std_reference) {
            (Some(v), Some(reference)) => format!("{v:.4} ({reference:.4})"),
            _ => "-".into(),
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |\n",
            match &r.diverged {
                Some(_) => format!("{} (diverged)", r.name),
                None => r.name.clone(),
            },
            title(&r.encoder_norm),
            title(&r.proj_norm),
            title(&r.pred_norm),
            r.loss,
            r.contrastive,
            r.optimizer,
            match r.final_accuracy_se {
                Some(se) => format!("{} ± {:.1}", pct(r.final_accuracy), se * 100.0),
                None => pct(r.final_accuracy),
            },
            pct(r.final_knn_accuracy),
            num(r.seed_accuracy, 1),
            cos,
            std,
            num(r.final_output_rank, 1),
            num(r.final_embedding_rank, 1),
        ));
    }
    if s.seeds.len() > 1 {
        t.push_str(&format!("\nThe rows above are seed {}'s.\n\n", s.seeds[0]));
        t.push_str(&summary::seeds_table(&s.summary, &s.seeds));
    }
    t
}

fn title(norm: &str) -> String {
    match norm {
        "batch" => "Batch Norm".into(),
        "layer" => "Layer Norm".into(),
        "group" => "Group Norm".into(),
        "group-ws" => "Group Norm + WS".into(),
        "none" => "No Norm".into(),
        other => other.into(),
    }
}
