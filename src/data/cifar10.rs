//! CIFAR-10, binary version (`cifar-10-batches-bin/`): 32x32 RGB images, 10 classes.
//!
//! Each record is one label byte (0..=9) then 3,072 pixel bytes: the red plane (1,024 bytes, row
//! by row), then green, then blue. The five training batches hold 30 MB each, so they are read
//! whole at open and converted to HWC once.

use super::files::resolve_dir;
use super::files::{bad_file, check_index, check_out, read_names, read_whole, record_count};
use super::{ImageSet, Split};
use crate::error::Result;
use std::path::Path;

pub const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const RECORD: usize = 1 + PLANE * 3;
/// Records in each official batch file.
const BATCH_RECORDS: usize = 10_000;

pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
pub const TEST_FILE: &str = "test_batch.bin";

pub struct Cifar10 {
    /// All images of the split, HWC, one after the other.
    pixels: Vec<u8>,
    labels: Vec<u8>,
    classes: Vec<String>,
    split_name: &'static str,
}

/// Opens CIFAR-10 from `dir` (the `cifar-10-batches-bin` folder or its parent).
pub fn open(dir: &Path, split: Split) -> Result<Cifar10> {
    let dir = resolve_dir(dir, "cifar-10-batches-bin");
    let classes = read_names(&dir.join("batches.meta.txt"))?
        .unwrap_or_else(|| CLASSES.iter().map(|s| s.to_string()).collect());
    let (files, split_name): (&[&str], _) = match split {
        Split::Pretrain | Split::Train => (&TRAIN_FILES, "train"),
        Split::Test => (&[TEST_FILE], "test"),
    };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for name in files {
        let path = dir.join(name);
        // Official batches hold 10,000 records; nothing larger is a CIFAR-10 batch.
        let bytes = read_whole(
            &path,
            "a CIFAR-10 batch of 3073-byte records",
            (BATCH_RECORDS * RECORD) as u64,
        )?;
        let count = record_count(bytes.len() as u64, RECORD as u64, &path)?;
        pixels.reserve(count * PLANE * 3);
        for (r, record) in bytes.chunks_exact(RECORD).enumerate() {
            let label = record[0];
            if label as usize >= classes.len() {
                return Err(bad_file(
                    &path,
                    format!(
                        "label {label} of record {r} is outside 0..{}",
                        classes.len()
                    ),
                ));
            }
            labels.push(label);
            let planes = &record[1..];
            // Planar RGB -> interleaved HWC.
            for p in 0..PLANE {
                pixels.extend_from_slice(&[planes[p], planes[PLANE + p], planes[2 * PLANE + p]]);
            }
        }
    }
    Ok(Cifar10 {
        pixels,
        labels,
        classes,
        split_name,
    })
}

impl ImageSet for Cifar10 {
    fn name(&self) -> String {
        format!(
            "cifar10 ({}) {} x {SIDE}x{SIDE}",
            self.split_name,
            self.labels.len()
        )
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn image_size(&self) -> (usize, usize) {
        (SIDE, SIDE)
    }

    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.labels.get(i).map(|&l| l as u32)
    }

    fn read_into(&self, i: usize, out: &mut [u8]) -> Result<()> {
        check_out(out, SIDE, SIDE)?;
        check_index(i, self.len(), &self.name())?;
        let size = PLANE * 3;
        out.copy_from_slice(&self.pixels[i * size..(i + 1) * size]);
        Ok(())
    }
}
