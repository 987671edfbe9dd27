//! STL-10, binary version (`stl10_binary/`): 96x96 RGB images, 10 classes, 100,000 unlabeled.
//!
//! Each image is 27,648 bytes: the three colour planes one after the other, each plane stored
//! column by column (byte `c*9216 + x*96 + y`). Labels are one byte each, 1..=10 on disk. The
//! image files are large (`unlabeled_X.bin` is 2.7 GB), so images are read on demand by offset.

use super::files::{bad_file, check_index, check_out, read_names, read_whole, resolve_dir};
use super::files::{record_count, PositionedFile};
use super::{ImageSet, Split};
use crate::error::{Error, Result};
use std::path::Path;

pub const SIDE: usize = 96;
const PLANE: usize = SIDE * SIDE;
const RECORD: usize = PLANE * 3;

pub const CLASSES: [&str; 10] = [
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
];

/// One image file with its labels (None for `unlabeled_X.bin`).
struct Part {
    images: PositionedFile,
    count: usize,
    labels: Option<Vec<u8>>,
}

pub struct Stl10 {
    parts: Vec<Part>,
    len: usize,
    classes: Vec<String>,
    split_name: &'static str,
}

/// Opens STL-10 from `dir` (the `stl10_binary` folder or its parent).
pub fn open(dir: &Path, split: Split) -> Result<Stl10> {
    let dir = resolve_dir(dir, "stl10_binary");
    let classes = read_names(&dir.join("class_names.txt"))?
        .unwrap_or_else(|| CLASSES.iter().map(|s| s.to_string()).collect());
    let (files, split_name): (&[(&str, Option<&str>)], _) = match split {
        Split::Pretrain => (
            &[
                ("unlabeled_X.bin", None),
                ("train_X.bin", Some("train_y.bin")),
            ],
            "unlabeled+train",
        ),
        Split::Train => (&[("train_X.bin", Some("train_y.bin"))], "train"),
        Split::Test => (&[("test_X.bin", Some("test_y.bin"))], "test"),
    };
    let mut parts = Vec::new();
    for (x_name, y_name) in files {
        let x_path = dir.join(x_name);
        let images = PositionedFile::open(&x_path, "STL-10 images (96x96x3 bytes each)")?;
        let count = record_count(images.len(), RECORD as u64, &x_path)?;
        let labels = match y_name {
            Some(y_name) => Some(read_labels(
                &dir.join(y_name),
                count,
                classes.len(),
                &x_path,
            )?),
            None => None,
        };
        parts.push(Part {
            images,
            count,
            labels,
        });
    }
    let len = parts.iter().map(|p| p.count).sum();
    Ok(Stl10 {
        parts,
        len,
        classes,
        split_name,
    })
}

/// Reads a label file (one byte per image, 1..=classes) and shifts it to 0-based.
fn read_labels(path: &Path, count: usize, classes: usize, images: &Path) -> Result<Vec<u8>> {
    // One byte per image: the image file's size bounds the label file's (a shorter one is
    // named below).
    let mut labels = read_whole(
        path,
        "STL-10 labels (one byte per image, 1..10)",
        count as u64,
    )?;
    if labels.len() != count {
        return Err(bad_file(
            path,
            format!(
                "holds {} labels but {} holds {count} images (expected {count} bytes)",
                labels.len(),
                images.display()
            ),
        ));
    }
    for (i, l) in labels.iter_mut().enumerate() {
        if *l == 0 || *l as usize > classes {
            return Err(bad_file(
                path,
                format!("label {l} of image {i} is outside 1..={classes}"),
            ));
        }
        *l -= 1;
    }
    Ok(labels)
}

impl Stl10 {
    /// The part holding image `i` and the index within it.
    fn locate(&self, mut i: usize) -> Option<(&Part, usize)> {
        for part in &self.parts {
            if i < part.count {
                return Some((part, i));
            }
            i -= part.count;
        }
        None
    }
}

impl ImageSet for Stl10 {
    fn name(&self) -> String {
        format!("stl10 ({}) {} x {SIDE}x{SIDE}", self.split_name, self.len)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn image_size(&self) -> (usize, usize) {
        (SIDE, SIDE)
    }

    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }

    fn label(&self, i: usize) -> Option<u32> {
        let (part, j) = self.locate(i)?;
        part.labels.as_ref().map(|l| l[j] as u32)
    }

    fn read_into(&self, i: usize, out: &mut [u8]) -> Result<()> {
        check_out(out, SIDE, SIDE)?;
        check_index(i, self.len, &self.name())?;
        let (part, j) = self
            .locate(i)
            .ok_or_else(|| Error::Invalid(format!("image {i} out of range")))?;
        let mut raw = vec![0u8; RECORD];
        // u64 before multiplying: unlabeled_X.bin is larger than 4 GiB / 2 on 32-bit targets.
        part.images
            .read_exact_at(j as u64 * RECORD as u64, &mut raw)?;
        // Planar, column-major on disk -> interleaved, row-major (HWC) in memory.
        for c in 0..3 {
            let plane = &raw[c * PLANE..(c + 1) * PLANE];
            for x in 0..SIDE {
                let column = &plane[x * SIDE..(x + 1) * SIDE];
                for (y, &v) in column.iter().enumerate() {
                    out[(y * SIDE + x) * 3 + c] = v;
                }
            }
        }
        Ok(())
    }
}
