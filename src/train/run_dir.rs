//! A run owns its directory: a fresh run makes a new one (or takes an empty one), never writes over
//! another run's files or unrelated ones, and holds an exclusive lock on it while it trains, so two
//! runs can never interleave their checkpoints and metrics.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Held while a run trains in its directory; the lock goes with the process (even on kill -9).
pub struct RunLock {
    _file: File,
}

/// Locks `dir` (which exists) for this run; an error names the directory if another run holds it.
pub fn lock(dir: &Path) -> Result<RunLock> {
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Io(format!("locking {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(Error::Invalid(format!(
            "another byol run is training in {} (its lock is held); wait for it or choose another --out",
            dir.display()
        ))),
        Err(TryLockError::Error(e)) => {
            Err(Error::Io(format!("locking {}: {e}", path.display())))
        }
    }
}

/// Takes `dir` for a fresh run: creates it, or accepts it if it is an empty directory. A directory
/// that holds anything (a run's files or others) is refused, and nothing in it is touched.
pub fn claim_fresh(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::Io(format!("creating {}: {e}", dir.display()))),
    }
    if !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "--out {} exists and is not a directory",
            dir.display()
        )));
    }
    let mut entries =
        std::fs::read_dir(dir).map_err(|e| Error::Io(format!("reading {}: {e}", dir.display())))?;
    if entries.next().is_none() {
        return Ok(());
    }
    if !dir.join("checkpoint.bin").exists() && dir.join("config.json").exists() {
        return Err(Error::Invalid(format!(
            "{} holds a run that stopped before its first checkpoint (nothing to --resume): \
             delete it or choose another --out",
            dir.display()
        )));
    }
    if dir.join("checkpoint.bin").exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a run; continue it with --resume {} or choose another --out",
            dir.display(),
            dir.display()
        )));
    }
    Err(Error::Invalid(format!(
        "--out {} is not empty and holds no byol run: refusing to write into it",
        dir.display()
    )))
}

/// A new directory `root/stem-YYYYMMDD-HHMMSS` (UTC), made exclusively: when that name is taken
/// (two runs started in the same second), `-2`, `-3`, ... is appended until one is free.
pub fn new_run_dir(root: &Path, stem: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(root)
        .map_err(|e| Error::Io(format!("creating {}: {e}", root.display())))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("{stem}-{}", utc_stamp(secs));
    for n in 1..10_000 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = root.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::Io(format!("creating {}: {e}", dir.display()))),
        }
    }
    Err(Error::Io(format!(
        "no free run directory name under {} for {base}",
        root.display()
    )))
}

/// `YYYYMMDD-HHMMSS` of a UNIX time, UTC (civil-from-days, proleptic Gregorian).
pub fn utc_stamp(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc_stamp;

    #[test]
    fn utc_stamps_are_calendar_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_796_169_261), "20261201-235421");
    }
}
