//! `byol data fetch`: download a dataset from its official address, check the published MD5 and
//! unpack it.
//!
//! A download goes to a `.part` file next to its destination and is renamed only once its
//! checksum matches; a mismatch deletes it. Archives are unpacked into a temporary folder first
//! and moved into place only when whole, so an interrupted fetch leaves nothing half-made.
//! `BYOL_DATA_MIRROR=URL` replaces the official base address (a mirror, or a local test server).

use super::files::io_error;
use crate::error::{Error, Result};
use md5::{Digest, Md5};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that replaces the official base URL of every dataset.
pub const MIRROR_ENV: &str = "BYOL_DATA_MIRROR";

pub const STL10_URL: &str = "http://ai.stanford.edu/~acoates/stl10";
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz";
pub const FASHION_MNIST_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com";

/// Progress is printed every this many bytes (STL-10 is 2.6 GB).
const PROGRESS_STEP: u64 = 128 << 20;

/// How long a server may send nothing, mid-body, before the download is abandoned.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a download must be: exactly `bytes` long, with no silence longer than `idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub bytes: u64,
    pub idle: Duration,
}

impl Limits {
    /// A file of exactly `bytes`, with the default idle timeout.
    pub fn exact(bytes: u64) -> Limits {
        Limits {
            bytes,
            idle: IDLE_TIMEOUT,
        }
    }
}

/// What to do with a downloaded file once its checksum matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpack {
    /// A `.tar.gz` archive: unpack it into the folder, then delete it.
    TarGz,
    /// Keep the file as it is (Fashion-MNIST's `.gz` files, which the IDX reader reads).
    Keep,
}

/// One file to download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub url: String,
    pub md5: &'static str,
    /// The published file's exact size: a longer body is cut off and refused.
    pub bytes: u64,
    pub unpack: Unpack,
}

/// Where each dataset comes from, with `base` replacing the official base URL if given, and the
/// folder (relative to the fetch folder) that the SPEC should name once fetched.
pub fn sources(name: &str, base: Option<&str>) -> Result<(Vec<Source>, &'static str)> {
    let url = |official: &str, file: &str| {
        format!("{}/{file}", base.unwrap_or(official).trim_end_matches('/'))
    };
    let fashion = |file: &str, md5, bytes| Source {
        url: url(FASHION_MNIST_URL, file),
        md5,
        bytes,
        unpack: Unpack::Keep,
    };
    Ok(match name {
        "stl10" => (
            vec![Source {
                url: url(STL10_URL, "stl10_binary.tar.gz"),
                md5: "91f7769df0f17e558f3565bffb0c7dfb",
                bytes: 2_640_397_119,
                unpack: Unpack::TarGz,
            }],
            "stl10_binary",
        ),
        "cifar10" => (
            vec![Source {
                url: url(CIFAR10_URL, "cifar-10-binary.tar.gz"),
                md5: "c32a1d4ab5d03f1284b67883e8d87530",
                bytes: 170_052_171,
                unpack: Unpack::TarGz,
            }],
            "cifar-10-batches-bin",
        ),
        "fashion-mnist" => (
            vec![
                fashion(
                    "train-images-idx3-ubyte.gz",
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    26_421_880,
                ),
                fashion(
                    "train-labels-idx1-ubyte.gz",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    29_515,
                ),
                fashion(
                    "t10k-images-idx3-ubyte.gz",
                    "bef4ecab320f06d8554ea6380940ec79",
                    4_422_102,
                ),
                fashion(
                    "t10k-labels-idx1-ubyte.gz",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                    5_148,
                ),
            ],
            "fashion-mnist",
        ),
        _ => {
            return Err(Error::Invalid(format!(
                "unknown dataset {name:?} to fetch; choose stl10, cifar10 or fashion-mnist"
            )))
        }
    })
}

/// Downloads, checks and unpacks dataset `name` under `dir`; returns the folder to name in the
/// dataset SPEC (e.g. `dir/stl10_binary`). A folder that is already there is not fetched again.
pub fn fetch(name: &str, dir: &Path) -> Result<PathBuf> {
    let mirror = std::env::var(MIRROR_ENV).ok().filter(|m| !m.is_empty());
    let (files, folder) = sources(name, mirror.as_deref())?;
    let target = dir.join(folder);
    if target.is_dir() {
        return Ok(target);
    }
    // Archives unpack into `dir` (their top folder is `target`); loose files are gathered in a
    // temporary folder, renamed to `target` when all are in.
    let staging = if files.iter().all(|f| f.unpack == Unpack::TarGz) {
        dir.to_path_buf()
    } else {
        dir.join(format!("{folder}.partial"))
    };
    for source in &files {
        let limits = Limits::exact(source.bytes);
        if let Err(e) = fetch_from(&source.url, source.md5, limits, source.unpack, &staging) {
            if staging != dir {
                let _ = std::fs::remove_dir_all(&staging);
            }
            return Err(e);
        }
    }
    if staging != dir {
        std::fs::rename(&staging, &target).map_err(|e| io_error(&target, "cannot create", e))?;
    }
    if !target.is_dir() {
        return Err(Error::Invalid(format!(
            "the {name} archive did not contain {}",
            target.display()
        )));
    }
    Ok(target)
}

