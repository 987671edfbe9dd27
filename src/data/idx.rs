//! IDX files (MNIST, Fashion-MNIST): `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each plain or gzipped (`.gz`).
//!
//! An IDX file starts with a big-endian magic number (0x00000803 for a 3-D array of images,
//! 0x00000801 for a 1-D array of labels), then one big-endian u32 per dimension, then the bytes.
//! Grayscale images are replicated to three channels.

use super::files::{bad_file, check_index, check_out, check_size, io_error};
use super::{ImageSet, Split};
use crate::error::{Error, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const NUM_CLASSES: usize = 10;

pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Which class names to give the ten labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// MNIST digits "0".."9".
    Digits,
    /// Fashion-MNIST's clothing names.
    Fashion,
}

pub struct Idx {
    /// Grayscale, one byte per pixel, images one after the other.
    pixels: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
    flavor: Flavor,
    split_name: &'static str,
}

/// Opens the IDX files of `split` in `dir` (or `dir/fashion-mnist` for Fashion-MNIST).
pub fn open(dir: &Path, split: Split, flavor: Flavor) -> Result<Idx> {
    let dir = match flavor {
        Flavor::Fashion => super::files::resolve_dir(dir, "fashion-mnist"),
        Flavor::Digits => super::files::resolve_dir(dir, "mnist"),
    };
    let (prefix, split_name) = match split {
        Split::Pretrain | Split::Train => ("train", "train"),
        Split::Test => ("t10k", "test"),
    };
    let images_path = find(&dir, prefix, "images-idx3-ubyte")?;
    let labels_path = find(&dir, prefix, "labels-idx1-ubyte")?;
    // Headers first: what a header claims is checked (and bounded by the file's real size)
    // before anything that large is allocated or inflated.
    let (dims, images) = IdxFile::open(&images_path, IMAGES_MAGIC, 3)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 || rows > 4096 || cols > 4096 {
        return Err(bad_file(
            &images_path,
            format!("image size {rows}x{cols} is not in 1..=4096"),
        ));
    }
    let pixel_bytes = count
        .checked_mul(rows * cols)
        .ok_or_else(|| bad_file(&images_path, "image count overflows"))?;
    // Bounded by the checks inside (the file's real size, or what its gzip size can hold).
    let pixels = images.payload(pixel_bytes)?;
    let (label_dims, labels) = IdxFile::open(&labels_path, LABELS_MAGIC, 1)?;
    if label_dims[0] != count {
        return Err(bad_file(
            &labels_path,
            format!(
                "holds {} labels but {} holds {count} images",
                label_dims[0],
                images_path.display()
            ),
        ));
    }
    let labels = labels.payload(count)?;
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= NUM_CLASSES)
    {
        return Err(bad_file(
            &labels_path,
            format!("label {l} of image {i} is outside 0..{NUM_CLASSES}"),
        ));
    }
    Ok(Idx {
        pixels,
        labels,
        rows,
        cols,
        flavor,
        split_name,
    })
}

/// `dir/PREFIX-STEM` or a variant of it (`.gz`, or a dot instead of the last dash as some MNIST
/// copies name them); an error listing what was looked for if none exists.
fn find(dir: &Path, prefix: &str, stem: &str) -> Result<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    let mut tried = Vec::new();
    for name in [format!("{prefix}-{stem}"), format!("{prefix}-{dotted}")] {
        for candidate in [name.clone(), format!("{name}.gz")] {
            let path = dir.join(&candidate);
            // Anything by that name (a pipe or a link to a device too: opening it says why not).
            if path.exists() {
                return Ok(path);
            }
            tried.push(candidate);
        }
    }
    Err(Error::Io(format!(
        "{}: missing; expected an IDX file named one of {}",
        dir.join(format!("{prefix}-{stem}")).display(),
        tried.join(", ")
    )))
}

/// An IDX file whose header has been read: plain, or inflated from `.gz` as a stream.
struct IdxFile {
    path: PathBuf,
    reader: Box<dyn Read>,
    header_len: u64,
    /// The plain file's size, or the gzip file's (compressed) size.
    file_len: u64,
    gzipped: bool,
}

/// DEFLATE inflates at most about 1032:1: a header claiming more than this many payload bytes
/// per compressed byte is lying (or the file is not what it says).
const MAX_INFLATE_RATIO: u64 = 1100;

