//! Linear evaluation of a model's encoder during and after training: embeddings of a labeled split
//! in eval mode (batch norm with running statistics), then the GPU linear probe.

use super::TrainConfig;
use crate::data::augment::{augment_batch, upload_images, AugmentConfig, ViewParams};
use crate::data::loader::{Loader, LoaderOptions};
use crate::data::{self, ImageSet, Split};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::eval::{knn_accuracy, linear_probe, KnnConfig, ProbeConfig, ProbeResult};
use crate::ssl::{centered_effective_rank, SslModel};
use crate::tensor::Tensor;
use std::sync::Arc;

/// Encoder embeddings [n, d] and labels of the first `limit` images (0: all) of `set`, in order;
/// every image must have a label.
pub fn embeddings(
    engine: &Engine,
    model: &SslModel,
    set: Arc<dyn ImageSet>,
    image_size: usize,
    batch: usize,
    limit: usize,
) -> Result<(Vec<f32>, Vec<u32>)> {
    let (feats, labels) = embeddings_of(engine, model, set, image_size, batch, limit)?;
    let labels = labels
        .into_iter()
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(|| Error::Invalid("linear evaluation needs a labeled split".into()))?;
    Ok((feats, labels))
}

/// Encoder embeddings [n, d] of the first `limit` images (0: all) of `set`, in order, in eval
/// mode on the evaluation view (the image resized to `image_size`, normalized), with each
/// image's label where it has one.
pub fn embeddings_of(
    engine: &Engine,
    model: &SslModel,
    set: Arc<dyn ImageSet>,
    image_size: usize,
    batch: usize,
    limit: usize,
) -> Result<(Vec<f32>, Vec<Option<u32>>)> {
    let opts = LoaderOptions {
        batch_size: batch.max(1),
        seed: 0,
        shuffle: false,
        drop_last: false,
        augment: None,
        epochs: Some(1),
    };
    let n_max = if limit == 0 {
        set.len()
    } else {
        limit.min(set.len())
    };
    let mut loader = Loader::new(set, opts)?;
    let eval_view = AugmentConfig::none();
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    while let Some(batch) = loader.next_batch() {
        let batch = batch?;
        let images = upload_images(engine, &batch.pixels)?;
        let params: Vec<ViewParams> = (0..batch.indices.len())
            .map(|_| ViewParams::identity(batch.h, batch.w))
            .collect();
        let x = augment_batch(
            engine, &images, batch.h, batch.w, &params, &eval_view, image_size,
        )?;
        feats.extend(model.embed(&x)?.to_vec()?);
        labels.extend(batch.labels.iter().copied());
        if labels.len() >= n_max {
            break;
        }
    }
    let d = model.embedding_dim();
    labels.truncate(n_max);
    feats.truncate(n_max * d);
    Ok((feats, labels))
}

/// A linear evaluation, and how many directions the evaluated embeddings really use.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub probe: ProbeResult,
    /// kNN accuracy (k = 200, cosine, T = 0.07) with the probe's fit images as the bank, scored
    /// on its test images, and its standard error.
    pub knn_accuracy: f64,
    pub knn_standard_error: f64,
    /// Effective rank of the centered embeddings of the evaluation images (RankMe on the
    /// covariance spectrum, see `ssl::centered_effective_rank`), computed on the GPU.
    pub embedding_rank: f64,
}

/// Effective rank of `n` embeddings of dimension `d` (row-major).
pub fn embedding_rank(engine: &Engine, feats: &[f32], d: usize) -> Result<f64> {
    let n = feats.len() / d.max(1);
    if n == 0 {
        return Ok(0.0);
    }
    let z = Tensor::from_slice(engine, &feats[..n * d], &[n, d])?;
    centered_effective_rank(&z)
}

/// Checks, before any training, that `cfg`'s evaluation can run: a labeled split with two classes
/// or more, and at least two images to fit and two to score with the chosen protocol.
pub fn check(cfg: &TrainConfig) -> Result<()> {
    let test = data::open(&cfg.dataset, Split::Test)?;
    if test.classes().len() < 2 {
        return Err(Error::Invalid(format!(
            "{} has no class labels for linear evaluation (use --eval-every 0 to train without it)",
            cfg.dataset
        )));
    }
    let used = |len: usize| {
        if cfg.eval_images == 0 {
            len
        } else {
            len.min(cfg.eval_images)
        }
    };
    let (fit, score) = if cfg.eval_protocol == super::config::EvalProtocol::TrainTest {
        let train = data::open(&cfg.dataset, Split::Train)?;
        (used(train.len()), used(test.len()))
    } else {
        let n = used(test.len());
        (n / 2, n - n / 2)
    };
    if fit < 2 || score < 2 {
        return Err(Error::Invalid(format!(
            "--eval-images {} leaves {fit} image(s) to fit the probe and {score} to score it \
             ({} protocol): at least 2 of each are needed",
            cfg.eval_images, cfg.eval_protocol
        )));
    }
    Ok(())
}

