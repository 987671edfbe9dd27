//! Interop with PyTorch and other tools: encoder weights as safetensors under torchvision's
//! ResNet-18 names, out of a run and back in, and embeddings as `.npy` arrays.
//!
//! This room knows networks ([`crate::ssl`], [`crate::nn`]) and files, not runs: the commands in
//! [`crate::cli::interop`] open the run and pass what it holds.

pub mod npy;
pub mod torch_names;
pub mod weights;
