//! Encoder weights as safetensors under torchvision's names: out of a model, and into one.
//!
//! A written file holds float32 tensors: the encoder's parameters and batch-norm statistics
//! (`running_mean`, `running_var` and torchvision's int64 `num_batches_tracked`), optionally the
//! heads, and string metadata the caller chooses (the run's config). A read file may come from
//! anywhere: its names are checked against the model's, its header against its size, its values
//! for finiteness, and every problem is listed in one error.

use super::torch_names::{is_encoder, to_torchvision};
use crate::error::{Error, Result};
use crate::nn::{EncoderNorm, Mlp, ResNet, ResNetConfig, Stem};
use crate::params::ParamSet;
use crate::ssl::SslModel;
use crate::tensor::Tensor;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The largest weights file read: a ResNet-18 at width 4 with heads stays far below.
const MAX_FILE_BYTES: u64 = 4 << 30;

/// How many names an error lists before it says "and N more".
const LISTED: usize = 12;

/// What [`export`] takes out of a model.
#[derive(Clone, Copy, Debug, Default)]
pub struct Selection {
    /// Also the projection MLP (and the prediction MLP, where the method has one).
    pub heads: bool,
    /// The EMA target network instead of the online one (methods with a target only).
    pub target: bool,
}

/// A float32 tensor by name (byol's names inside this module, torchvision's in files).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every tensor a file holds for one network, by byol name: the parameters of `params` that
/// `keep` accepts, then the running statistics of `norms`' batch norms. Export reads these,
/// import checks and writes the same ones.
fn named<'a>(
    params: &'a ParamSet,
    keep: impl Fn(&str) -> bool,
    norms: impl IntoIterator<Item = &'a crate::nn::Norm>,
) -> Vec<(String, &'a Tensor)> {
    let mut out: Vec<(String, &Tensor)> = params
        .iter()
        .filter(|(n, _)| keep(n))
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    for norm in norms {
        if let Some(s) = norm.state() {
            out.push((format!("{}.running_mean", norm.name()), &s.running_mean));
            out.push((format!("{}.running_var", norm.name()), &s.running_var));
        }
    }
    out
}

/// `named`'s tensors read back from the GPU.
fn read_back(tensors: Vec<(String, &Tensor)>) -> Result<Vec<NamedTensor>> {
    tensors
        .into_iter()
        .map(|(name, t)| {
            Ok(NamedTensor {
                name,
                shape: t.shape().to_vec(),
                values: t.to_vec()?,
            })
        })
        .collect()
}

/// The batch norms of an encoder and, with `heads`, of a projector.
fn norms<'a>(encoder: &'a ResNet, projector: Option<&'a Mlp>) -> Vec<&'a crate::nn::Norm> {
    let mut v = encoder.norms();
    v.extend(projector.map(Mlp::norm));
    v
}

/// The model's tensors that `sel` picks, in byol's names.
pub fn collect(model: &SslModel, sel: Selection) -> Result<Vec<NamedTensor>> {
    let (encoder, projector, params) = model.network(sel.target).ok_or_else(|| {
        Error::Invalid(format!(
            "{} has no target network to export (it has no EMA target)",
            model.config.method
        ))
    })?;
    let heads = sel.heads.then_some(projector);
    let mut out = read_back(named(
        params,
        |n| sel.heads || is_encoder(n),
        norms(encoder, heads),
    ))?;
    if sel.heads {
        if let Some((mlp, p)) = model.predictor() {
            out.extend(read_back(named(p, |_| true, [mlp.norm()]))?);
        }
    }
    Ok(out)
}

/// Writes `tensors` (byol's names) to `path` under torchvision's names, float32, with
/// `num_batches_tracked` = `batches_tracked` beside each batch norm's statistics and `metadata`
/// in the header. Returns the file's tensor list (torchvision names and shapes), sorted.
pub fn write(
    path: &Path,
    tensors: &[NamedTensor],
    batches_tracked: i64,
    metadata: HashMap<String, String>,
) -> Result<Vec<(String, Vec<usize>)>> {
    let mut entries: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for t in tensors {
        let bytes = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let name = to_torchvision(&t.name);
        if let Some(norm) = name.strip_suffix(".running_mean") {
            let count = batches_tracked.to_le_bytes().to_vec();
            entries.insert(
                format!("{norm}.num_batches_tracked"),
                (Dtype::I64, vec![], count),
            );
        }
        entries.insert(name, (Dtype::F32, t.shape.clone(), bytes));
    }
    let mut views = Vec::with_capacity(entries.len());
    for (name, (dtype, shape, bytes)) in &entries {
        let view = TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| Error::Shape(format!("{name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Io(format!("{}: cannot serialize: {e}", path.display())))?;
    crate::atomic_file::write(path, &bytes)?;
    Ok(entries
        .into_iter()
        .map(|(name, (_, shape, _))| (name, shape))
        .collect())
}

/// A safetensors file as read: float32 tensors by the file's names, and its metadata.
#[derive(Clone, Debug)]
pub struct WeightsFile {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

impl WeightsFile {
    fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|(s, _)| s.as_slice())
    }

    fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }
}

/// Reads and checks a safetensors file: a regular file of sane size whose header parses and whose
/// tensors lie inside it, float32 or float64 values (converted), all finite. Integer tensors
/// named `*.num_batches_tracked` are skipped (nothing here uses them); other dtypes are refused.
pub fn read(path: &Path) -> Result<WeightsFile> {
    let bad = |m: String| Error::Io(format!("{}: {m}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(bad(format!(
            "{} bytes is more than a weights file of this tool can be ({MAX_FILE_BYTES})",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::I64 | Dtype::I32 if name.ends_with(".num_batches_tracked") => continue,
            other => {
                return Err(bad(format!(
                    "tensor {name} is {other:?}; only float32 and float64 weights are read \
                     (in PyTorch, save `model.float().state_dict()`)"
                )))
            }
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "tensor {name} holds a non-finite value ({}) at element {i}",
                values[i]
            )));
        }
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    Ok(WeightsFile {
        path: path.to_path_buf(),
        tensors,
        metadata: header.metadata().clone().unwrap_or_default(),
    })
}

