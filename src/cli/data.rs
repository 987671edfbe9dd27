//! `byol data`: look at datasets, fetch them, and see what the network sees.

use crate::data::{self, ImageSet, Split};
use crate::error::{Error, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Print counts, image shape, classes and per-channel mean/std of a dataset.
    Info {
        #[arg(long, default_value = "synthetic", help = crate::data::spec::SPEC_FORMS)]
        dataset: String,
    },
    /// Download a dataset, check its published checksum and unpack it.
    Fetch {
        /// stl10 | cifar10 | fashion-mnist
        name: String,
        /// Where to put it.
        #[arg(long, default_value = "data")]
        dir: PathBuf,
    },
    /// Write a PNG grid of original images and their two augmented views.
    Show {
        #[arg(long, default_value = "synthetic", help = crate::data::spec::SPEC_FORMS)]
        dataset: String,
        /// The PNG to write: one row per image, its original and two augmented views.
        #[arg(long, default_value = "pairs.png")]
        out: PathBuf,
    },
}

pub fn run(cmd: DataCommand, dev: &super::Device) -> Result<()> {
    match cmd {
        DataCommand::Info { dataset } => info(&dataset),
        DataCommand::Fetch { name, dir } => fetch(&name, &dir),
        DataCommand::Show { dataset, out } => {
            let engine = dev.open()?;
            super::data_show::show(&engine, &dataset, &out, 16)?;
            println!("wrote {} (original | view 1 | view 2)", out.display());
            Ok(())
        }
    }
}

/// How many images `byol data info` averages over for the channel statistics.
pub const STATS_SAMPLE: usize = 10_000;

fn info(spec: &str) -> Result<()> {
    let opened: Vec<(&str, Result<Box<dyn ImageSet>>)> = [
        ("pretrain", Split::Pretrain),
        ("train", Split::Train),
        ("test", Split::Test),
    ]
    .into_iter()
    .map(|(label, split)| (label, data::open(spec, split)))
    .collect();
    // Nothing opens: a bad SPEC or folder, said once.
    if opened.iter().all(|(_, r)| r.is_err()) {
        let first = opened.into_iter().find_map(|(_, r)| r.err());
        return Err(first.unwrap_or_else(|| Error::Invalid(format!("cannot open {spec}"))));
    }
    println!("dataset {spec}");
    for (label, result) in &opened {
        match result {
            Ok(set) => {
                let labeled = (0..set.len()).filter(|&i| set.label(i).is_some()).count();
                println!(
                    "  {label:<9} {:>8} images ({labeled} labeled)  {}",
                    set.len(),
                    set.name()
                );
            }
            Err(e) => println!("  {label:<9} not available: {e}"),
        }
    }
    let Some((label, set)) = opened
        .iter()
        .find_map(|(label, r)| r.as_ref().ok().map(|s| (label, s)))
    else {
        return Ok(());
    };
    let (h, w) = set.image_size();
    println!("image shape {h}x{w}x3 (RGB, uint8)");
    let classes = set.classes();
    if classes.is_empty() {
        println!("classes: none (unlabeled)");
    } else {
        println!("classes ({}): {}", classes.len(), classes.join(", "));
    }
    let stats = channel_stats(set.as_ref(), STATS_SAMPLE)?;
    println!(
        "per-channel mean/std (0..1 scale) over {} evenly spaced images of the {label} split \
         ({} images; at most {STATS_SAMPLE} are sampled):",
        stats.images,
        set.len(),
    );
    for (c, name) in ["R", "G", "B"].iter().enumerate() {
        println!(
            "  {name}  mean {:.4}  std {:.4}",
            stats.mean[c], stats.std[c]
        );
    }
    Ok(())
}

/// Per-channel mean and standard deviation of a dataset's pixels, scaled to 0..1.
#[derive(Clone, Debug)]
pub struct ChannelStats {
    pub images: usize,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

/// Statistics over at most `max_images` evenly spaced images. The sums of bytes and of squared
/// bytes are integers, so they are exact and the variance has no cancellation error.
pub fn channel_stats(set: &dyn ImageSet, max_images: usize) -> Result<ChannelStats> {
    let (h, w) = set.image_size();
    let n = set.len().min(max_images);
    let mut sum = [0u64; 3];
    let mut sum_sq = [0u64; 3];
    let mut image = vec![0u8; h * w * 3];
    for k in 0..n {
        // Evenly spaced over the whole set, so a set sorted by class is sampled fairly.
        let i = (k as u128 * set.len() as u128 / n as u128) as usize;
        set.read_into(i, &mut image)?;
        for px in image.chunks_exact(3) {
            for c in 0..3 {
                sum[c] += px[c] as u64;
                sum_sq[c] += (px[c] as u64) * (px[c] as u64);
            }
        }
    }
    let count = (n * h * w) as u128;
    let mut stats = ChannelStats {
        images: n,
        mean: [0.0; 3],
        std: [0.0; 3],
    };
    if count == 0 {
        return Ok(stats);
    }
    for c in 0..3 {
        // count² · variance = count·Σx² − (Σx)², exact in integers.
        let scaled_var = count * sum_sq[c] as u128 - (sum[c] as u128) * (sum[c] as u128);
        stats.mean[c] = sum[c] as f64 / count as f64 / 255.0;
        stats.std[c] = (scaled_var as f64).sqrt() / count as f64 / 255.0;
    }
    Ok(stats)
}

fn fetch(name: &str, dir: &Path) -> Result<()> {
    let path = data::fetch(name, dir)?;
    println!("{name} is in {}", path.display());
    println!("use it with --dataset {name}:{}", path.display());
    Ok(())
}
