//! End-to-end BYOL training step: `cargo bench --bench step [-- --samples N] [--config NAME]`.
//!
//! Prints, per configuration, the median time of one full step (two views through online and
//! target networks, symmetric loss, backward, SGD on all parameters, EMA update), images/s and the
//! buffer pool's peak bytes in use. Views come from random images already on the GPU, so this
//! measures the training step alone (the loader bench measures data).

use byol::data::augment::{augment_batch, upload_images, AugmentConfig};
use byol::nn::{EncoderNorm, NormKind, ResNetConfig, Stem};
use byol::ops;
use byol::rng::Rng;
use byol::ssl::{Method, ModelConfig, SslModel};
use byol::{Engine, EngineOptions};

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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut samples = 10usize;
    let mut only: Option<String> = None;
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
            _ => {}
        }
        i += 1;
    }
    let engine = Engine::new(EngineOptions::default()).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    println!("adapter: {}  samples: {samples}", engine.adapter_name());
    println!("| config | median step | images/s | peak GPU memory (pool) | dispatches/step |");
    println!("|---|---|---|---|---|");
    for c in CONFIGS {
        if only.as_ref().is_some_and(|o| !c.name.contains(o.as_str())) {
            continue;
        }
        let cfg = ModelConfig {
            method: Method::Byol,
            encoder: ResNetConfig {
                stem: c.stem,
                width_mult: c.width,
                norm: EncoderNorm::Batch,
            },
            proj_hidden: c.hidden,
            proj_out: c.out,
            pred_hidden: c.hidden,
            proj_norm: NormKind::Batch,
            pred_norm: NormKind::Batch,
            temperature: 0.2,
            contrastive_queue: false,
            queue_size: 1,
            seed: 0,
        };
        let mut model = SslModel::new(&engine, cfg).expect("model");
        let mut opts: Vec<ops::Sgd> = model
            .trainable()
            .into_iter()
            .map(|p| ops::Sgd::new(p, 0.9, 1e-4).expect("sgd"))
            .collect();
        let mut rng = Rng::new(1);
        let pixels: Vec<u8> = (0..c.batch * c.size * c.size * 3)
            .map(|_| rng.below(256) as u8)
            .collect();
        let images = upload_images(&engine, &pixels).expect("upload");
        let views = AugmentConfig::byol();
        let mut times = Vec::new();
        let mut dispatches = 0;
        for s in 0..samples + 2 {
            let before = engine.record_stats().dispatches;
            let params1: Vec<_> = (0..c.batch)
                .map(|_| views[0].sample(&mut rng, c.size, c.size))
                .collect();
            let params2: Vec<_> = (0..c.batch)
                .map(|_| views[1].sample(&mut rng, c.size, c.size))
                .collect();
            let t0 = std::time::Instant::now();
            let v1 = augment_batch(
                &engine, &images, c.size, c.size, &params1, &views[0], c.size,
            )
            .expect("view");
            let v2 = augment_batch(
                &engine, &images, c.size, c.size, &params2, &views[1], c.size,
            )
            .expect("view");
            let out = model.step_loss(&v1, &v2).expect("loss");
            let grads = engine.backward(&out.loss).expect("backward");
            for o in &mut opts {
                o.step(&grads, 0.05).expect("sgd");
            }
            model.update_target(0.99).expect("ema");
            drop(grads);
            out.loss.item().expect("loss");
            if s >= 2 {
                times.push(t0.elapsed().as_secs_f64());
            }
            dispatches = engine.record_stats().dispatches - before;
        }
        for (k, n, secs) in engine.profile_report().into_iter().take(15) {
            eprintln!("  {k:<40} {n:>6} calls {:>9.1} ms", secs * 1e3);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let t = times[times.len() / 2];
        println!(
            "| {} ({}px, width {}, batch {}) | {:.1} ms | {:.1} | {:.1} MiB | {dispatches} |",
            c.name,
            c.size,
            c.width,
            c.batch,
            t * 1e3,
            c.batch as f64 / t,
            engine.pool_stats().peak_bytes_in_use as f64 / (1 << 20) as f64
        );
    }
}
