//! The training step of `byol train`: `cargo bench --bench step [-- --samples N] [--config NAME]
//! [--conv direct|direct-uniform|unfold] [--tune] [--sync-bn] [--bn-groups G]`. With `--tune` the convolutions'
//! kernels are chosen by measurement (the tune cache, see `byol tune`), and the table of choices
//! is printed. `--bn-groups G` times ghost batch norm (each of G slices of the batch normalized
//! on its own).
//!
//! Data-parallel (a build with `--features mpi`, the bench binary started by mpirun, e.g.
//! `mpirun -np 2 target/release/deps/step-HASH --config tiny`): each rank steps on its 1/R of
//! the global batch and the step includes the gradient all-reduce; rank 0 prints, with the share
//! of its step spent in collectives (waiting for the other ranks included).
//!
//! Each configuration is a `TrainConfig` (as `byol train` builds one from its flags) and each step
//! is `Trainer::step`, the very function the training loop calls: two views through online and
//! target networks, the symmetric loss, backward, the configured optimizer, the EMA update and the
//! collapse diagnostics. Prints the median time of a step (waiting for the GPU at its end),
//! images/s, the buffer pool's peak bytes in use and dispatches per step. Views are augmented on
//! the GPU from random images already uploaded, so this measures the step alone (the loader bench
//! measures data).

use byol::data::augment::{augment_batch, upload_images};
use byol::engine::Distributed;
use byol::nn::Stem;
use byol::rng::Rng;
use byol::train::{TrainConfig, Trainer};
use byol::{ConvVariant, Engine, EngineOptions, TuneMode};

struct StepConfig {
    name: &'static str,
    stem: Stem,
    width: f64,
    size: usize,
    batch: usize,
    hidden: usize,
    out: usize,
}

const CONFIGS: &[StepConfig] = &[
    StepConfig {
        name: "tiny (CI-size)",
        stem: Stem::Cifar,
        width: 0.125,
        size: 16,
        batch: 32,
        hidden: 256,
        out: 64,
    },
    StepConfig {
        name: "small (quick preset)",
        stem: Stem::Cifar,
        width: 0.25,
        size: 32,
        batch: 128,
        hidden: 512,
        out: 128,
    },
    StepConfig {
        name: "resnet18 96px b256 (seed)",
        stem: Stem::ImageNet,
        width: 1.0,
        size: 96,
        batch: 256,
        hidden: 4096,
        out: 256,
    },
];

impl StepConfig {
    /// The configuration `byol train` would run with these sizes (every other flag its default).
    fn train_config(&self) -> TrainConfig {
        TrainConfig {
            stem: self.stem,
            width_mult: self.width,
            image_size: self.size,
            batch_size: self.batch,
            proj_hidden: self.hidden,
            proj_out: self.out,
            pred_hidden: self.hidden,
            ..TrainConfig::default()
        }
    }
}

