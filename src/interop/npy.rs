//! NumPy's `.npy` format (version 1.0), written: a magic string, a Python-literal header giving
//! dtype, order and shape, then the little-endian data. Read by `numpy.load` and every tool that
//! takes NumPy arrays.

use crate::error::{Error, Result};
use std::path::Path;

/// The header for `descr` (`<f4`, `<i8`) and `shape`, padded so the data starts 64-byte aligned.
fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    // A one-element tuple needs its trailing comma in Python.
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    let unpadded = 6 + 2 + 2 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out
}

fn check_shape(shape: &[usize], len: usize, path: &Path) -> Result<()> {
    if shape.iter().product::<usize>() != len {
        return Err(Error::Shape(format!(
            "{}: {len} values do not fill shape {shape:?}",
            path.display()
        )));
    }
    Ok(())
}

/// Writes `values` as a float32 array of `shape` (row-major), atomically.
pub fn write_f32(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    check_shape(shape, values.len(), path)?;
    let mut bytes = header("<f4", shape);
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    crate::atomic_file::write(path, &bytes)
}

/// Writes `values` as an int64 array of `shape` (NumPy's default integer), atomically.
pub fn write_i64(path: &Path, shape: &[usize], values: &[i64]) -> Result<()> {
    check_shape(shape, values.len(), path)?;
    let mut bytes = header("<i8", shape);
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    crate::atomic_file::write(path, &bytes)
}
