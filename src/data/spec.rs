//! Dataset SPECs: one string names a dataset and where it lives, e.g. `stl10:data/stl10_binary`.

use super::{cifar10, folder, idx, stl10, synthetic, ImageSet, Split};
use crate::error::{Error, Result};
use std::path::Path;

/// Every SPEC form, for help texts and errors.
pub const SPEC_FORMS: &str = "synthetic[:N[:SIZE[:SEED]]], stl10:DIR, cifar10:DIR, \
    idx:DIR (or mnist:DIR), fashion-mnist:DIR, folder:DIR[:SIZE]";

/// The side images of an image folder are resized to unless the SPEC says otherwise.
pub const FOLDER_DEFAULT_SIDE: usize = 96;

/// Opens the dataset a SPEC names, for one split.
///
/// - `synthetic[:N[:SIZE[:SEED]]]`: the built-in shapes, N images (default 10,000; the test
///   split gets N/5) of SIZE x SIZE (default 32), seed default 0.
/// - `stl10:DIR`, `cifar10:DIR`: the binary versions, DIR being the unpacked folder or its parent.
/// - `idx:DIR`, `mnist:DIR`, `fashion-mnist:DIR`: IDX files, plain or `.gz`.
/// - `folder:DIR[:SIZE]`: one subfolder of images per class, resized to SIZE (default 96).
pub fn open(spec: &str, split: Split) -> Result<Box<dyn ImageSet>> {
    let (kind, rest) = match spec.split_once(':') {
        Some((kind, rest)) => (kind, Some(rest)),
        None => (spec, None),
    };
    let dir = || -> Result<&Path> {
        match rest {
            Some(d) if !d.is_empty() => Ok(Path::new(d)),
            _ => Err(Error::Invalid(format!(
                "dataset {spec:?} needs a folder: {kind}:DIR"
            ))),
        }
    };
    Ok(match kind.to_ascii_lowercase().as_str() {
        "synthetic" => Box::new(open_synthetic(spec, rest, split)?),
        "stl10" | "stl-10" => Box::new(stl10::open(dir()?, split)?),
        "cifar10" | "cifar-10" => Box::new(cifar10::open(dir()?, split)?),
        "idx" | "mnist" => Box::new(idx::open(dir()?, split, idx::Flavor::Digits)?),
        "fashion-mnist" | "fashion_mnist" | "fashionmnist" => {
            Box::new(idx::open(dir()?, split, idx::Flavor::Fashion)?)
        }
        "folder" => {
            dir()?;
            let path = rest.unwrap_or_default();
            // A trailing `:SIZE` sets the side; a colon followed by anything else is part of
            // the path (a Windows drive, say).
            let (path, side) = match path.rsplit_once(':') {
                Some((p, s)) if !p.is_empty() && s.parse::<usize>().is_ok() => {
                    (p, number(spec, "SIZE", s)?)
                }
                _ => (path, FOLDER_DEFAULT_SIDE),
            };
            Box::new(folder::open(Path::new(path), split, side)?)
        }
        _ => {
            return Err(Error::Invalid(format!(
                "unknown dataset {spec:?}; valid forms: {SPEC_FORMS}"
            )))
        }
    })
}

fn open_synthetic(spec: &str, rest: Option<&str>, split: Split) -> Result<synthetic::Synthetic> {
    let fields: Vec<&str> = rest.map(|r| r.split(':').collect()).unwrap_or_default();
    if fields.len() > 3 {
        return Err(Error::Invalid(format!(
            "dataset {spec:?}: expected synthetic[:N[:SIZE[:SEED]]]"
        )));
    }
    let field = |k: usize, what: &str, default: usize| match fields.get(k) {
        Some(s) => number(spec, what, s),
        None => Ok(default),
    };
    let count = field(0, "N", synthetic::DEFAULT_COUNT)?;
    let side = field(1, "SIZE", synthetic::DEFAULT_SIDE)?;
    let seed = field(2, "SEED", 0)? as u64;
    let count = match split {
        Split::Test => (count / synthetic::TEST_DIVISOR).max(1),
        Split::Pretrain | Split::Train => count,
    };
    synthetic::Synthetic::new(count, side, seed, split)
}

fn number(spec: &str, what: &str, text: &str) -> Result<usize> {
    text.parse().map_err(|_| {
        Error::Invalid(format!(
            "dataset {spec:?}: {what} must be a whole number, got {text:?}"
        ))
    })
}
