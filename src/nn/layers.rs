//! Conv2d (optionally weight-standardized), Linear and a switchable normalization layer, with
//! PyTorch's default initialization so runs are comparable with PyTorch's.

use super::ParamBuilder;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ops::{self, BatchNormState, NORM_EPS};
use crate::params::ParamSet;
use crate::tensor::Tensor;

/// A 2-D convolution without bias (ResNet convs are followed by a norm).
pub struct Conv {
    weight: usize,
    stride: usize,
    pad: usize,
    /// Weight standardization (with group norm: the batch-statistics-free encoder).
    standardize: bool,
}

impl Conv {
    #[allow(clippy::too_many_arguments)] // the numbers that define one conv layer
    pub fn new(
        b: &mut ParamBuilder,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        standardize: bool,
    ) -> Conv {
        let fan_in = c_in * k * k;
        let values = b.uniform(c_out * fan_in, 1.0 / (fan_in as f64).sqrt());
        let weight = b.add(&format!("{name}.weight"), &[c_out, c_in, k, k], values);
        Conv {
            weight,
            stride,
            pad,
            standardize,
        }
    }

    pub fn forward(&self, p: &ParamSet, x: &Tensor) -> Result<Tensor> {
        let w = &p.tensors()[self.weight];
        if self.standardize {
            ops::conv2d(
                x,
                &ops::weight_std(w, NORM_EPS)?,
                None,
                self.stride,
                self.pad,
            )
        } else {
            ops::conv2d(x, w, None, self.stride, self.pad)
        }
    }
}

/// y = x·Wᵀ + b with W stored [out, in] as PyTorch does.
pub struct Linear {
    weight: usize,
    bias: usize,
}

impl Linear {
    pub fn new(b: &mut ParamBuilder, name: &str, c_in: usize, c_out: usize) -> Linear {
        let bound = 1.0 / (c_in as f64).sqrt();
        let w = b.uniform(c_out * c_in, bound);
        let weight = b.add(&format!("{name}.weight"), &[c_out, c_in], w);
        let bv = b.uniform(c_out, bound);
        let bias = b.add(&format!("{name}.bias"), &[c_out], bv);
        Linear { weight, bias }
    }

    pub fn forward(&self, p: &ParamSet, x: &Tensor) -> Result<Tensor> {
        let t = p.tensors();
        ops::bias_add(&ops::matmul_nt(x, &t[self.weight])?, &t[self.bias])
    }
}

/// Which normalization a layer uses.
/// Written and read as `batch`, `layer`, `group:G` (`group` alone: 32 groups) or `none`, in
/// flags and in `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NormKind {
    Batch,
    Layer,
    /// Group norm with this many groups (32 in the seed; fewer when channels are few).
    Group(usize),
    None,
}

impl NormKind {
    /// Parses `batch`, `layer`, `group` (32 groups) or `group:G`, `none`.
    pub fn parse(s: &str) -> Result<NormKind> {
        match s {
            "batch" | "bn" => Ok(NormKind::Batch),
            "layer" | "ln" => Ok(NormKind::Layer),
            "group" | "gn" => Ok(NormKind::Group(32)),
            "none" => Ok(NormKind::None),
            _ => match s.strip_prefix("group:").map(str::parse::<usize>) {
                Some(Ok(g)) if g > 0 => Ok(NormKind::Group(g)),
                _ => Err(Error::Invalid(format!(
                    "unknown norm {s:?}: use batch, layer, group, group:G or none"
                ))),
            },
        }
    }
}

impl std::str::FromStr for NormKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<NormKind> {
        NormKind::parse(s)
    }
}

impl TryFrom<String> for NormKind {
    type Error = Error;
    fn try_from(s: String) -> Result<NormKind> {
        NormKind::parse(&s)
    }
}

impl std::fmt::Display for NormKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NormKind::Batch => f.write_str("batch"),
            NormKind::Layer => f.write_str("layer"),
            NormKind::Group(g) => write!(f, "group:{g}"),
            NormKind::None => f.write_str("none"),
        }
    }
}

impl From<NormKind> for String {
    fn from(n: NormKind) -> String {
        n.to_string()
    }
}

/// A normalization layer with learnable scale and shift (ones and zeros at init), and for batch
/// norm its running statistics (not parameters: the EMA target keeps its own).
pub struct Norm {
    /// The prefix of its parameters (`layer1.0.norm1`), also naming its running statistics.
    name: String,
    kind: NormKind,
    gamma: usize,
    beta: usize,
    state: Option<BatchNormState>,
}

impl Norm {
    pub fn new(
        b: &mut ParamBuilder,
        engine: &Engine,
        name: &str,
        kind: NormKind,
        channels: usize,
    ) -> Result<Norm> {
        if let NormKind::Group(g) = kind {
            if !channels.is_multiple_of(g.min(channels)) {
                return Err(Error::Invalid(format!(
                    "{name}: {channels} channels do not split into {g} groups"
                )));
            }
        }
        let (gamma, beta) = if kind == NormKind::None {
            (usize::MAX, usize::MAX)
        } else {
            (
                b.add(&format!("{name}.weight"), &[channels], vec![1.0; channels]),
                b.add(&format!("{name}.bias"), &[channels], vec![0.0; channels]),
            )
        };
        let state = (kind == NormKind::Batch)
            .then(|| BatchNormState::new(engine, channels))
            .transpose()?;
        Ok(Norm {
            name: name.to_string(),
            kind,
            gamma,
            beta,
            state,
        })
    }

    pub fn kind(&self) -> NormKind {
        self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The batch-norm running statistics, if any (for checkpoints).
    pub fn state(&self) -> Option<&BatchNormState> {
        self.state.as_ref()
    }

    /// relu(norm(x)); batch norm applies the relu in its own normalize pass.
    pub fn forward_relu(&self, p: &ParamSet, x: &Tensor, training: bool) -> Result<Tensor> {
        if let (NormKind::Batch, Some(state)) = (self.kind, self.state.as_ref()) {
            let t = p.tensors();
            let (gamma, beta) = (&t[self.gamma], &t[self.beta]);
            return ops::batch_norm_relu(x, Some(gamma), Some(beta), state, training);
        }
        ops::relu(&self.forward(p, x, training)?)
    }

    pub fn forward(&self, p: &ParamSet, x: &Tensor, training: bool) -> Result<Tensor> {
        let t = p.tensors();
        match self.kind {
            NormKind::None => Ok(x.clone()),
            NormKind::Batch => {
                let state = self.state.as_ref().expect("batch norm has state");
                ops::batch_norm(
                    x,
                    Some(&t[self.gamma]),
                    Some(&t[self.beta]),
                    state,
                    training,
                )
            }
            NormKind::Layer => {
                ops::layer_norm(x, Some(&t[self.gamma]), Some(&t[self.beta]), NORM_EPS)
            }
            NormKind::Group(g) => {
                let groups = g.min(x.shape()[1]);
                ops::group_norm(
                    x,
                    groups,
                    Some(&t[self.gamma]),
                    Some(&t[self.beta]),
                    NORM_EPS,
                )
            }
        }
    }
}
