//! `byol study`: flags to [`StudyOptions`], then the study.

use crate::error::Result;
use crate::study::{self, Preset, StudyOptions};
use clap::Args;
use std::path::PathBuf;

/// Flags of `byol study`.
#[derive(Args, Debug, Clone)]
pub struct StudyArgs {
    /// smoke (a plumbing check for CI: a few minutes on a CPU) | cpu (decides on a CPU: 16 px, width 1/8, 3 x 200 steps; the seven seed rows with --seeds 3 in about 1.5 hours on 2 cores) | quick (synthetic, minutes on a GPU) | seed (the seed's setup; needs --dataset stl10:DIR)
    #[arg(long, default_value = "quick")]
    pub preset: String,
    /// Overrides the preset's dataset: a SPEC as --dataset of `byol train` takes.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Study directory: runs/<variant>/, results.json, table.md, accuracy.png, cosine.png,
    /// std.png, rank.png.
    #[arg(long, default_value = "study")]
    pub out: PathBuf,
    /// Overrides the preset's number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Comma-separated variants or groups (default: seed). Groups: seed (contrastive, byol,
    /// proj-bn, pred-bn, no-norm, layer-norm, random), appendix (no-bn-sgd, no-bn-lars, no-bn-wd,
    /// gn-ws), beyond (simsiam, moco, simclr), parallel (bn-global, bn-shards-2, bn-shards-4,
    /// bn-shards-8: batch norm over B, B/2, B/4, B/8), all.
    #[arg(long, value_delimiter = ',')]
    pub variants: Option<Vec<String>>,
    /// Overrides one field of the preset's config.json, e.g. --set image_size=16 --set lr=0.4
    /// (repeatable; every variant derives from the changed config).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Train every variant under this many seeds: the config's seed, seed + 1, ... (one seed
    /// changes initialization, data order and augmentations alike for every variant, so rows are
    /// paired). table.md and results.json then give means, sds, every seed's value and paired
    /// differences to Random and BYOL with 95% intervals.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

/// `byol study`, in one process or as every rank of `mpirun -np R byol study ...`: each variant
/// then trains data-parallel, rank 0 alone writing the study directory.
pub fn run(args: &StudyArgs, dev: &super::Device) -> Result<()> {
    let world = crate::dist::init()?;
    let result = run_rank(args, dev, world.clone());
    if let (Err(e), Some(_)) = (&result, &world) {
        // The other ranks would wait for this one forever: stop them all.
        crate::dist::fail(world.as_ref(), &e.to_string());
    }
    result
}

fn run_rank(
    args: &StudyArgs,
    dev: &super::Device,
    world: Option<std::rc::Rc<dyn crate::engine::Collective>>,
) -> Result<()> {
    let rank = world.as_ref().map_or(0, |w| w.rank());
    let engine = dev.open_slot(rank)?;
    if let Some(w) = &world {
        engine.set_distributed(crate::engine::Distributed {
            world: w.clone(),
            sync_batch_norm: false,
        });
    }
    let quiet = args.quiet || rank != 0;
    let opts = StudyOptions {
        preset: Preset::parse(&args.preset)?,
        dataset: args.dataset.clone(),
        out: args.out.clone(),
        epochs: args.epochs,
        variants: args.variants.clone(),
        overrides: args.overrides.clone(),
        seeds: args.seeds,
        progress: !quiet,
    };
    if !quiet {
        eprintln!("adapter: {}", engine.adapter_name());
        if engine.gpu().is_software() && !matches!(opts.preset, Preset::Smoke | Preset::Cpu) {
            eprintln!(
                "note: this is a software (CPU) adapter, some hundred times slower than a GPU; \
                 --preset cpu decides in about 2 hours here (--preset smoke checks the plumbing in minutes), or shrink a preset with --set (README, The study)"
            );
        }
    }
    let s = study::run_study(&engine, &opts)?;
    if rank != 0 {
        return Ok(());
    }
    println!("{}", study::table(&s));
    println!(
        "results in {} (results.json, table.md, accuracy.png, cosine.png, std.png, rank.png)",
        args.out.display()
    );
    Ok(())
}