impl IdxFile {
    /// Opens `path` and reads its header: the magic number and `ndim` dimensions.
    fn open(path: &Path, magic: u32, ndim: usize) -> Result<(Vec<usize>, IdxFile)> {
        // Checked before opening: opening a named pipe would block, and /dev/zero never ends.
        let meta = std::fs::metadata(path).map_err(|e| io_error(path, "cannot open", e))?;
        if !meta.is_file() {
            return Err(bad_file(
                path,
                "is not a regular file (a pipe, a device or a folder?)",
            ));
        }
        let file = std::fs::File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
        let gzipped = path.extension().is_some_and(|e| e == "gz");
        let mut reader: Box<dyn Read> = if gzipped {
            Box::new(GzDecoder::new(std::io::BufReader::new(file)))
        } else {
            Box::new(std::io::BufReader::new(file))
        };
        let header_len = 4 + 4 * ndim;
        let mut head = Vec::with_capacity(header_len);
        (&mut reader)
            .take(header_len as u64)
            .read_to_end(&mut head)
            .map_err(|e| io_error(path, "gzip decoding failed (truncated or corrupt?)", e))?;
        let dims = header(&head, path, magic, ndim)?;
        Ok((
            dims,
            IdxFile {
                path: path.to_path_buf(),
                reader,
                header_len: header_len as u64,
                file_len: meta.len(),
                gzipped,
            },
        ))
    }

    /// The `bytes` of data after the header, which must be exactly what the file holds.
    fn payload(mut self, bytes: usize) -> Result<Vec<u8>> {
        let path = &self.path;
        let claimed = self.header_len + bytes as u64;
        if !self.gzipped {
            check_size(path, claimed, self.file_len)?;
        } else if bytes as u64 > MAX_INFLATE_RATIO.saturating_mul(self.file_len) {
            return Err(bad_file(
                path,
                format!(
                    "its header claims {claimed} bytes, more than a {}-byte gzip file can hold",
                    self.file_len
                ),
            ));
        }
        let mut data = Vec::with_capacity(bytes);
        (&mut self.reader)
            .take(bytes as u64)
            .read_to_end(&mut data)
            .map_err(|e| io_error(path, "gzip decoding failed (truncated or corrupt?)", e))?;
        let mut extra = [0u8; 1];
        let more = self
            .reader
            .read(&mut extra)
            .map_err(|e| io_error(path, "gzip decoding failed (truncated or corrupt?)", e))?;
        if data.len() != bytes || more > 0 {
            let actual = if more > 0 {
                "more".to_string()
            } else {
                (self.header_len + data.len() as u64).to_string()
            };
            return Err(bad_file(
                path,
                format!(
                    "expected {claimed} bytes{}, got {actual} (truncated or wrong file?)",
                    if self.gzipped { " once inflated" } else { "" }
                ),
            ));
        }
        Ok(data)
    }
}

/// Checks the magic number and returns the `ndim` dimensions.
fn header(bytes: &[u8], path: &Path, magic: u32, ndim: usize) -> Result<Vec<usize>> {
    let word = |k: usize| u32::from_be_bytes([bytes[k], bytes[k + 1], bytes[k + 2], bytes[k + 3]]);
    let need = 4 + 4 * ndim;
    // The magic number first: a wrong kind of file is a clearer error than a short header.
    if bytes.len() >= 4 && word(0) != magic {
        return Err(bad_file(
            path,
            format!(
                "wrong magic number 0x{:08x}, expected 0x{magic:08x}",
                word(0)
            ),
        ));
    }
    if bytes.len() < need {
        return Err(bad_file(
            path,
            format!(
                "too short for an IDX header: expected at least {need} bytes, got {}",
                bytes.len()
            ),
        ));
    }
    Ok((0..ndim).map(|d| word(4 + 4 * d) as usize).collect())
}

impl ImageSet for Idx {
    fn name(&self) -> String {
        let what = match self.flavor {
            Flavor::Digits => "mnist",
            Flavor::Fashion => "fashion-mnist",
        };
        format!(
            "{what} ({}) {} x {}x{}",
            self.split_name,
            self.labels.len(),
            self.rows,
            self.cols
        )
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn image_size(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn classes(&self) -> Vec<String> {
        match self.flavor {
            Flavor::Digits => (0..NUM_CLASSES).map(|d| d.to_string()).collect(),
            Flavor::Fashion => FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.labels.get(i).map(|&l| l as u32)
    }

    fn read_into(&self, i: usize, out: &mut [u8]) -> Result<()> {
        check_out(out, self.rows, self.cols)?;
        check_index(i, self.len(), &self.name())?;
        let size = self.rows * self.cols;
        let gray = &self.pixels[i * size..(i + 1) * size];
        for (rgb, &g) in out.chunks_exact_mut(3).zip(gray) {
            rgb.fill(g);
        }
        Ok(())
    }
}
