//! ResNet-18: BasicBlock x [2, 2, 2, 2], widths 64-128-256-512 times a multiplier, an ImageNet stem
//! (7x7/2 conv + 3x3/2 max pool, for 96x96 and larger) or a CIFAR stem (3x3/1 conv, no pool), and
//! batch norm, group norm with weight standardization, or no norm in the encoder.

use super::layers::{Conv, Norm, NormKind};
use super::ParamBuilder;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ops;
use crate::params::ParamSet;
use crate::tensor::Tensor;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Stem {
    /// 7x7/2 conv + 3x3/2 max pool, for 96 px and up.
    ImageNet,
    /// 3x3/1 conv, no pool, for 32 px.
    Cifar,
}

impl Stem {
    pub fn parse(s: &str) -> Result<Stem> {
        match s {
            "imagenet" => Ok(Stem::ImageNet),
            "cifar" => Ok(Stem::Cifar),
            _ => Err(Error::Invalid(format!(
                "unknown stem {s:?}: use imagenet or cifar"
            ))),
        }
    }
}

/// The encoder's normalization: batch norm, group norm (32 groups, fewer for narrow layers) with
/// weight-standardized convs, or none.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum EncoderNorm {
    Batch,
    /// GroupNorm with weight-standardized convs.
    #[serde(alias = "gn-ws")]
    #[value(alias = "gn-ws")]
    GroupWs,
    None,
}

impl std::fmt::Display for Stem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stem::ImageNet => "imagenet",
            Stem::Cifar => "cifar",
        })
    }
}

impl std::fmt::Display for EncoderNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EncoderNorm::Batch => "batch",
            EncoderNorm::GroupWs => "group-ws",
            EncoderNorm::None => "none",
        })
    }
}

impl EncoderNorm {
    pub fn parse(s: &str) -> Result<EncoderNorm> {
        match s {
            "batch" => Ok(EncoderNorm::Batch),
            "group-ws" | "gn-ws" => Ok(EncoderNorm::GroupWs),
            "none" => Ok(EncoderNorm::None),
            _ => Err(Error::Invalid(format!(
                "unknown encoder norm {s:?}: use batch, group-ws or none"
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ResNetConfig {
    pub stem: Stem,
    pub width_mult: f64,
    pub norm: EncoderNorm,
}

struct Block {
    conv1: Conv,
    norm1: Norm,
    conv2: Conv,
    norm2: Norm,
    shortcut: Option<(Conv, Norm)>,
}

pub struct ResNet {
    stem_conv: Conv,
    stem_norm: Norm,
    stem: Stem,
    blocks: Vec<Block>,
    out_dim: usize,
}

/// Group count for group norm: 32, or the largest divisor of `channels` not above 32.
fn groups_for(channels: usize) -> usize {
    (1..=32.min(channels))
        .rev()
        .find(|g| channels.is_multiple_of(*g))
        .unwrap_or(1)
}

fn norm_layer(
    b: &mut ParamBuilder,
    engine: &Engine,
    name: &str,
    norm: EncoderNorm,
    channels: usize,
) -> Result<Norm> {
    let kind = match norm {
        EncoderNorm::Batch => NormKind::Batch,
        EncoderNorm::GroupWs => NormKind::Group(groups_for(channels)),
        EncoderNorm::None => NormKind::None,
    };
    Norm::new(b, engine, name, kind, channels)
}

impl ResNet {
    pub fn new(b: &mut ParamBuilder, engine: &Engine, cfg: ResNetConfig) -> Result<ResNet> {
        if !(cfg.width_mult > 0.0 && cfg.width_mult.is_finite()) {
            return Err(Error::Invalid(format!(
                "width multiplier {} must be positive",
                cfg.width_mult
            )));
        }
        let width = |c: usize| ((c as f64 * cfg.width_mult).round() as usize).max(1);
        let ws = cfg.norm == EncoderNorm::GroupWs;
        let c0 = width(64);
        let stem_conv = match cfg.stem {
            Stem::ImageNet => Conv::new(b, "stem.conv", 3, c0, 7, 2, 3, ws),
            Stem::Cifar => Conv::new(b, "stem.conv", 3, c0, 3, 1, 1, ws),
        };
        let stem_norm = norm_layer(b, engine, "stem.norm", cfg.norm, c0)?;
        let mut blocks = Vec::new();
        let mut c_in = c0;
        for (stage, base) in [64, 128, 256, 512].into_iter().enumerate() {
            let c_out = width(base);
            for i in 0..2 {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let name = format!("layer{}.{i}", stage + 1);
                let conv1 = Conv::new(b, &format!("{name}.conv1"), c_in, c_out, 3, stride, 1, ws);
                let norm1 = norm_layer(b, engine, &format!("{name}.norm1"), cfg.norm, c_out)?;
                let conv2 = Conv::new(b, &format!("{name}.conv2"), c_out, c_out, 3, 1, 1, ws);
                let norm2 = norm_layer(b, engine, &format!("{name}.norm2"), cfg.norm, c_out)?;
                let shortcut = if stride != 1 || c_in != c_out {
                    let conv = Conv::new(
                        b,
                        &format!("{name}.shortcut.conv"),
                        c_in,
                        c_out,
                        1,
                        stride,
                        0,
                        ws,
                    );
                    let norm =
                        norm_layer(b, engine, &format!("{name}.shortcut.norm"), cfg.norm, c_out)?;
                    Some((conv, norm))
                } else {
                    None
                };
                blocks.push(Block {
                    conv1,
                    norm1,
                    conv2,
                    norm2,
                    shortcut,
                });
                c_in = c_out;
            }
        }
        Ok(ResNet {
            stem_conv,
            stem_norm,
            stem: cfg.stem,
            blocks,
            out_dim: c_in,
        })
    }

    /// The embedding size after global average pooling (512 times the width multiplier).
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Every norm layer, in order (their batch-norm running statistics go into checkpoints).
    pub fn norms(&self) -> Vec<&Norm> {
        let mut v = vec![&self.stem_norm];
        for b in &self.blocks {
            v.push(&b.norm1);
            v.push(&b.norm2);
            if let Some((_, n)) = &b.shortcut {
                v.push(n);
            }
        }
        v
    }

    /// Images [N, 3, H, W] to embeddings [N, out_dim].
    pub fn forward(&self, p: &ParamSet, x: &Tensor, training: bool) -> Result<Tensor> {
        let mut h = self
            .stem_norm
            .forward_relu(p, &self.stem_conv.forward(p, x)?, training)?;
        if self.stem == Stem::ImageNet {
            h = ops::max_pool2d(&h, 3, 2, 1)?;
        }
        for b in &self.blocks {
            let y = b
                .norm1
                .forward_relu(p, &b.conv1.forward(p, &h)?, training)?;
            let y = b.norm2.forward(p, &b.conv2.forward(p, &y)?, training)?;
            let skip = match &b.shortcut {
                Some((conv, norm)) => norm.forward(p, &conv.forward(p, &h)?, training)?,
                None => h.clone(),
            };
            h = ops::add_relu(&y, &skip)?;
        }
        ops::global_avg_pool(&h)
    }
}
