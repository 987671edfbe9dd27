//! Checkpoints: every tensor a run needs to continue (parameters, EMA target, batch-norm running
//! statistics, optimizer momentum, MoCo queue) plus a JSON header (config, epoch, RNG state).
//!
//! Layout: b"BYOLCKPT", u32 version (2), u64 header length, header JSON, then each tensor's f32
//! values (little endian) in header order, then a u32 CRC-32 of every byte before it. Written to
//! `NAME.tmp`, synced, then renamed over `NAME`, so a crash or a full disk never leaves a broken
//! checkpoint where a good one was (a failed write removes its temporary file). Loading checks the
//! magic, the sizes (with overflow-checked arithmetic, against the file's real size, before
//! allocating), the checksum and that every value is finite; version 1 files (no checksum) still
//! load.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"BYOLCKPT";
const VERSION: u32 = 2;
/// Checkpoints written before the checksum: read without one.
const VERSION_NO_CHECKSUM: u32 = 1;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TensorEntry {
    pub name: String,
    pub len: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Header {
    /// Free-form run state (config, epoch, step, RNG, queue position...).
    pub state: serde_json::Value,
    pub tensors: Vec<TensorEntry>,
}

/// Writes a checkpoint atomically.
pub fn save(path: &Path, state: serde_json::Value, tensors: &[(String, Vec<f32>)]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io(format!("writing checkpoint {}: {e}", path.display()));
    let header = Header {
        state,
        tensors: tensors
            .iter()
            .map(|(n, v)| TensorEntry {
                name: n.clone(),
                len: v.len(),
            })
            .collect(),
    };
    let json =
        serde_json::to_vec(&header).map_err(|e| Error::Io(format!("checkpoint header: {e}")))?;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = CrcWriter::new(std::io::BufWriter::new(std::fs::File::create(&tmp)?));
        f.write_all(MAGIC)?;
        f.write_all(&VERSION.to_le_bytes())?;
        f.write_all(&(json.len() as u64).to_le_bytes())?;
        f.write_all(&json)?;
        for (_, v) in tensors {
            f.write_all(bytemuck::cast_slice(v))?;
        }
        let (mut inner, crc) = f.finish();
        inner.write_all(&crc.to_le_bytes())?;
        let file = inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        // A full disk must not stay full because of our half-written file.
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Passes writes on and keeps the CRC-32 of everything written.
struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> CrcWriter<W> {
    fn new(inner: W) -> Self {
        CrcWriter {
            inner,
            crc: crc32fast::Hasher::new(),
        }
    }

    fn finish(self) -> (W, u32) {
        (self.inner, self.crc.finalize())
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a small file through `NAME.tmp` and a rename (see [`crate::atomic_file`]).
pub use crate::atomic_file::write as write_atomic;

/// Named tensors as saved: (name, values).
pub type NamedTensors = Vec<(String, Vec<f32>)>;

/// Reads a checkpoint: its state and its tensors by name.
pub fn load(path: &Path) -> Result<(serde_json::Value, NamedTensors)> {
    let bad = |what: &str| Error::Io(format!("checkpoint {}: {what}", path.display()));
    // A named pipe or a device would block or never end: only regular files are read.
    let meta = std::fs::metadata(path).map_err(|e| bad(&format!("cannot open: {e}")))?;
    if !meta.is_file() {
        return Err(bad("not a regular file"));
    }
    let file_len = meta.len();
    let mut f = std::fs::File::open(path).map_err(|e| bad(&format!("cannot open: {e}")))?;
    let mut head = [0u8; 20];
    f.read_exact(&mut head)
        .map_err(|_| bad("too short to be a checkpoint"))?;
    if &head[..8] != MAGIC {
        return Err(bad("not a byol checkpoint (bad magic)"));
    }
    let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if version != VERSION && version != VERSION_NO_CHECKSUM {
        return Err(bad(&format!(
            "version {version}, this build reads {VERSION_NO_CHECKSUM} and {VERSION}"
        )));
    }
    let trailer = if version == VERSION { 4 } else { 0 };
    let json_len = u64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
    if json_len > file_len {
        return Err(bad("header length exceeds the file (truncated?)"));
    }
    let mut json = vec![0u8; json_len as usize];
    f.read_exact(&mut json)
        .map_err(|_| bad("truncated header"))?;
    let header: Header =
        serde_json::from_slice(&json).map_err(|e| bad(&format!("bad header: {e}")))?;
    // Lengths come from the file: every product and sum is checked, and bounded by its real size.
    let data_len = header
        .tensors
        .iter()
        .try_fold(0u64, |acc, t| {
            (t.len as u64)
                .checked_mul(4)
                .and_then(|b| acc.checked_add(b))
        })
        .ok_or_else(|| bad("tensor sizes overflow (corrupt header)"))?;
    let expected = [20, json_len, data_len, trailer]
        .into_iter()
        .try_fold(0u64, u64::checked_add)
        .ok_or_else(|| bad("sizes overflow (corrupt header)"))?;
    if expected != file_len {
        return Err(bad(&format!(
            "size {file_len} bytes, expected {expected} (truncated or corrupt)"
        )));
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(&json);
    let mut tensors = Vec::with_capacity(header.tensors.len());
    for t in &header.tensors {
        let mut bytes = vec![0u8; t.len * 4];
        f.read_exact(&mut bytes)
            .map_err(|_| bad("truncated data"))?;
        crc.update(&bytes);
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        tensors.push((t.name.clone(), values));
    }
    if version == VERSION {
        let mut stored = [0u8; 4];
        f.read_exact(&mut stored)
            .map_err(|_| bad("truncated checksum"))?;
        if u32::from_le_bytes(stored) != crc.finalize() {
            return Err(bad(
                "checksum mismatch: the file is corrupt (a bit flipped, or it was changed)",
            ));
        }
    }
    for (name, values) in &tensors {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(&format!(
                "tensor {name} holds a non-finite value ({} at {i}): refusing to load it",
                values[i]
            )));
        }
    }
    Ok((header.state, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let dir = std::env::temp_dir().join(format!("byol-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("checkpoint.bin");
        let tensors = vec![
            ("a".to_string(), vec![1.0, -2.5, 3.25]),
            ("b".to_string(), vec![]),
        ];
        save(&path, serde_json::json!({"epoch": 3}), &tensors).unwrap();
        let (state, back) = load(&path).unwrap();
        assert_eq!(state["epoch"], 3);
        assert_eq!(back, tensors);
        // A truncated file is refused with a message, never a panic.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("truncated"));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load(&path).is_err());
        // One flipped bit anywhere in the data is caught by the checksum.
        let mut flipped = bytes.clone();
        flipped[bytes.len() - 8] ^= 0x10;
        std::fs::write(&path, &flipped).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("checksum") && err.contains("checkpoint.bin"),
            "{err}"
        );
        // Non-finite parameters are refused even with a valid checksum.
        save(
            &path,
            serde_json::json!({}),
            &[("w".into(), vec![1.0, f32::NAN])],
        )
        .unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("non-finite") && err.contains('w'), "{err}");
        // A header whose lengths overflow a u64 byte count is an error, not a panic.
        let huge = Header {
            state: serde_json::json!({}),
            tensors: vec![
                TensorEntry {
                    name: "a".into(),
                    len: usize::MAX / 2,
                },
                TensorEntry {
                    name: "b".into(),
                    len: usize::MAX / 2,
                },
            ],
        };
        let json = serde_json::to_vec(&huge).unwrap();
        let mut f = MAGIC.to_vec();
        f.extend(VERSION.to_le_bytes());
        f.extend((json.len() as u64).to_le_bytes());
        f.extend(json);
        std::fs::write(&path, &f).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("overflow") || err.contains("size"), "{err}");
        // A directory (or a pipe) is not read.
        let err = load(&dir).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
