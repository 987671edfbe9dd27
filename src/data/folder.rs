//! A folder of images, one subfolder per class: `DIR/<class>/*.{png,jpg,jpeg,bmp}`.
//!
//! Class ids are the subfolder names in sorted order. If `DIR/train` and `DIR/test` both exist,
//! they are the splits (each with one subfolder per class) and share ONE class mapping, the sorted
//! union of both splits' subfolders (a class missing from a split is warned about, never
//! renumbered); otherwise every split is the whole folder. Images are decoded when read (keeping
//! memory to the file list), within limits on their size, and resized to a square of the
//! requested side with bilinear filtering. A JPEG without its end-of-image marker is refused as
//! truncated (decoders would fill the missing part silently).

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
    let classes = if has_splits {
        let mut union = subfolders(&dir.join("train"))?;
        union.extend(subfolders(&dir.join("test"))?);
        union.sort();
        union.dedup();
        union
    } else {
        subfolders(&root)?
    };
    if classes.is_empty() {
        return Err(bad_file(
            &root,
            "has no class subfolders; expected DIR/<class>/*.png|jpg|jpeg|bmp",
        ));
    }
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for (id, class) in classes.iter().enumerate() {
        let class_dir = root.join(class);
        if !class_dir.is_dir() {
            missing.push(class.as_str());
            continue;
        }
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
    if !missing.is_empty() {
        warn_once(format!(
            "warning: {} has no images of class {} (the {split_name} split; class ids follow \
             both splits' classes, sorted)",
            root.display(),
            missing.join(", ")
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

/// Prints a warning once per process (a set is opened once per split and use).
fn warn_once(message: String) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.contains(&message) {
        eprintln!("{message}");
        seen.push(message);
    }
}

/// Largest image side and file byte count a folder image may have: a small file can claim an
/// enormous image (a 389 KB PNG of 20000 x 20000), which would take minutes and gigabytes.
const MAX_SIDE: u32 = 8192;
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Decodes one image file within the limits, refusing truncated JPEGs.
fn decode(path: &Path) -> Result<image::RgbImage> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, "cannot open", e))?;
    if !meta.is_file() {
        return Err(bad_file(path, "is not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(bad_file(
            path,
            format!(
                "is {} bytes, more than the {MAX_FILE_BYTES} byol reads",
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| io_error(path, "cannot read", e))?;
    let is_jpeg = bytes.starts_with(&[0xFF, 0xD8]);
    // A complete JPEG ends with the end-of-image marker (FF D9), possibly followed by padding.
    let trimmed = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(&bytes[..0], |end| &bytes[..=end]);
    if is_jpeg && !trimmed.ends_with(&[0xFF, 0xD9]) {
        return Err(bad_file(
            path,
            "is a truncated JPEG (no end-of-image marker)",
        ));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| io_error(path, "cannot read", e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(4 * u64::from(MAX_SIDE) * u64::from(MAX_SIDE));
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => bad_file(
            path,
            format!("is larger than the {MAX_SIDE} x {MAX_SIDE} pixels byol decodes ({e})"),
        ),
        e => bad_file(path, format!("cannot decode the image: {e}")),
    })?;
    Ok(image.into_rgb8())
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
        let image = decode(path)?;
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
