//! `byol export` and `byol embed`, and where `byol eval` finds an encoder: a run's checkpoint or a
//! safetensors file with torchvision's names.

use crate::data::{self, Split};
use crate::error::{Error, Result};
use crate::interop::{npy, weights};
use crate::nn::Stem;
use crate::ssl::SslModel;
use crate::train::{self, TrainConfig};
use crate::Engine;
use clap::Args;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where `byol eval` and `byol embed` find an encoder and what they feed it.
#[derive(Args, Debug, Clone)]
pub struct EncoderArgs {
    /// The run directory (holds config.json and checkpoint.bin).
    #[arg(long, required_unless_present = "weights", conflicts_with = "weights")]
    pub run: Option<PathBuf>,
    /// The encoder in this safetensors file (torchvision's ResNet-18 names) instead of a run's;
    /// needs --dataset.
    #[arg(long, requires = "dataset")]
    pub weights: Option<PathBuf>,
    /// The dataset (SPEC as for train); default: the run's.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Side of the images fed to the encoder; default: the run's (with --weights: the file's
    /// byol.image_size, else 32 for a CIFAR stem and 96 for an ImageNet one).
    #[arg(long)]
    pub image_size: Option<usize>,
}

impl EncoderArgs {
    /// The model (loaded, or freshly initialized with `random`) and the config that feeds it.
    pub fn open(&self, engine: &Engine, random: bool) -> Result<(SslModel, TrainConfig)> {
        EncoderSource::from_flags(self.run.as_deref(), self.weights.as_deref())?.open(
            engine,
            self.dataset.as_deref(),
            self.image_size,
            random,
        )
    }
}

/// Where an encoder comes from.
pub enum EncoderSource<'a> {
    /// A run directory: its config.json and checkpoint.bin.
    Run(&'a Path),
    /// A safetensors file: its metadata or tensor shapes give the architecture.
    Weights(&'a Path),
}

impl<'a> EncoderSource<'a> {
    /// Exactly one of `--run` and `--weights` (clap enforces it; this names it otherwise).
    pub fn from_flags(run: Option<&'a Path>, weights: Option<&'a Path>) -> Result<Self> {
        match (run, weights) {
            (Some(r), None) => Ok(EncoderSource::Run(r)),
            (None, Some(w)) => Ok(EncoderSource::Weights(w)),
            _ => Err(Error::Invalid(
                "give either --run DIR or --weights FILE.safetensors".into(),
            )),
        }
    }

    /// The model (encoder loaded, or freshly initialized with `random`) and a config whose dataset,
    /// image size and evaluation settings say how to feed it. `dataset` and `image_size` override
    /// the run's; with weights, `dataset` is required.
    pub fn open(
        &self,
        engine: &Engine,
        dataset: Option<&str>,
        image_size: Option<usize>,
        random: bool,
    ) -> Result<(SslModel, TrainConfig)> {
        match *self {
            EncoderSource::Run(dir) => {
                let saved = read_run_config(dir)?;
                let mut model = SslModel::new(engine, saved.model_config()?)?;
                if !random {
                    train::restore_model(&dir.join("checkpoint.bin"), &saved, &mut model)?;
                }
                let mut cfg = saved;
                if let Some(d) = dataset {
                    cfg.dataset = d.to_string();
                }
                if let Some(s) = image_size {
                    cfg.image_size = s;
                }
                Ok((model, cfg))
            }
            EncoderSource::Weights(path) => {
                let dataset = dataset.ok_or_else(|| {
                    Error::Invalid("--weights needs --dataset SPEC to evaluate on".into())
                })?;
                let file = weights::read(path)?;
                let encoder = weights::encoder_config(&file)?;
                let size = match (image_size, file.metadata.get("byol.image_size")) {
                    (Some(s), _) => s,
                    (None, Some(s)) => s.parse().map_err(|_| {
                        Error::Invalid(format!(
                            "{}: metadata byol.image_size = {s:?} is not a number",
                            path.display()
                        ))
                    })?,
                    (None, None) if encoder.stem == Stem::ImageNet => 96,
                    (None, None) => 32,
                };
                let cfg = TrainConfig {
                    dataset: dataset.to_string(),
                    image_size: size,
                    stem: encoder.stem,
                    width_mult: encoder.width_mult,
                    encoder_norm: encoder.norm,
                    ..TrainConfig::default()
                };
                let model = SslModel::new(engine, cfg.model_config()?)?;
                if !random {
                    weights::load_encoder(&file, &model)?;
                }
                Ok((model, cfg))
            }
        }
    }
}

/// A run directory's config.json.
pub fn read_run_config(dir: &Path) -> Result<TrainConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Io(format!("{} is not a byol config: {e}", path.display())))
}

/// Refuses to replace an existing file unless asked to: exports are never silently overwritten.
fn check_writable(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::Invalid(format!(
            "{} exists; pass --force to replace it",
            path.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::Invalid(format!(
            "{} is a directory, not a file",
            path.display()
        )));
    }
    Ok(())
}

fn open_engine(dev: &super::Device) -> Result<Engine> {
    dev.open()
}

/// Flags of `byol export`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// The run directory (holds config.json and checkpoint.bin).
    #[arg(long)]
    pub run: PathBuf,
    /// The safetensors file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Also the projection MLP (projector.*) and, where the method has one, the prediction MLP
    /// (predictor.*).
    #[arg(long)]
    pub heads: bool,
    /// The EMA target network instead of the online one (methods with a target).
    #[arg(long)]
    pub target: bool,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

