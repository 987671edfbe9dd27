//! Whole-file writes that are never seen half-done: the bytes go to `NAME.tmp`, then a rename
//! replaces `NAME` (the temporary file is removed if the write fails). A crash leaves the old
//! file or the new one, never a mix.

use crate::error::{Error, Result};
use std::path::Path;

pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io(format!("writing {}: {e}", path.display()))
        })
}
