//! `byol tune [train flags]`: fills the tune cache for a training configuration ahead of a run
//! (one step on the first batch of its dataset, every candidate kernel timed where a pass has
//! more than one) and prints the table of choices. `byol train` measures the same way at its
//! first step; this only moves that wait, and shows what was chosen and why.

use super::train::TrainArgs;
use crate::engine::ChoiceSource;
use crate::error::{Error, Result};
use crate::train;
use crate::TuneMode;

pub fn run(args: &TrainArgs, dev: &super::Device, given: &[String]) -> Result<()> {
    if let Some(dir) = &args.resume {
        return Err(Error::Invalid(format!(
            "byol tune measures the configuration its flags give, not a run: drop --resume {} \
             (`byol train --resume` replays the kernels that run recorded in its kernels.json)",
            dir.display()
        )));
    }
    let dev = super::Device {
        tune: TuneMode::On,
        ..dev.clone()
    };
    let engine = dev.open()?;
    let mut cfg = args.to_config();
    if engine.gpu().is_software() {
        cfg.apply_cpu_size(|f| given.iter().any(|g| g == f));
    }
    println!("adapter: {}", engine.adapter_name());
    match engine.tune_cache_file() {
        Some(p) => println!("tune cache: {}", p.display()),
        None => println!("tune cache: none (set BYOL_TUNE_CACHE or HOME to keep the choices)"),
    }
    println!(
        "config: {} on {}, {}px, width {}, batch {}",
        cfg.method, cfg.dataset, cfg.image_size, cfg.width_mult, cfg.batch_size
    );
    train::tune_step(&engine, &cfg)?;
    println!();
    println!("| pass and shape | kernel | from | candidates (best of 3 runs) |");
    println!("|---|---|---|---|");
    for c in engine.kernel_choices() {
        let from = match c.source {
            ChoiceSource::Default => "static default",
            ChoiceSource::Measured => "measured now",
            ChoiceSource::Cache => "cache",
            ChoiceSource::Run => "run",
        };
        let timings: Vec<String> = c
            .timings
            .iter()
            .map(|(k, t)| match t {
                Ok(s) => format!("{k} {:.3} ms", s * 1e3),
                Err(e) => format!("{k} failed: {e}"),
            })
            .collect();
        println!(
            "| {} | {} | {from} | {} |",
            c.key,
            c.kernel,
            timings.join(", ")
        );
    }
    Ok(())
}