/// The metadata a run's export carries: what a PyTorch user needs to rebuild and feed the network.
fn export_metadata(
    cfg: &TrainConfig,
    args: &ExportArgs,
    steps: usize,
) -> Result<HashMap<String, String>> {
    let mean = crate::data::augment::IMAGENET_MEAN;
    let std = crate::data::augment::IMAGENET_STD;
    let join = |v: [f32; 3]| v.map(|x| x.to_string()).join(",");
    let weights_note = match cfg.encoder_norm {
        crate::nn::EncoderNorm::GroupWs => {
            "raw: each conv weight is standardized (zero mean, unit variance over in x kh x kw, \
             eps 1e-5) in the forward pass, so PyTorch must standardize it too"
        }
        _ => "as used in the forward pass",
    };
    let config = serde_json::to_string(cfg).map_err(|e| Error::Io(e.to_string()))?;
    let pairs = [
        ("format", "byol-wgpu".to_string()),
        ("byol.version", env!("CARGO_PKG_VERSION").to_string()),
        (
            "byol.network",
            if args.target { "target" } else { "online" }.to_string(),
        ),
        ("byol.heads", args.heads.to_string()),
        ("byol.method", cfg.method.to_string()),
        ("byol.stem", cfg.stem.to_string()),
        ("byol.width_mult", cfg.width_mult.to_string()),
        ("byol.encoder_norm", cfg.encoder_norm.to_string()),
        ("byol.weights", weights_note.to_string()),
        ("byol.image_size", cfg.image_size.to_string()),
        (
            "byol.input",
            "RGB in [0, 1], resized (bilinear) to image_size, then (x - mean) / std".to_string(),
        ),
        ("byol.input_mean", join(mean)),
        ("byol.input_std", join(std)),
        ("byol.dataset", cfg.dataset.clone()),
        ("byol.steps", steps.to_string()),
        ("byol.config", config),
    ];
    Ok(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

pub fn export(args: &ExportArgs, dev: &super::Device) -> Result<()> {
    check_writable(&args.out, args.force)?;
    let engine = open_engine(dev)?;
    let cfg = read_run_config(&args.run)?;
    let mut model = SslModel::new(&engine, cfg.model_config()?)?;
    let steps = train::restore_model(&args.run.join("checkpoint.bin"), &cfg, &mut model)?;
    let sel = weights::Selection {
        heads: args.heads,
        target: args.target,
    };
    let tensors = weights::collect(&model, sel)?;
    let metadata = export_metadata(&cfg, args, steps)?;
    let list = weights::write(&args.out, &tensors, steps as i64, metadata)?;
    let values: usize = tensors.iter().map(|t| t.values.len()).sum();
    for (name, shape) in &list {
        println!("  {name:<40} {shape:?}");
    }
    println!(
        "wrote {}: {} tensors, {values} float32 values ({} encoder{}, {} stem, width {})",
        args.out.display(),
        list.len(),
        if args.target { "target" } else { "online" },
        if args.heads { " and heads" } else { "" },
        cfg.stem,
        cfg.width_mult
    );
    Ok(())
}

/// Which split `byol embed` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitArg {
    /// The self-supervised training images (STL-10: unlabeled + train).
    Pretrain,
    Train,
    Test,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Split {
        match s {
            SplitArg::Pretrain => Split::Pretrain,
            SplitArg::Train => Split::Train,
            SplitArg::Test => Split::Test,
        }
    }
}

/// Flags of `byol embed`.
#[derive(Args, Debug, Clone)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Which split.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub split: SplitArg,
    /// The embeddings, float32 [images, dim]; labels (int64 [images]) go beside it as
    /// NAME.labels.npy where the split has them.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out (and its labels file) if they exist.
    #[arg(long)]
    pub force: bool,
}

/// `emb.npy` -> `emb.labels.npy`.
pub fn labels_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}.labels.npy"))
}

pub fn embed(args: &EmbedArgs, dev: &super::Device) -> Result<()> {
    let labels_out = labels_path(&args.out);
    check_writable(&args.out, args.force)?;
    check_writable(&labels_out, args.force)?;
    let engine = open_engine(dev)?;
    let (model, cfg) = args.encoder.open(&engine, false)?;
    let set: Arc<dyn data::ImageSet> = Arc::from(data::open(&cfg.dataset, args.split.into())?);
    let name = set.name();
    let batch = cfg.batch_size.max(64);
    let (feats, labels) =
        train::embed::embeddings_of(&engine, &model, set, cfg.image_size, batch, 0)?;
    let d = model.embedding_dim();
    let n = labels.len();
    npy::write_f32(&args.out, &[n, d], &feats)?;
    let labelled: Option<Vec<i64>> = labels.iter().map(|l| l.map(i64::from)).collect();
    match labelled {
        Some(l) => {
            npy::write_i64(&labels_out, &[n], &l)?;
            println!(
                "wrote {} ({n} x {d} float32) and {} ({n} int64 labels) from {name}",
                args.out.display(),
                labels_out.display()
            );
        }
        None => println!(
            "wrote {} ({n} x {d} float32) from {name} (no labels: the split has none)",
            args.out.display()
        ),
    }
    Ok(())
}
