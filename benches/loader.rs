//! Data pipeline throughput: `cargo bench --bench loader [-- --batches N]`.
//!
//! Prints images/s of the background loader alone (reading the built-in synthetic set and drawing
//! BYOL's augmentation parameters), and of loader + upload + both GPU views, at 32x32 and 96x96
//! output, batch 256.

use byol::data::augment::AugmentConfig;
use byol::data::loader::{Loader, LoaderOptions};
use byol::data::views::two_views;
use byol::data::{open, ImageSet, Split};
use byol::rng::Rng;
use byol::Engine;
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 256;
const WARMUP: usize = 2;

fn loader(set: &Arc<dyn ImageSet>) -> Loader {
    let opts = LoaderOptions {
        batch_size: BATCH,
        seed: 0,
        augment: Some(AugmentConfig::byol()),
        ..Default::default()
    };
    Loader::new(set.clone(), opts).expect("loader")
}

/// Images per second over `batches` batches, after warm-up; `step` runs on each batch.
fn rate(
    set: &Arc<dyn ImageSet>,
    batches: usize,
    mut step: impl FnMut(&byol::data::loader::HostBatch),
) -> f64 {
    let mut l = loader(set);
    let mut next = || l.next_batch().expect("endless").expect("read");
    for _ in 0..WARMUP {
        step(&next());
    }
    let start = Instant::now();
    for _ in 0..batches {
        step(&next());
    }
    (batches * BATCH) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    byol::device::quiet_device_select_layer();
    let mut batches = 10;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--batches") {
        batches = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--batches N");
    }
    let engine = Engine::default_engine().expect("an adapter");
    println!("adapter: {}", engine.adapter_name());
    let [c1, c2] = AugmentConfig::byol();
    for size in [32usize, 96] {
        let spec = format!("synthetic:{}:{size}", (batches + WARMUP + 2) * BATCH);
        let set: Arc<dyn ImageSet> =
            Arc::from(open(&spec, Split::Pretrain).expect("synthetic set"));
        let alone = rate(&set, batches, |_| {});
        let mut rng = Rng::new(0);
        let gpu = rate(&set, batches, |b| {
            let (v1, v2) = two_views(&engine, b, &c1, &c2, size, Some(&mut rng)).expect("views");
            drop((v1, v2));
            engine.sync().expect("sync");
        });
        println!(
            "{size}x{size} batch {BATCH}: loader alone {alone:>9.0} images/s | loader + upload + two views {gpu:>8.0} images/s"
        );
    }
}
