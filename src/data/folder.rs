//! A folder of images, one subfolder per class: `DIR/<class>/*.{png,jpg,jpeg,bmp}`.
//!
//! Class ids are the subfolder names in sorted order. If `DIR/train` and `DIR/test` both exist,
//! they are the splits (each with one subfolder per class); otherwise every split is the whole
//! folder. Images are decoded when read (keeping memory to the file list) and resized to a square
//! of the requested side with bilinear filtering.

use super::files::{bad_file, check_index, check_out, io_error};
use super::{ImageSet, Split};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

pub struct ImageFolder {
    root: PathBuf,
    files: Vec<(PathBuf, u32)>,
    classes: Vec<String>,
    side: usize,
    split_name: &'static str,
}

/// Lists the images of `split` under `dir`, to be resized to `side` x `side`.
pub fn open(dir: &Path, split: Split, side: usize) -> Result<ImageFolder> {
    if !(1..=4096).contains(&side) {
        return Err(Error::Invalid(format!(
            "folder image size {side} is not in 1..=4096"
        )));
    }
    if !dir.is_dir() {
        return Err(Error::Io(format!(
            "{}: missing; expected a folder with one subfolder of images per class",
            dir.display()
        )));
    }
    let has_splits = dir.join("train").is_dir() && dir.join("test").is_dir();
    let (root, split_name) = match (has_splits, split) {
        (true, Split::Test) => (dir.join("test"), "test"),
        (true, _) => (dir.join("train"), "train"),
        (false, _) => (dir.to_path_buf(), "all"),
    };
    let classes = subfolders(&root)?;
    if classes.is_empty() {
        return Err(bad_file(
            &root,
            "has no class subfolders; expected DIR/<class>/*.png|jpg|jpeg|bmp",
        ));
    }
    let mut files = Vec::new();
    for (id, class) in classes.iter().enumerate() {
        let class_dir = root.join(class);
        let mut images: Vec<PathBuf> = list(&class_dir)?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        images.sort();
        files.extend(images.into_iter().map(|p| (p, id as u32)));
    }
    if files.is_empty() {
        return Err(bad_file(
            &root,
            format!(
                "its class subfolders hold no images with extension {}",
                EXTENSIONS.join(", ")
            ),
        ));
    }
    Ok(ImageFolder {
        root,
        files,
        classes,
        side,
        split_name,
    })
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, "cannot list", e))?;
    entries
        .map(|e| {
            e.map(|e| e.path())
                .map_err(|e| io_error(dir, "cannot list", e))
        })
        .collect()
}

/// Sorted names of the visible subfolders of `dir`.
fn subfolders(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = list(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(String::from))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

impl ImageSet for ImageFolder {
    fn name(&self) -> String {
        format!(
            "folder {} ({}) {} x {}x{}",
            self.root.display(),
            self.split_name,
            self.files.len(),
            self.side,
            self.side
        )
    }

    fn len(&self) -> usize {
        self.files.len()
    }

    fn image_size(&self) -> (usize, usize) {
        (self.side, self.side)
    }

    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.files.get(i).map(|(_, l)| *l)
    }

    fn read_into(&self, i: usize, out: &mut [u8]) -> Result<()> {
        check_out(out, self.side, self.side)?;
        check_index(i, self.len(), &self.name())?;
        let path = &self.files[i].0;
        let image = image::ImageReader::open(path)
            .map_err(|e| io_error(path, "cannot open", e))?
            .with_guessed_format()
            .map_err(|e| io_error(path, "cannot read", e))?
            .decode()
            .map_err(|e| bad_file(path, format!("cannot decode the image: {e}")))?
            .into_rgb8();
        let side = self.side as u32;
        let resized = if image.dimensions() == (side, side) {
            image
        } else {
            image::imageops::resize(&image, side, side, image::imageops::FilterType::Triangle)
        };
        out.copy_from_slice(resized.as_raw());
        Ok(())
    }
}
