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
        self.open_slot(0)
    }

    /// Opens the `slot`-th of the matching adapters (a data-parallel rank's own GPU).
    pub fn open_slot(&self, slot: usize) -> Result<Engine> {
        Engine::new(EngineOptions {
            adapter: self.adapter.clone(),
            adapter_slot: slot,
            tune: self.tune,
            ..Default::default()
        })
    }
}
