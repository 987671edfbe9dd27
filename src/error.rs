//! One error type for the whole crate: every failure names what went wrong and, where it can, how to fix it.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// No GPU adapter could be found or opened.
    NoAdapter(String),
    /// The device refused a request (out of memory, lost device, validation error).
    Device(String),
    /// A shape is impossible for the operation asked of it.
    Shape(String),
    /// A user-supplied argument is out of range or inconsistent.
    Invalid(String),
    /// A shader failed to parse or validate.
    Shader(String),
    /// Reading or writing a file failed; the path is part of the message.
    Io(String),
    /// Training produced a NaN or infinite loss (the last good checkpoint is kept).
    Diverged(String),
    /// The user stopped a run (Ctrl-C or SIGTERM) after its state was saved.
    Interrupted(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(m) => write!(f, "no GPU adapter: {m}"),
            Error::Device(m) => write!(f, "GPU device error: {m}"),
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::Invalid(m) => write!(f, "invalid argument: {m}"),
            Error::Shader(m) => write!(f, "shader error: {m}"),
            Error::Io(m) => write!(f, "I/O error: {m}"),
            Error::Diverged(m) => write!(f, "training diverged: {m}"),
            Error::Interrupted(m) => write!(f, "interrupted: {m}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
