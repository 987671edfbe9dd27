//! A run's `kernels.json`: the kernel each pass with more than one kernel used (`engine::tune`),
//! written beside every checkpoint and pinned again on `--resume`, so that a resumed run computes
//! with the same kernels, and so the same rounding, as the run it continues.

use crate::engine::Engine;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

const FORMAT: &str = "byol-wgpu kernels 1";
pub const FILE: &str = "kernels.json";

/// Writes the engine's decisions so far (through a temporary file and a rename).
pub fn save(engine: &Engine, run: &Path) -> Result<()> {
    let kernels: BTreeMap<String, String> = engine
        .kernel_choices()
        .into_iter()
        .map(|c| (c.key, c.kernel))
        .collect();
    let json = serde_json::json!({
        "format": FORMAT,
        "adapter": engine.adapter_name(),
        "kernels": kernels,
    });
    let body = serde_json::to_string_pretty(&json).map_err(|e| Error::Io(e.to_string()))?;
    crate::atomic_file::write(&run.join(FILE), body.as_bytes())
}

/// Pins the decisions a run recorded; a run without the file (older ones) pins nothing.
pub fn pin(engine: &Engine, run: &Path) -> Result<()> {
    let path = run.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io(format!("reading {}: {e}", path.display()))),
    };
    let bad = |why: String| {
        Error::Io(format!(
            "{} is not a kernels file ({why}); it records which kernels the run used, so that \
             --resume reproduces it; delete it to resume with kernels chosen afresh",
            path.display()
        ))
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if v["format"] != FORMAT {
        return Err(bad(format!("its format is not \"{FORMAT}\"")));
    }
    let kernels: BTreeMap<String, String> =
        serde_json::from_value(v["kernels"].clone()).map_err(|e| bad(e.to_string()))?;
    engine.pin_kernels(&kernels);
    Ok(())
}
