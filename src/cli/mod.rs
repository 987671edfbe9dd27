//! Command-line subcommands, as library code so they can be tested.

pub mod data;
pub mod data_show;
pub mod interop;
pub mod study;
pub mod train;
pub mod tune;

use crate::error::Result;
use crate::{Engine, EngineOptions, TuneMode};

/// The global flags that choose and set up the engine: `--adapter` and `--tune`.
#[derive(Clone, Debug, Default)]
pub struct Device {
    pub adapter: Option<String>,
    pub tune: TuneMode,
}

impl Device {
    pub fn open(&self) -> Result<Engine> {
        Engine::new(EngineOptions {
            adapter: self.adapter.clone(),
            tune: self.tune,
            ..Default::default()
        })
    }
}
