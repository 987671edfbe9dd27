//! Checkpoints: every tensor a run needs to continue (parameters, EMA target, batch-norm running
//! statistics, optimizer momentum, MoCo queue) plus a JSON header (config, epoch, RNG state).
//!
//! Layout: b"BYOLCKPT", u32 version, u64 header length, header JSON, then each tensor's f32 values
//! (little endian) in header order. Written to `NAME.tmp`, synced, then renamed over `NAME`, so a
//! crash or a full disk never leaves a broken checkpoint where a good one was.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"BYOLCKPT";
const VERSION: u32 = 1;

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
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        f.write_all(MAGIC).map_err(io)?;
        f.write_all(&VERSION.to_le_bytes()).map_err(io)?;
        f.write_all(&(json.len() as u64).to_le_bytes())
            .map_err(io)?;
        f.write_all(&json).map_err(io)?;
        for (_, v) in tensors {
            f.write_all(bytemuck::cast_slice(v)).map_err(io)?;
        }
        let file = f.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Named tensors as saved: (name, values).
pub type NamedTensors = Vec<(String, Vec<f32>)>;

/// Reads a checkpoint: its state and its tensors by name.
pub fn load(path: &Path) -> Result<(serde_json::Value, NamedTensors)> {
    let bad = |what: &str| Error::Io(format!("checkpoint {}: {what}", path.display()));
    let mut f = std::fs::File::open(path).map_err(|e| bad(&format!("cannot open: {e}")))?;
    let file_len = f.metadata().map_err(|e| bad(&e.to_string()))?.len();
    let mut head = [0u8; 20];
    f.read_exact(&mut head)
        .map_err(|_| bad("too short to be a checkpoint"))?;
    if &head[..8] != MAGIC {
        return Err(bad("not a byol checkpoint (bad magic)"));
    }
    let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(bad(&format!(
            "version {version}, this build reads {VERSION}"
        )));
    }
    let json_len = u64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
    if json_len > file_len {
        return Err(bad("header length exceeds the file (truncated?)"));
    }
    let mut json = vec![0u8; json_len as usize];
    f.read_exact(&mut json)
        .map_err(|_| bad("truncated header"))?;
    let header: Header =
        serde_json::from_slice(&json).map_err(|e| bad(&format!("bad header: {e}")))?;
    let data_len: u64 = header.tensors.iter().map(|t| t.len as u64 * 4).sum();
    if 20 + json_len + data_len != file_len {
        return Err(bad(&format!(
            "size {file_len} bytes, expected {} (truncated or corrupt)",
            20 + json_len + data_len
        )));
    }
    let mut tensors = Vec::with_capacity(header.tensors.len());
    for t in &header.tensors {
        let mut bytes = vec![0u8; t.len * 4];
        f.read_exact(&mut bytes)
            .map_err(|_| bad("truncated data"))?;
        tensors.push((t.name.clone(), bytemuck::pod_collect_to_vec(&bytes)));
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
        std::fs::remove_dir_all(&dir).ok();
    }
}