/// Downloads `url` into `dir`, checks its size against `limits` and its MD5 against `md5`
/// (lowercase hex) and unpacks it as `unpack` says. Returns the kept file (`Keep`) or `dir`
/// (`TarGz`). On any error nothing new is left in `dir` (besides `dir` itself).
pub fn fetch_from(
    url: &str,
    md5: &str,
    limits: Limits,
    unpack: Unpack,
    dir: &Path,
) -> Result<PathBuf> {
    let file_name = url
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::Invalid(format!("no file name at the end of {url:?}")))?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "cannot create", e))?;
    let dest = dir.join(file_name);
    let part = dir.join(format!("{file_name}.part"));
    let result = download_checked(url, md5, limits, &part);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, &dest).map_err(|e| io_error(&dest, "cannot rename the download", e))?;
    match unpack {
        Unpack::Keep => Ok(dest),
        Unpack::TarGz => {
            let unpacked = unpack_tar_gz(&dest, dir);
            let _ = std::fs::remove_file(&dest);
            unpacked.map(|()| dir.to_path_buf())
        }
    }
}

/// Streams `url` into `part` while hashing it; a body longer or shorter than `limits.bytes`, a
/// silence longer than `limits.idle` or an MD5 that differs from `md5` is an error.
fn download_checked(url: &str, md5: &str, limits: Limits, part: &Path) -> Result<()> {
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)));
    if is_loopback(url) {
        // A local mirror (or test server) is reached directly, whatever HTTP_PROXY says.
        config = config.proxy(None);
    }
    let agent: ureq::Agent = config.build().into();
    eprintln!("downloading {url}");
    let response = agent
        .get(url)
        .call()
        .map_err(|e| Error::Io(format!("{url}: download failed: {e}")))?;
    let expected = limits.bytes;
    let announced: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if let Some(n) = announced.filter(|&n| n != expected) {
        return Err(Error::Invalid(format!(
            "{url}: the server announces {n} bytes, but the published file has {expected}: \
             not the expected file (nothing was kept)"
        )));
    }
    let chunks = read_in_background(response.into_body().into_reader());
    let mut received = 0u64;
    let mut next_report = PROGRESS_STEP;
    let mut file = File::create(part).map_err(|e| io_error(part, "cannot create", e))?;
    let mut hasher = Md5::new();
    loop {
        let chunk = match chunks.recv_timeout(limits.idle) {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => return Err(Error::Io(format!("{url}: download interrupted: {e}"))),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                return Err(Error::Io(format!(
                    "{url}: the server sent nothing for {} s after {received} of {expected} \
                     bytes; giving up (nothing was kept)",
                    limits.idle.as_secs_f64()
                )))
            }
            // The reader ended without saying so: treat it as the end of the body.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Vec::new(),
        };
        if chunk.is_empty() {
            break;
        }
        received += chunk.len() as u64;
        if received > expected {
            return Err(Error::Invalid(format!(
                "{url}: the server sent more than the published {expected} bytes; stopped \
                 (nothing was kept)"
            )));
        }
        hasher.update(&chunk);
        if received >= next_report {
            next_report += PROGRESS_STEP;
            eprintln!("  {} of {} MB", received >> 20, expected >> 20);
        }
        file.write_all(&chunk)
            .map_err(|e| io_error(part, "cannot write", e))?;
    }
    if received != expected {
        return Err(Error::Io(format!(
            "{url}: the download ended after {received} of {expected} bytes (nothing was kept)"
        )));
    }
    file.sync_all()
        .map_err(|e| io_error(part, "cannot write", e))?;
    let actual: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !actual.eq_ignore_ascii_case(md5) {
        return Err(Error::Invalid(format!(
            "{url}: MD5 mismatch: expected {md5}, got {actual}; the download was deleted"
        )));
    }
    Ok(())
}

/// Reads `body` on a thread of its own and hands its chunks over a channel (an empty chunk at the
/// end), so that the caller can wait with a timeout: a blocking read cannot be interrupted, but
/// a thread stuck in one is simply left to end with its connection.
fn read_in_background(
    mut body: impl Read + Send + 'static,
) -> std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    std::thread::spawn(move || loop {
        let mut buf = vec![0u8; 1 << 16];
        let message = body.read(&mut buf).map(|n| {
            buf.truncate(n);
            buf
        });
        let last = !matches!(&message, Ok(chunk) if !chunk.is_empty());
        if tx.send(message).is_err() || last {
            return;
        }
    });
    rx
}

fn is_loopback(url: &str) -> bool {
    let host = url.split("://").nth(1).unwrap_or(url);
    ["127.", "localhost", "[::1]"]
        .iter()
        .any(|p| host.starts_with(p))
}

/// Unpacks `archive` into a temporary folder inside `dir`, then moves its top-level entries into
/// `dir`; an entry that already exists there is an error (nothing is overwritten).
fn unpack_tar_gz(archive: &Path, dir: &Path) -> Result<()> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = dir.join(format!(".{name}.unpacking"));
    let _ = std::fs::remove_dir_all(&staging);
    let result = (|| {
        let file = File::open(archive).map_err(|e| io_error(archive, "cannot open", e))?;
        // `unpack` refuses entries that would land outside `staging` (absolute or `..` paths).
        tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
            .unpack(&staging)
            .map_err(|e| io_error(archive, "cannot unpack", e))?;
        let entries = std::fs::read_dir(&staging)
            .map_err(|e| io_error(&staging, "cannot list", e))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| io_error(&staging, "cannot list", e))?;
        for entry in &entries {
            let to = dir.join(entry.file_name());
            if to.exists() {
                return Err(Error::Invalid(format!(
                    "{}: already exists; remove it to unpack {name} again",
                    to.display()
                )));
            }
        }
        for entry in entries {
            let to = dir.join(entry.file_name());
            std::fs::rename(entry.path(), &to).map_err(|e| io_error(&to, "cannot move", e))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}
