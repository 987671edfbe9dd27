//! Self-supervised methods on one architecture: BYOL, its contrastive variant (the seed's
//! "Contrastive Loss" row), MoCo v2, SimSiam and SimCLR; their collapse diagnostics.

pub mod diagnostics;
pub mod model;

pub use diagnostics::{centered_effective_rank, DiagnosticValues, Diagnostics, SavedDiagnostics};
pub use model::{ModelConfig, SslModel, StepOutput};

use crate::error::{Error, Result};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Method {
    /// Online f, g, q; EMA target f', g'; loss 2 - 2cos(q(g(f(v1))), g'(f'(v2))), symmetrized.
    Byol,
    /// BYOL's architecture with InfoNCE between predictions and targets within the batch.
    Contrastive,
    /// MoCo v2: momentum encoder, no predictor, InfoNCE against a queue of past keys.
    Moco,
    /// SimSiam: BYOL without EMA; the target is the stop-gradient of the online projection.
    SimSiam,
    /// SimCLR: one network, no predictor or target; NT-Xent over the 2N views of a batch.
    SimClr,
}

impl Method {
    pub fn parse(s: &str) -> Result<Method> {
        match s {
            "byol" => Ok(Method::Byol),
            "contrastive" => Ok(Method::Contrastive),
            "moco" => Ok(Method::Moco),
            "simsiam" => Ok(Method::SimSiam),
            "simclr" => Ok(Method::SimClr),
            _ => Err(Error::Invalid(format!(
                "unknown method {s:?}: use byol, contrastive, moco, simsiam or simclr"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Byol => "byol",
            Method::Contrastive => "contrastive",
            Method::Moco => "moco",
            Method::SimSiam => "simsiam",
            Method::SimClr => "simclr",
        }
    }

    /// MoCo v2's EMA decay is 0.999; BYOL's (and the others') 0.99.
    pub fn default_tau(self) -> f64 {
        if self == Method::Moco {
            0.999
        } else {
            0.99
        }
    }

    /// SimCLR's temperature is 0.5; the InfoNCE methods' 0.2.
    pub fn default_temperature(self) -> f32 {
        if self == Method::SimClr {
            0.5
        } else {
            0.2
        }
    }

    pub fn has_predictor(self) -> bool {
        !matches!(self, Method::Moco | Method::SimClr)
    }

    pub fn has_target(self) -> bool {
        !matches!(self, Method::SimSiam | Method::SimClr)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