/// What an evaluation is measured against: the same architecture untrained (the run's own
/// initialization, the seed's "Random" row) and chance (1 / classes).
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Baseline {
    pub random_accuracy: f64,
    pub chance_accuracy: f64,
}

/// What the random baseline depends on: the encoder's architecture and initialization and the
/// evaluation's data and protocol (not the heads, the method or the optimizer: the encoder is
/// initialized first, from the seed alone).
fn baseline_key(cfg: &TrainConfig) -> serde_json::Value {
    serde_json::json!({
        "dataset": cfg.dataset,
        "image_size": cfg.image_size,
        "stem": cfg.stem,
        "width_mult": cfg.width_mult,
        "encoder_norm": cfg.encoder_norm,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "eval_images": cfg.eval_images,
        "eval_protocol": cfg.eval_protocol,
    })
}

/// A baseline cached in `path` for `key`, if it is there.
fn cached_baseline(path: &std::path::Path, key: &serde_json::Value) -> Option<Baseline> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    // Files written before the key was stored hold only the two numbers: they are the run's own.
    if v.get("key").is_some_and(|k| k != key) {
        return None;
    }
    serde_json::from_value(v).ok()
}

/// The run's baseline, computed once and cached in `dir/baseline.json` (a resumed run reads it).
/// With `shared`, a file that runs of one study share (`study/baselines/KEY.json`), variants with
/// the same encoder and evaluation reuse one computation.
pub fn baseline(
    engine: &Engine,
    cfg: &TrainConfig,
    dir: &std::path::Path,
    shared: Option<&std::path::Path>,
) -> Result<Baseline> {
    let key = baseline_key(cfg);
    let own = dir.join("baseline.json");
    let shared_file = shared.map(|d| {
        let name = format!("{:08x}.json", crc32fast::hash(key.to_string().as_bytes()));
        d.join(name)
    });
    let found = cached_baseline(&own, &key).or_else(|| {
        shared_file
            .as_deref()
            .and_then(|f| cached_baseline(f, &key))
    });
    let b = match found {
        Some(b) => b,
        None => {
            let classes = data::open(&cfg.dataset, Split::Test)?
                .classes()
                .len()
                .max(1);
            let random = SslModel::new(engine, cfg.model_config()?)?;
            Baseline {
                random_accuracy: evaluate(engine, &random, cfg)?.probe.accuracy,
                chance_accuracy: 1.0 / classes as f64,
            }
        }
    };
    let json = serde_json::json!({
        "random_accuracy": b.random_accuracy,
        "chance_accuracy": b.chance_accuracy,
        "key": key,
    })
    .to_string();
    super::checkpoint::write_atomic(&own, json.as_bytes())?;
    if let Some(f) = shared_file {
        if let Some(d) = f.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::Io(format!("creating {}: {e}", d.display())))?;
        }
        super::checkpoint::write_atomic(&f, json.as_bytes())?;
    }
    Ok(b)
}

/// The configured protocol: the seed's (fit on the first half of the test split, score on the
/// second half, in file order) or train split against test split.
pub fn evaluate(engine: &Engine, model: &SslModel, cfg: &TrainConfig) -> Result<Evaluation> {
    let d = model.embedding_dim();
    let test: Arc<dyn ImageSet> = Arc::from(data::open(&cfg.dataset, Split::Test)?);
    let classes = test.classes().len();
    if classes < 2 {
        return Err(Error::Invalid(format!(
            "{} has no class labels for linear evaluation",
            cfg.dataset
        )));
    }
    let batch = cfg.batch_size.max(64);
    if cfg.eval_protocol == super::config::EvalProtocol::TrainTest {
        let train: Arc<dyn ImageSet> = Arc::from(data::open(&cfg.dataset, Split::Train)?);
        let (fx, fy) = embeddings(engine, model, train, cfg.image_size, batch, cfg.eval_images)?;
        let (tx, ty) = embeddings(engine, model, test, cfg.image_size, batch, cfg.eval_images)?;
        return evaluation(engine, d, classes, (&fx, &fy), (&tx, &ty), &tx);
    }
    let (x, y) = embeddings(engine, model, test, cfg.image_size, batch, cfg.eval_images)?;
    let half = y.len() / 2;
    let fit = (&x[..half * d], &y[..half]);
    let score = (&x[half * d..], &y[half..]);
    evaluation(engine, d, classes, fit, score, &x)
}

/// The probe, the kNN monitor on the same images, and the rank of `ranked` embeddings.
fn evaluation(
    engine: &Engine,
    d: usize,
    classes: usize,
    fit: (&[f32], &[u32]),
    score: (&[f32], &[u32]),
    ranked: &[f32],
) -> Result<Evaluation> {
    let (knn_accuracy, knn_standard_error) =
        knn_accuracy(engine, d, classes, fit, score, KnnConfig::default())?;
    Ok(Evaluation {
        probe: linear_probe(engine, d, classes, fit, score, ProbeConfig::default())?,
        knn_accuracy,
        knn_standard_error,
        embedding_rank: embedding_rank(engine, ranked, d)?,
    })
}
