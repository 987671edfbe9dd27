//! Datasets: readers for the formats byol-wgpu's users have, and a built-in generated dataset.
//!
//! Every reader returns an [`ImageSet`]: uint8 RGB images in HWC order, all of one size, plus
//! labels where the format has them. Large files are read on demand (memory map or positioned
//! reads), never whole into memory. Every reader checks what it reads (file sizes against record
//! sizes, magic numbers, label ranges, dimensions) and names the file and the problem on error.

use crate::error::Result;

pub mod augment;
pub mod cifar10;
pub mod fetch;
mod files;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod spec;
pub mod stl10;
pub mod synthetic;
pub mod views;

pub use fetch::fetch;
pub use spec::{open, SPEC_FORMS};

/// Which part of a dataset to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Images for self-supervised training (STL-10: unlabeled + train; others: train).
    Pretrain,
    /// The labeled training split (linear evaluation).
    Train,
    /// The labeled test split.
    Test,
}

/// A random-access set of same-size RGB images. `Send + Sync` so a loader thread can read it.
pub trait ImageSet: Send + Sync {
    /// A short description, e.g. "stl10 (unlabeled+train) 105000 x 96x96".
    fn name(&self) -> String;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// (height, width) of every image.
    fn image_size(&self) -> (usize, usize);
    /// Class names; empty when the set has no labels.
    fn classes(&self) -> Vec<String>;
    /// The label of image `i`, if the set is labeled.
    fn label(&self, i: usize) -> Option<u32>;
    /// Writes image `i` as height*width*3 bytes, RGB, row-major (HWC), into `out`.
    fn read_into(&self, i: usize, out: &mut [u8]) -> Result<()>;
}
