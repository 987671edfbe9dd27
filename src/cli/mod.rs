//! Command-line subcommands, as library code so they can be tested.

pub mod data;
pub mod data_show;
pub mod interop;
pub mod study;
pub mod train;
