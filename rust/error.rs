//! One error type for the whole crate; `python.rs` maps each variant to one Python exception.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// The path does not exist (→ `FileNotFoundError`).
    #[error("{path}: no such file")]
    NotFound { path: PathBuf },
    /// The file exists but cannot be read as video (→ `VideoDecodeError`).
    #[error("{path}: {cause}")]
    Decode { path: PathBuf, cause: String },
    /// A caller passed an argument outside its domain (→ `ValueError`).
    #[error("{arg}: {msg}")]
    InvalidArgument { arg: String, msg: String },
    /// The caller asked to stop (Ctrl-C seen between chunks of work) (→ `KeyboardInterrupt`).
    #[error("interrupted")]
    Interrupted,
}

impl ClipError {
    pub fn decode(path: &Path, cause: impl std::fmt::Display) -> Self {
        ClipError::Decode {
            path: path.to_path_buf(),
            cause: cause.to_string(),
        }
    }

    pub fn invalid(arg: impl Into<String>, msg: impl Into<String>) -> Self {
        ClipError::InvalidArgument {
            arg: arg.into(),
            msg: msg.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, ClipError>;