fn main() {
    byol::device::quiet_device_select_layer();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut samples = 10usize;
    let mut only: Option<String> = None;
    let mut conv = ConvVariant::Auto;
    let mut tune = TuneMode::Off;
    let (mut sync_bn, mut bn_groups) = (false, 1usize);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--samples" => {
                i += 1;
                samples = args
                    .get(i)
                    .and_then(|s| s.parse().ok())
                    .expect("--samples N");
            }
            "--config" => {
                i += 1;
                only = args.get(i).cloned();
            }
            "--tune" => tune = TuneMode::On,
            "--sync-bn" => sync_bn = true,
            "--bn-groups" => {
                i += 1;
                bn_groups = args
                    .get(i)
                    .and_then(|s| s.parse().ok())
                    .expect("--bn-groups G");
            }
            "--conv" => {
                i += 1;
                conv = match args.get(i).map(String::as_str) {
                    Some("direct") => ConvVariant::Direct,
                    Some("direct-uniform") => ConvVariant::DirectUniform,
                    Some("unfold") => ConvVariant::Unfold,
                    _ => panic!("--conv direct|direct-uniform|unfold"),
                };
            }
            _ => {}
        }
        i += 1;
    }
    let fail = |e: byol::Error| -> ! {
        eprintln!("error: {e}");
        std::process::exit(1)
    };
    let world = byol::dist::init().unwrap_or_else(|e| fail(e));
    let (rank, ranks) = world.as_ref().map_or((0, 1), |w| (w.rank(), w.size()));
    let options = EngineOptions {
        conv,
        tune,
        adapter_slot: rank,
        ..Default::default()
    };
    let engine = Engine::new(options).unwrap_or_else(|e| fail(e));
    if let Some(w) = &world {
        engine.set_distributed(Distributed {
            world: w.clone(),
            sync_batch_norm: sync_bn,
        });
    }
    // Only rank 0 reports.
    let say = |line: &str| {
        if rank == 0 {
            println!("{line}");
        }
    };
    say(&format!(
        "adapter: {}  conv: {:?}  samples: {samples}  ranks: {ranks}{}{}",
        engine.adapter_name(),
        engine.conv_variant(),
        if sync_bn { "  --sync-bn" } else { "" },
        if bn_groups > 1 {
            format!("  --bn-groups {bn_groups}")
        } else {
            String::new()
        }
    ));
    say("| config | median step | images/s | peak GPU memory (pool) | dispatches/step | in collectives |");
    say("|---|---|---|---|---|---|");
    for c in CONFIGS {
        if only.as_ref().is_some_and(|o| !c.name.contains(o.as_str())) {
            continue;
        }
        let cfg = TrainConfig {
            ranks,
            sync_bn,
            bn_groups,
            ..c.train_config()
        };
        if let Err(e) = cfg.validate() {
            fail(e);
        }
        let mut trainer = Trainer::new(&engine, &cfg, 1000).expect("trainer");
        let views = cfg.augmentations().expect("augmentations");
        // This rank's shard of the global batch (the whole batch in one process).
        let local = c.batch / ranks;
        let mut rng = Rng::new(1 + rank as u64);
        let pixels: Vec<u8> = (0..local * c.size * c.size * 3)
            .map(|_| rng.below(256) as u8)
            .collect();
        let images = upload_images(&engine, &pixels).expect("upload");
        let mut times = Vec::new();
        let mut collective_secs = Vec::new();
        let mut dispatches = 0;
        for s in 0..samples + 2 {
            let params: Vec<Vec<_>> = views
                .iter()
                .map(|v| {
                    (0..local)
                        .map(|_| v.sample(&mut rng, c.size, c.size))
                        .collect()
                })
                .collect();
            engine.sync().expect("sync");
            let before = engine.record_stats().dispatches;
            let in_collectives = || world.as_ref().map_or(0.0, |w| w.time_spent().1);
            let c0 = in_collectives();
            let t0 = std::time::Instant::now();
            let view = |i: usize| {
                augment_batch(
                    &engine, &images, c.size, c.size, &params[i], &views[i], c.size,
                )
                .expect("view")
            };
            let (v1, v2) = (view(0), view(1));
            trainer.step(&v1, &v2).expect("step");
            dispatches = engine.record_stats().dispatches - before;
            engine.sync().expect("sync");
            if s >= 2 {
                times.push(t0.elapsed().as_secs_f64());
                collective_secs.push(in_collectives() - c0);
            }
        }
        if tune == TuneMode::On && rank == 0 {
            for c in engine.kernel_choices() {
                eprintln!("  {:<60} {:<8} {:?}", c.key, c.kernel, c.source);
            }
        }
        if rank == 0 {
            for (k, n, secs) in engine.profile_report().into_iter().take(25) {
                eprintln!("  {k:<40} {n:>6} calls {:>9.1} ms", secs * 1e3);
            }
        }
        let share = collective_secs.iter().sum::<f64>() / times.iter().sum::<f64>();
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let t = times[times.len() / 2];
        say(&format!(
            "| {} ({}px, width {}, batch {}) | {:.1} ms | {:.1} | {:.1} MiB | {dispatches} | {} |",
            c.name,
            c.size,
            c.width,
            c.batch,
            t * 1e3,
            c.batch as f64 / t,
            engine.pool_stats().peak_bytes_in_use as f64 / (1 << 20) as f64,
            if ranks > 1 {
                format!("{:.0} %", share * 100.0)
            } else {
                "-".to_string()
            }
        ));
    }
}
