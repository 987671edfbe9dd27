//! byol-wgpu: a from-scratch GPU compute engine on wgpu with hand-written WGSL kernels, for
//! BYOL-style self-supervised learning.
//!
//! The pieces, bottom up: [`device`] opens an adapter, [`pool`] recycles buffers, [`kernels`]
//! compiles and caches WGSL pipelines, [`engine`] records dispatches into few command buffers,
//! [`tensor`] holds GPU data, [`tape`] records what ops did, [`ops`] are the differentiable kernels,
//! [`autograd`] walks the tape backward and [`optim`] updates parameters.

pub mod atomic_file;
pub mod autograd;
pub mod cli;
pub mod data;
pub mod device;
pub mod dist;
pub mod engine;
pub mod error;
pub mod eval;
pub mod interop;
pub mod kernels;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod params;
pub mod pool;
pub mod rng;
pub mod ssl;
pub mod study;
pub mod tape;
pub mod tensor;
pub mod train;

pub use autograd::Grads;
pub use engine::{ConvVariant, Engine, EngineOptions, MatmulVariant, TuneMode};
pub use error::{Error, Result};
pub use params::ParamSet;
pub use tensor::{DType, Tensor};
