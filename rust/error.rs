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
    /// A buffer the request needs cannot be allocated (→ `MemoryError`); `what` names the buffer and
    /// its shape. `bytes` is u128 so that a size beyond the address space is still reported exactly.
    #[error("{what}: cannot allocate {bytes} bytes")]
    OutOfMemory { what: String, bytes: u128 },
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

/// The text a panic carried (a `&str` or `String` payload).
pub fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A zero-filled `Vec<T>` of `n` elements, or `ClipError::OutOfMemory` instead of aborting the
/// process when the allocator refuses (Rust's `vec![0; n]` calls `handle_alloc_error`, which aborts).
/// Zeroed by the allocator (calloc): fresh pages cost nothing until written.
pub fn try_zeroed<T: Zeroed>(n: usize, what: impl FnOnce() -> String) -> Result<Vec<T>> {
    let oom = |what: String| ClipError::OutOfMemory {
        what,
        bytes: n as u128 * std::mem::size_of::<T>() as u128,
    };
    if n == 0 || std::mem::size_of::<T>() == 0 {
        return Ok(Vec::new());
    }
    let Ok(layout) = std::alloc::Layout::array::<T>(n) else {
        return Err(oom(what()));
    };
    // SAFETY: the layout has a non-zero size (checked above).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
    if ptr.is_null() {
        return Err(oom(what()));
    }
    // SAFETY: allocated by the global allocator with exactly this layout (capacity n); all-zero
    // bytes are a valid, initialised T (the `Zeroed` contract).
    Ok(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

/// Plain element types whose all-zero bytes are a valid value (equal to `T::default()`).
///
/// # Safety
/// Implement only for types where every all-zero bit pattern is a valid, initialised value.
pub unsafe trait Zeroed: Copy + Default {}
// SAFETY: zero bytes are 0u8 and 0.0f32.
unsafe impl Zeroed for u8 {}
// SAFETY: as above.
unsafe impl Zeroed for f32 {}

pub type Result<T> = std::result::Result<T, ClipError>;
