//! The study's variants: the seed's table, its appendix (no batch norm anywhere), and rows
//! beyond it (SimSiam, MoCo v2, SimCLR). Each is a small change of one base config.

use super::Preset;
use crate::error::{Error, Result};
use crate::nn::{EncoderNorm, NormKind};
use crate::ssl::Method;
use crate::train::config::OptimizerKind;
use crate::train::TrainConfig;

/// Which family a variant belongs to; also a name for `--variants`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The seven rows of the seed's table (the default).
    Seed,
    /// The seed's appendix: no batch norm anywhere, rescued (or not) by LARS, weight decay, GN+WS.
    Appendix,
    /// Other methods on the same encoder and data.
    Beyond,
    /// BYOL with batch norm over the global batch B against batch norm over B/R, as R
    /// data-parallel ranks without synchronized batch norm see it: the batch that batch norm's
    /// implicit contrast spans, as a variable.
    Parallel,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Seed => "seed",
            Group::Appendix => "appendix",
            Group::Beyond => "beyond",
            Group::Parallel => "parallel",
        }
    }
}

/// One row of the study's table.
#[derive(Clone, Debug)]
pub struct Variant {
    pub slug: &'static str,
    pub name: &'static str,
    pub group: Group,
    /// None: the untrained "Random" baseline.
    pub method: Option<Method>,
    pub proj_norm: NormKind,
    pub pred_norm: NormKind,
    /// Overrides of the base config (None: keep the preset's).
    pub encoder_norm: Option<EncoderNorm>,
    pub optimizer: Option<OptimizerKind>,
    pub weight_decay: Option<f32>,
    /// The seed's linear accuracy (%) after 10 epochs on STL-10, for its own rows.
    pub seed_accuracy: Option<f64>,
    /// The `parallel` group: batch norm normalizes each of this many equal slices of the global
    /// batch on its own (1: the whole batch). In one process that is `--bn-groups`; under
    /// `mpirun -np R` each rank's shard is one slice or more (`--sync-bn` for 1).
    pub bn_shards: Option<usize>,
}

/// A seed-table row: only the method and the MLP norms change.
fn row(
    slug: &'static str,
    name: &'static str,
    method: Option<Method>,
    norms: (NormKind, NormKind),
    seed_accuracy: f64,
) -> Variant {
    Variant {
        slug,
        name,
        group: Group::Seed,
        method,
        proj_norm: norms.0,
        pred_norm: norms.1,
        encoder_norm: None,
        optimizer: None,
        weight_decay: None,
        seed_accuracy: Some(seed_accuracy),
        bn_shards: None,
    }
}

/// An appendix row: BYOL with no batch norm in the encoder nor the MLPs.
fn appendix(
    slug: &'static str,
    name: &'static str,
    encoder_and_mlp_norm: (EncoderNorm, NormKind),
    optimizer: OptimizerKind,
    weight_decay: f32,
) -> Variant {
    Variant {
        slug,
        name,
        group: Group::Appendix,
        method: Some(Method::Byol),
        proj_norm: encoder_and_mlp_norm.1,
        pred_norm: encoder_and_mlp_norm.1,
        encoder_norm: Some(encoder_and_mlp_norm.0),
        optimizer: Some(optimizer),
        weight_decay: Some(weight_decay),
        seed_accuracy: None,
        bn_shards: None,
    }
}

/// A row for another method, with that method's usual MLP norms.
fn beyond(
    slug: &'static str,
    name: &'static str,
    method: Method,
    norms: (NormKind, NormKind),
) -> Variant {
    Variant {
        slug,
        name,
        group: Group::Beyond,
        method: Some(method),
        proj_norm: norms.0,
        pred_norm: norms.1,
        encoder_norm: None,
        optimizer: None,
        weight_decay: None,
        seed_accuracy: None,
        bn_shards: None,
    }
}

/// A `parallel` row: BYOL (batch norm in both MLPs) with batch norm over B / `shards` images.
fn shards(slug: &'static str, name: &'static str, shards: usize) -> Variant {
    Variant {
        group: Group::Parallel,
        bn_shards: Some(shards),
        ..beyond(slug, name, Method::Byol, (NormKind::Batch, NormKind::Batch))
    }
}

