//! File helpers shared by the readers: checked opening, size checks and positioned reads, each
//! error naming the file and what was expected.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// An error about the content of `path` (wrong size, magic number, label, ...).
pub(crate) fn bad_file(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: {problem}", path.display()))
}

/// An error from the operating system while touching `path`.
pub(crate) fn io_error(path: &Path, doing: &str, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {doing}: {e}", path.display()))
}

/// Opens `path`, or says it is missing and what it should have held.
pub(crate) fn open_file(path: &Path, expected: &str) -> Result<File> {
    if !path.is_file() {
        return Err(Error::Io(format!(
            "{}: missing; expected {expected}",
            path.display()
        )));
    }
    File::open(path).map_err(|e| io_error(path, "cannot open", e))
}

/// The size of an open file in bytes.
pub(crate) fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file
        .metadata()
        .map_err(|e| io_error(path, "cannot read its size", e))?
        .len())
}

/// How many records of `record` bytes the file holds; a size that is not a whole number of
/// records (a truncated download) is an error giving the expected and the actual size.
pub(crate) fn record_count(len: u64, record: u64, path: &Path) -> Result<usize> {
    if len == 0 {
        return Err(bad_file(path, "the file is empty"));
    }
    if !len.is_multiple_of(record) {
        let whole = len / record;
        return Err(bad_file(
            path,
            format!(
                "size {len} bytes is not a whole number of {record}-byte records \
                 (truncated?): expected {} or {} bytes, got {len}",
                whole * record,
                (whole + 1) * record
            ),
        ));
    }
    Ok((len / record) as usize)
}

/// Reads a whole (small) file of at most `max_bytes`: a file larger than its format allows (a
/// sparse multi-GB file, the wrong file) is refused, naming it, before memory is allocated.
pub(crate) fn read_whole(path: &Path, what: &str, max_bytes: u64) -> Result<Vec<u8>> {
    let file = open_file(path, what)?;
    let len = file_len(&file, path)?;
    if len > max_bytes {
        return Err(bad_file(
            path,
            format!("{len} bytes is more than {what} can be (at most {max_bytes})"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take`: a file that grows while it is read cannot push past the checked size.
    file.take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, "cannot read", e))?;
    Ok(bytes)
}

/// A size mismatch is an error naming the file with the expected and the actual size.
pub(crate) fn check_size(path: &Path, expected: u64, actual: u64) -> Result<()> {
    if expected != actual {
        return Err(bad_file(
            path,
            format!("expected {expected} bytes, got {actual} (truncated or wrong file?)"),
        ));
    }
    Ok(())
}

/// Reads a text file of one name per line (class names), skipping blank lines; None if absent.
pub(crate) fn read_names(path: &Path) -> Result<Option<Vec<String>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = read_whole(path, "a list of class names", 1 << 20)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| bad_file(path, "is not UTF-8 text (one class name per line)"))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err(bad_file(path, "holds no class names"));
    }
    Ok(Some(names))
}

/// `dir/sub` if that folder exists (the user named the parent), else `dir`.
pub(crate) fn resolve_dir(dir: &Path, sub: &str) -> PathBuf {
    let inner = dir.join(sub);
    if inner.is_dir() {
        inner
    } else {
        dir.to_path_buf()
    }
}

/// A file read at given offsets from several threads at once.
pub(crate) struct PositionedFile {
    path: PathBuf,
    len: u64,
    #[cfg(unix)]
    file: File,
    #[cfg(not(unix))]
    file: std::sync::Mutex<File>,
}

impl PositionedFile {
    pub(crate) fn open(path: &Path, expected: &str) -> Result<PositionedFile> {
        let file = open_file(path, expected)?;
        let len = file_len(&file, path)?;
        Ok(PositionedFile {
            path: path.to_path_buf(),
            len,
            #[cfg(unix)]
            file,
            #[cfg(not(unix))]
            file: std::sync::Mutex::new(file),
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Fills `buf` from `offset`; reading past the end is an error, never a short read.
    pub(crate) fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(bad_file(
                &self.path,
                format!(
                    "read of {} bytes at offset {offset} past the end ({} bytes)",
                    buf.len(),
                    self.len
                ),
            ));
        }
        self.read_raw(offset, buf)
            .map_err(|e| io_error(&self.path, &format!("read at offset {offset} failed"), e))
    }

    #[cfg(unix)]
    fn read_raw(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }

    #[cfg(not(unix))]
    fn read_raw(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

/// The output buffer must hold exactly one image.
pub(crate) fn check_out(out: &[u8], h: usize, w: usize) -> Result<()> {
    if out.len() != h * w * 3 {
        return Err(Error::Shape(format!(
            "read_into needs a buffer of {h}x{w}x3 = {} bytes, got {}",
            h * w * 3,
            out.len()
        )));
    }
    Ok(())
}

/// Image `i` must exist.
pub(crate) fn check_index(i: usize, len: usize, name: &str) -> Result<()> {
    if i >= len {
        return Err(Error::Invalid(format!(
            "image {i} out of range: {name} has {len} images"
        )));
    }
    Ok(())
}
