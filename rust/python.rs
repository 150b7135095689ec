//! The PyO3 bindings: the only file that knows about Python. Every entry point releases the GIL
//! around Rust work, catches panics, and converts `ClipError` to a Python exception in one place
//! (`to_py_err`).
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::ClipError;
use crate::video;

create_exception!(
    _clips,
    VideoDecodeError,
    PyRuntimeError,
    "A video file exists but cannot be decoded; the message names the file and the cause."
);

fn to_py_err(err: ClipError) -> PyErr {
    match &err {
        ClipError::NotFound { path } => {
            PyFileNotFoundError::new_err((2, "No such file or directory", path.display().to_string()))
        }
        ClipError::Decode { .. } => VideoDecodeError::new_err(err.to_string()),
        ClipError::InvalidArgument { .. } => PyValueError::new_err(err.to_string()),
        ClipError::Interrupted => PyKeyboardInterrupt::new_err("interrupted while reading clips"),
    }
}

/// Run `f` without the GIL; a panic inside becomes a `VideoDecodeError` that names `what`, never an
/// abort or a `PanicException` escaping as a BaseException.
fn guarded<T: Send>(py: Python<'_>, what: &str, f: impl FnOnce() -> Result<T, ClipError> + Send) -> PyResult<T> {
    let result = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    match result {
        Ok(r) => r.map_err(to_py_err),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(VideoDecodeError::new_err(format!("{what}: internal error (Rust panic: {msg})")))
        }
    }
}

/// probe(path) -> dict with width, height, fps, num_frames, duration, codec, keyframes.
#[pyfunction]
fn probe<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let what = path.display().to_string();
    let index = guarded(py, &what, || video::probe(&path))?;
    let d = PyDict::new(py);
    d.set_item("path", index.path.display().to_string())?;
    d.set_item("width", index.width)?;
    d.set_item("height", index.height)?;
    d.set_item("fps", index.fps)?;
    d.set_item("num_frames", index.num_frames)?;
    d.set_item("duration", index.duration)?;
    d.set_item("codec", index.codec)?;
    d.set_item("keyframes", index.keyframes)?;
    Ok(d)
}

#[pymodule]
#[pyo3(name = "_clips")]
fn clips_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("VideoDecodeError", m.py().get_type::<VideoDecodeError>())?;
    m.add_function(wrap_pyfunction!(probe, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