/// Every variant, in table order: the seed's rows first.
pub fn variants() -> Vec<Variant> {
    vec![
        row(
            "contrastive",
            "Contrastive Loss",
            Some(Method::Contrastive),
            (NormKind::None, NormKind::None),
            44.1,
        ),
        row(
            "byol",
            "BYOL",
            Some(Method::Byol),
            (NormKind::Batch, NormKind::Batch),
            57.7,
        ),
        row(
            "proj-bn",
            "Projection BN Only",
            Some(Method::Byol),
            (NormKind::Batch, NormKind::None),
            55.3,
        ),
        row(
            "pred-bn",
            "Prediction BN Only",
            Some(Method::Byol),
            (NormKind::None, NormKind::Batch),
            48.0,
        ),
        row(
            "no-norm",
            "No Normalization",
            Some(Method::Byol),
            (NormKind::None, NormKind::None),
            28.3,
        ),
        row(
            "layer-norm",
            "Layer Norm",
            Some(Method::Byol),
            (NormKind::Layer, NormKind::Layer),
            29.4,
        ),
        row(
            "random",
            "Random",
            None,
            (NormKind::Batch, NormKind::Batch),
            28.8,
        ),
        // The seed's appendix: "removing all batch normalization completely prevents learning,
        // unless at least one technique is used to prevent mode collapse".
        appendix(
            "no-bn-sgd",
            "No BN, SGD",
            (EncoderNorm::None, NormKind::None),
            OptimizerKind::Sgd,
            0.0,
        ),
        appendix(
            "no-bn-lars",
            "No BN, LARS",
            (EncoderNorm::None, NormKind::None),
            OptimizerKind::Lars,
            0.0,
        ),
        // Five times the seed's 1e-4: strong enough to matter within a short run.
        appendix(
            "no-bn-wd",
            "No BN, SGD + WD",
            (EncoderNorm::None, NormKind::None),
            OptimizerKind::Sgd,
            5e-4,
        ),
        appendix(
            "gn-ws",
            "GN + WS, No BN",
            (EncoderNorm::GroupWs, NormKind::Group(32)),
            OptimizerKind::Sgd,
            1e-4,
        ),
        beyond(
            "simsiam",
            "SimSiam",
            Method::SimSiam,
            (NormKind::Batch, NormKind::Batch),
        ),
        beyond(
            "moco",
            "MoCo v2",
            Method::Moco,
            (NormKind::None, NormKind::None),
        ),
        beyond(
            "simclr",
            "SimCLR",
            Method::SimClr,
            (NormKind::Batch, NormKind::None),
        ),
        // DDP's default makes the per-rank batch the batch norm batch.
        shards("bn-global", "BYOL, BN over B (sync-BN)", 1),
        shards("bn-shards-2", "BYOL, BN over B/2 (2 ranks)", 2),
        shards("bn-shards-4", "BYOL, BN over B/4 (4 ranks)", 4),
        shards("bn-shards-8", "BYOL, BN over B/8 (8 ranks)", 8),
    ]
}

/// The variants named by `--variants`: slugs and group names (seed, appendix, beyond, all), in
/// table order. None selects the seed's table.
pub fn select(names: Option<&[String]>) -> Result<Vec<Variant>> {
    let all = variants();
    let default = [Group::Seed.name().to_string()];
    let names = names.unwrap_or(&default);
    let groups = [Group::Seed, Group::Appendix, Group::Beyond, Group::Parallel];
    for n in names {
        let known =
            n == "all" || groups.iter().any(|g| g.name() == n) || all.iter().any(|v| v.slug == n);
        if !known {
            let slugs: Vec<_> = all.iter().map(|v| v.slug).collect();
            return Err(Error::Invalid(format!(
                "unknown variant {n:?}: use all, seed, appendix, beyond, parallel or some of {}",
                slugs.join(",")
            )));
        }
    }
    let chosen: Vec<Variant> = all
        .into_iter()
        .filter(|v| {
            names
                .iter()
                .any(|n| n == "all" || n == v.group.name() || n == v.slug)
        })
        .collect();
    if chosen.is_empty() {
        return Err(Error::Invalid("--variants selects nothing".into()));
    }
    Ok(chosen)
}

impl Variant {
    /// The variant's training config, derived from `base`.
    pub fn config(&self, base: &TrainConfig, preset: Preset) -> TrainConfig {
        let mut cfg = base.clone();
        cfg.method = self.method.unwrap_or(Method::Byol);
        cfg.proj_norm = self.proj_norm;
        cfg.pred_norm = self.pred_norm;
        if let Some(n) = self.encoder_norm {
            cfg.encoder_norm = n;
        }
        if let Some(o) = self.optimizer {
            cfg.optimizer = o;
        }
        if let Some(wd) = self.weight_decay {
            cfg.weight_decay = wd;
        }
        if let Some(shards) = self.bn_shards {
            // Each of R ranks holds 1/R of the batch: shards/R slices of it each, or all ranks'
            // statistics together for one shard. (1 < shards < R cannot be said: `check_ranks`.)
            let ranks = cfg.ranks.max(1);
            cfg.sync_bn = ranks > 1 && shards == 1;
            cfg.bn_groups = if cfg.sync_bn { 1 } else { shards / ranks };
        }
        // The seed trained its contrastive row at lr 0.02 (its BYOL rows at 0.8).
        if preset == Preset::Seed && self.method == Some(Method::Contrastive) {
            cfg.lr = 0.02;
        }
        cfg
    }

    /// Whether this variant can run on `ranks` data-parallel ranks: a `parallel` row of S
    /// shards needs S = 1 (sync-BN) or S a multiple of R.
    pub fn check_ranks(&self, ranks: usize) -> Result<()> {
        match self.bn_shards {
            Some(s) if s > 1 && !s.is_multiple_of(ranks.max(1)) => Err(Error::Invalid(format!(
                "variant {}: batch norm over B/{s} cannot run on {ranks} ranks (each rank's \
                 shard is B/{ranks}); run it with a number of ranks that divides {s}, or in \
                 one process",
                self.slug
            ))),
            _ => Ok(()),
        }
    }

    pub fn loss_name(&self) -> &'static str {
        match self.method {
            Some(Method::Contrastive) | Some(Method::Moco) => "Cross Entropy",
            Some(Method::SimClr) => "NT-Xent",
            Some(_) => "L2",
            None => "-",
        }
    }

    /// How the variant avoids collapse, in the seed's words (its "Contrastive" column).
    pub fn contrastive_kind(&self) -> &'static str {
        match self.method {
            None => "-",
            Some(Method::Contrastive) | Some(Method::Moco) | Some(Method::SimClr) => "Explicit",
            Some(_) if self.proj_norm == NormKind::Batch || self.pred_norm == NormKind::Batch => {
                "Implicit"
            }
            Some(_) => "None",
        }
    }
}
