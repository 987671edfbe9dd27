//! `byol study`: the seed's experiment end to end. Every variant of its table is trained from one
//! base config with the same seed (same initialization, data order and augmentations), evaluated
//! linearly every epoch, and summarized as `results.json`, `table.md` and two figures.
//! Each variant runs in its own directory under `OUT/runs/`, so an interrupted study resumes.

pub mod plot;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::train::{self, TrainConfig};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How big a study is: from a CI smoke test to the seed's exact setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    Smoke,
    Quick,
    Seed,
}

impl Preset {
    pub fn parse(s: &str) -> Result<Preset> {
        match s {
            "smoke" => Ok(Preset::Smoke),
            "quick" => Ok(Preset::Quick),
            "seed" => Ok(Preset::Seed),
            other => Err(Error::Invalid(format!(
                "unknown preset {other:?}: use smoke, quick or seed"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Smoke => "smoke",
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
                stem: "cifar".into(),
                log_every: 1000,
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
                stem: "cifar".into(),
                ..base
            },
            // SEED-PRESET.md, as far as TrainConfig can say it.
            Preset::Seed => TrainConfig {
                dataset: String::new(), // --dataset stl10:DIR is required
                image_size: 96,
                stem: "imagenet".into(),
                width_mult: 1.0,
                proj_hidden: 512,
                proj_out: 128,
                pred_hidden: 512,
                batch_size: 256,
                epochs: 10,
                optimizer: "sgd".into(),
                lr: 0.8,
                lr_scale: false,
                cosine: false,
                warmup_epochs: 0.0,
                momentum: 0.9,
                weight_decay: 1e-4,
                tau: 0.996,
                tau_schedule: false,
                augment: "seed".into(),
                temperature: 0.2,
                eval_protocol: "half-test".into(),
                eval_images: 0,
                ..base
            },
        }
    }
}

/// One row of the seed's table.
#[derive(Clone, Debug)]
pub struct Variant {
    pub slug: &'static str,
    pub name: &'static str,
    /// None: the untrained "Random" baseline.
    pub method: Option<&'static str>,
    pub proj_norm: &'static str,
    pub pred_norm: &'static str,
    /// The seed's linear accuracy (%) after 10 epochs on STL-10.
    pub seed_accuracy: f64,
}

/// The seed's table, in its order.
pub fn variants() -> Vec<Variant> {
    let v = |slug, name, method, proj_norm, pred_norm, seed_accuracy| Variant {
        slug,
        name,
        method,
        proj_norm,
        pred_norm,
        seed_accuracy,
    };
    vec![
        v(
            "contrastive",
            "Contrastive Loss",
            Some("contrastive"),
            "none",
            "none",
            44.1,
        ),
        v("byol", "BYOL", Some("byol"), "batch", "batch", 57.7),
        v(
            "proj-bn",
            "Projection BN Only",
            Some("byol"),
            "batch",
            "none",
            55.3,
        ),
        v(
            "pred-bn",
            "Prediction BN Only",
            Some("byol"),
            "none",
            "batch",
            48.0,
        ),
        v(
            "no-norm",
            "No Normalization",
            Some("byol"),
            "none",
            "none",
            28.3,
        ),
        v(
            "layer-norm",
            "Layer Norm",
            Some("byol"),
            "layer",
            "layer",
            29.4,
        ),
        v("random", "Random", None, "batch", "batch", 28.8),
    ]
}

impl Variant {
    /// The variant's training config, derived from `base` (only method and MLP norms change).
    pub fn config(&self, base: &TrainConfig, preset: Preset) -> TrainConfig {
        let mut cfg = base.clone();
        cfg.method = self.method.unwrap_or("byol").into();
        cfg.proj_norm = self.proj_norm.into();
        cfg.pred_norm = self.pred_norm.into();
        // The seed trained its contrastive row at lr 0.02 (its BYOL rows at 0.8).
        if preset == Preset::Seed && self.method == Some("contrastive") {
            cfg.lr = 0.02;
        }
        cfg
    }

    pub fn loss_name(&self) -> &'static str {
        match self.method {
            Some("contrastive") => "Cross Entropy",
            Some(_) => "L2",
            None => "-",
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
    /// Slugs of the variants to run (None: all).
    pub variants: Option<Vec<String>>,
    pub progress: bool,
}

/// One variant's results, as written to `results.json`.
#[derive(Serialize, Clone, Debug)]
pub struct VariantResult {
    pub slug: String,
    pub name: String,
    pub proj_norm: String,
    pub pred_norm: String,
    pub loss: String,
    /// The lines of the variant's `metrics.jsonl` (empty for "Random").
    pub metrics: Vec<Value>,
    /// Linear accuracy in [0, 1] after the last epoch (or of the untrained encoder).
    pub final_accuracy: Option<f64>,
    pub final_cos_pos: Option<f64>,
    pub final_cos_neg: Option<f64>,
    pub final_output_std: Option<f64>,
    pub seed_accuracy: f64,
    /// Whether this invocation trained (or evaluated) it, rather than finding it done.
    pub ran_now: bool,
}

/// The whole study, as written to `results.json`.
#[derive(Serialize, Clone, Debug)]
pub struct StudyResults {
    pub preset: String,
    pub dataset: String,
    pub adapter: String,
    pub epochs: usize,
    /// Seconds this invocation took.
    pub wall_seconds: f64,
    /// Seconds of training summed over every variant's epochs (across invocations).
    pub train_seconds: f64,
    pub variants: Vec<VariantResult>,
}

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
    base.validate()?;
    let chosen = select(opts.variants.as_deref())?;
    let runs = opts.out.join("runs");
    let mut results = Vec::new();
    for v in &chosen {
        let cfg = v.config(&base, opts.preset);
        let dir = runs.join(v.slug);
        if opts.progress {
            eprintln!("== {} ({})", v.name, dir.display());
        }
        let r = match v.method {
            Some(_) => run_trained(engine, v, &cfg, &dir, opts.progress)?,
            None => run_random(engine, v, &cfg, &dir)?,
        };
        if opts.progress {
            eprintln!(
                "{}: linear accuracy {}{}",
                v.name,
                pct(r.final_accuracy),
                if r.ran_now { "" } else { " (already done)" }
            );
        }
        results.push(r);
    }
    let train_seconds = results
        .iter()
        .flat_map(|r| r.metrics.iter())
        .filter_map(|m| m.get("seconds").and_then(Value::as_f64))
        .sum();
    let study = StudyResults {
        preset: opts.preset.name().into(),
        dataset: base.dataset.clone(),
        adapter: engine.adapter_name(),
        epochs: base.epochs,
        wall_seconds: t0.elapsed().as_secs_f64(),
        train_seconds,
        variants: results,
    };
    write_outputs(&opts.out, &study)?;
    Ok(study)
}

fn select(slugs: Option<&[String]>) -> Result<Vec<Variant>> {
    let all = variants();
    let Some(slugs) = slugs else {
        return Ok(all);
    };
    for s in slugs {
        if !all.iter().any(|v| v.slug == s) {
            let known: Vec<_> = all.iter().map(|v| v.slug).collect();
            return Err(Error::Invalid(format!(
                "unknown variant {s:?}: use some of {}",
                known.join(",")
            )));
        }
    }
    Ok(all
        .into_iter()
        .filter(|v| slugs.iter().any(|s| s == v.slug))
        .collect())
}

/// Trains a variant, continuing its checkpoint if there is one; skips one already finished.
fn run_trained(
    engine: &Engine,
    v: &Variant,
    cfg: &TrainConfig,
    dir: &Path,
    progress: bool,
) -> Result<VariantResult> {
    let resume = dir.join("checkpoint.bin").exists();
    let done = read_metrics(&dir.join("metrics.jsonl"))?.len();
    let ran_now = !(resume && done >= cfg.epochs);
    if ran_now {
        train::train(engine, cfg, dir, resume, progress)?;
    }
    let metrics = read_metrics(&dir.join("metrics.jsonl"))?;
    let last = metrics.last();
    let field = |k: &str| last.and_then(|m| m.get(k)).and_then(Value::as_f64);
    let final_accuracy = metrics
        .iter()
        .rev()
        .find_map(|m| m.get("linear_accuracy").and_then(Value::as_f64));
    Ok(VariantResult {
        final_accuracy,
        final_cos_pos: field("cos_pos"),
        final_cos_neg: field("cos_neg"),
        final_output_std: field("output_std"),
        metrics,
        ran_now,
        ..describe(v)
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
                if let Some(acc) = saved.get("accuracy").and_then(Value::as_f64) {
                    return Ok(VariantResult {
                        final_accuracy: Some(acc),
                        ..describe(v)
                    });
                }
            }
        }
    }
    let r = train::evaluate_run(engine, dir, cfg, true)?;
    let saved = serde_json::json!({ "config": key, "accuracy": r.accuracy });
    write(&path, &saved.to_string())?;
    Ok(VariantResult {
        final_accuracy: Some(r.accuracy),
        ran_now: true,
        ..describe(v)
    })
}

fn describe(v: &Variant) -> VariantResult {
    let norm = |n: &str| {
        if v.method.is_none() {
            "-".into()
        } else {
            n.to_string()
        }
    };
    VariantResult {
        slug: v.slug.into(),
        name: v.name.into(),
        proj_norm: norm(v.proj_norm),
        pred_norm: norm(v.pred_norm),
        loss: v.loss_name().into(),
        metrics: Vec::new(),
        final_accuracy: None,
        final_cos_pos: None,
        final_cos_neg: None,
        final_output_std: None,
        seed_accuracy: v.seed_accuracy,
        ran_now: false,
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
    Ok(())
}

/// The seed's table with this run's numbers beside the seed's.
pub fn table(s: &StudyResults) -> String {
    let mut t = format!(
        "Preset {}, dataset {}, {} epochs, adapter {}, wall time {:.0} s (this invocation), \
         training time {:.0} s (all epochs)\n\n",
        s.preset, s.dataset, s.epochs, s.adapter, s.wall_seconds, s.train_seconds
    );
    t.push_str(
        "| Name | Projection MLP Norm | Prediction MLP Norm | Loss Function | Contrastive | \
         Accuracy (%) | Seed's accuracy (%) | cos+ / cos- |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in &s.variants {
        let contrastive = match r.loss.as_str() {
            "Cross Entropy" => "Explicit",
            "-" => "-",
            _ if r.proj_norm == "batch" || r.pred_norm == "batch" => "Implicit",
            _ => "None",
        };
        let cos = match (r.final_cos_pos, r.final_cos_neg) {
            (Some(p), Some(n)) => format!("{p:.4} / {n:.4}"),
            _ => "-".into(),
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            title(&r.proj_norm),
            title(&r.pred_norm),
            r.loss,
            contrastive,
            pct(r.final_accuracy),
            r.seed_accuracy,
            cos
        ));
    }
    t
}

fn title(norm: &str) -> String {
    match norm {
        "batch" => "Batch Norm".into(),
        "layer" => "Layer Norm".into(),
        "none" => "No Norm".into(),
        other => other.into(),
    }
}