/// The encoder a file holds: its `byol.*` metadata where present (files this tool wrote), else
/// read off torchvision's tensor shapes: `conv1.weight` [64·w, 3, k, k] gives the stem (k = 7:
/// imagenet, k = 3: cifar) and the width w; running statistics mean batch norm, no `bn1` at all
/// means no norm.
pub fn encoder_config(file: &WeightsFile) -> Result<ResNetConfig> {
    let bad = |m: String| Error::Invalid(format!("{}: {m}", file.path.display()));
    let shape = file.shape("conv1.weight").ok_or_else(|| {
        bad("no conv1.weight: not a ResNet encoder under torchvision's names".into())
    })?;
    let [c0, 3, k, k2] = *shape else {
        return Err(bad(format!(
            "conv1.weight has shape {shape:?}, not [C, 3, k, k] (an RGB stem)"
        )));
    };
    let stem = match (file.meta("byol.stem"), k, k2) {
        (Some(s), _, _) => Stem::parse(s)?,
        (None, 7, 7) => Stem::ImageNet,
        (None, 3, 3) => Stem::Cifar,
        _ => {
            return Err(bad(format!(
                "conv1.weight is {k}x{k2}: neither torchvision's 7x7 stem nor a CIFAR 3x3 one"
            )))
        }
    };
    let width_mult = match file.meta("byol.width_mult") {
        Some(w) => w
            .parse()
            .map_err(|_| bad(format!("metadata byol.width_mult = {w:?} is not a number")))?,
        None => c0 as f64 / 64.0,
    };
    let norm = match file.meta("byol.encoder_norm") {
        Some(n) => EncoderNorm::parse(n)?,
        None if file.tensors.contains_key("bn1.running_mean") => EncoderNorm::Batch,
        None if file.tensors.contains_key("bn1.weight") => {
            return Err(bad(
                "bn1 has no running statistics, so it is not batch norm, and without byol's \
                 metadata (byol.encoder_norm) its kind is unknown"
                    .into(),
            ))
        }
        None => EncoderNorm::None,
    };
    Ok(ResNetConfig {
        stem,
        width_mult,
        norm,
    })
}

/// "a, b, c and N more" for error messages.
fn listing(names: &[String]) -> String {
    let shown = names
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match names.len().saturating_sub(LISTED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Names a file may hold that an encoder does not use: torchvision's classifier, batch counts
/// and heads.
fn ignorable(name: &str) -> bool {
    name.starts_with("fc.")
        || name.ends_with(".num_batches_tracked")
        || name.starts_with("projector.")
        || name.starts_with("predictor.")
}

/// Loads the file's encoder into the model's online network and, where there is one, its target
/// (both start from the same weights, as a fresh run's do). Every encoder parameter and
/// batch-norm statistic must be in the file with its exact shape, and the file may hold nothing
/// else but torchvision's `fc.*`, `num_batches_tracked` and heads; otherwise the error lists every
/// missing, misshapen and unexpected name, and the model is left as it was.
pub fn load_encoder(file: &WeightsFile, model: &SslModel) -> Result<()> {
    let (encoder, _, params) = model
        .network(false)
        .expect("every model has an online network");
    let expected = named(params, is_encoder, encoder.norms());
    let mut missing = Vec::new();
    let mut misshapen = Vec::new();
    for (ours, t) in &expected {
        let theirs = to_torchvision(ours);
        match file.shape(&theirs) {
            None => missing.push(theirs),
            Some(s) if s != t.shape() => misshapen.push(format!(
                "{theirs} is {s:?} in the file, {:?} in the model",
                t.shape()
            )),
            Some(_) => {}
        }
    }
    let known: std::collections::HashSet<String> =
        expected.iter().map(|(n, _)| to_torchvision(n)).collect();
    let unexpected: Vec<String> = file
        .tensors
        .keys()
        .filter(|n| !known.contains(*n) && !ignorable(n))
        .cloned()
        .collect();
    if !(missing.is_empty() && misshapen.is_empty() && unexpected.is_empty()) {
        let mut parts = Vec::new();
        if !misshapen.is_empty() {
            parts.push(format!("shapes differ: {}", listing(&misshapen)));
        }
        if !missing.is_empty() {
            parts.push(format!("missing: {}", listing(&missing)));
        }
        if !unexpected.is_empty() {
            parts.push(format!("unexpected: {}", listing(&unexpected)));
        }
        return Err(Error::Invalid(format!(
            "{} does not fit this encoder ({} stem, width {}, {} norm): {}",
            file.path.display(),
            model.config.encoder.stem,
            model.config.encoder.width_mult,
            model.config.encoder.norm,
            parts.join("; ")
        )));
    }
    for target in [false, true] {
        let Some((encoder, _, params)) = model.network(target) else {
            continue;
        };
        for (name, t) in named(params, is_encoder, encoder.norms()) {
            t.write(&file.tensors[&to_torchvision(&name)].1)?;
        }
    }
    Ok(())
}

/// Checks, without touching any run, that the encoder in `path` loads into a model of `config`
/// (the same checks as [`load_encoder`], on a model built and dropped here).
pub fn check_fits(
    engine: &crate::engine::Engine,
    path: &Path,
    config: crate::ssl::ModelConfig,
) -> Result<()> {
    let file = read(path)?;
    load_encoder(&file, &SslModel::new(engine, config)?)
}
