//! The PyO3 bindings: the only file that knows about Python. Every entry point releases the GIL
//! around Rust work, catches panics, and converts `ClipError` to a Python exception in one place
//! (`to_py_err`).
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use numpy::ndarray::{ArrayViewD, IxDyn};
use numpy::{
    Element, PyArray, PyArray1, PyReadonlyArrayDyn, PyReadwriteArrayDyn, PyUntypedArrayMethods,
};

use pyo3::create_exception;
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyMemoryError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use crate::buffers::{self, Recyclable};
use crate::cache;
use crate::clips::{self, ClipRequest, DType, Data, Flip, Spec};
use crate::conv;
use crate::error::{panic_message, ClipError};
use crate::threads::{self, MAX_DECODER_THREADS, MAX_THREADS};
use crate::transform::{Channels, Layout, Resize, MAX_SIDE};
use crate::video::VideoIndex;

create_exception!(
    c3d_distill._native,
    VideoDecodeError,
    PyRuntimeError,
    "A video file exists but cannot be decoded; the message names the file and the cause."
);

fn to_py_err(err: ClipError) -> PyErr {
    match &err {
        ClipError::NotFound { path } => PyFileNotFoundError::new_err((
            2,
            "No such file or directory",
            path.display().to_string(),
        )),
        ClipError::Decode { .. } => VideoDecodeError::new_err(err.to_string()),
        ClipError::InvalidArgument { .. } => PyValueError::new_err(err.to_string()),
        ClipError::OutOfMemory { .. } => PyMemoryError::new_err(err.to_string()),
        ClipError::Interrupted => PyKeyboardInterrupt::new_err("interrupted while reading clips"),
    }
}

/// Run `f` without the GIL; a panic inside becomes a `VideoDecodeError` that names `what`, never an
/// abort or a `PanicException` escaping as a BaseException.
fn guarded<T: Send>(
    py: Python<'_>,
    what: &str,
    f: impl FnOnce() -> Result<T, ClipError> + Send,
) -> PyResult<T> {
    let result = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    match result {
        Ok(r) => r.map_err(to_py_err),
        Err(panic) => {
            let msg = panic_message(panic);
            Err(VideoDecodeError::new_err(format!(
                "{what}: internal error (Rust panic: {msg})"
            )))
        }
    }
}

fn index_dict<'py>(py: Python<'py>, index: &VideoIndex) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("path", index.path.display().to_string())?;
    d.set_item("width", index.width)?;
    d.set_item("height", index.height)?;
    d.set_item("fps", index.fps)?;
    d.set_item("num_frames", index.num_frames)?;
    d.set_item("duration", index.duration)?;
    d.set_item("codec", &index.codec)?;
    d.set_item("keyframes", &index.keyframes)?;
    d.set_item("stream", index.video_stream)?;
    Ok(d)
}

/// `stream` as Python gives it: `None`, or a video stream's position among the file's video streams.
/// Taken as any object so that a wrong type or a huge number is a ValueError naming `stream` (not a
/// TypeError or OverflowError from the conversion).
fn stream_arg(stream: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    let Some(s) = stream.filter(|s| !s.is_none()) else {
        return Ok(None);
    };
    let shown = s
        .repr()
        .map_or_else(|_| "?".to_string(), |r| r.to_string_lossy().into_owned());
    let n = if s.is_instance_of::<PyBool>() {
        None
    } else {
        s.extract::<i64>().ok()
    };
    match n {
        Some(n) if n >= 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        _ => Err(PyValueError::new_err(format!(
            "stream: expected None or a video stream's position (0 for the first), got {shown:.100}"
        ))),
    }
}

/// How an index is built when it is not cached: `cache::index` or `cache::exact_index`.
type Build = fn(&Path, Option<usize>, usize, &AtomicBool) -> Result<Arc<VideoIndex>, ClipError>;

/// The index of video stream `stream` of `path`, for `probe`, `probe_exact` and `frame_times`. A
/// video indexed by decoding gets `threads` decoder threads, by default the cores this process may
/// use, 1 to `MAX_DECODER_THREADS` either way: one video is indexed at a time here, so its decoder
/// may use every core (a `read_clips` call shares them out).
fn index_with(
    py: Python<'_>,
    path: &Path,
    stream: Option<&Bound<'_, PyAny>>,
    threads: Option<i64>,
    build: Build,
) -> PyResult<Arc<VideoIndex>> {
    let stream = stream_arg(stream)?;
    let n = match threads {
        None => threads::default_threads(),
        Some(t) if t >= 1 => usize::try_from(t).unwrap_or(usize::MAX),
        Some(t) => {
            return Err(PyValueError::new_err(format!(
                "threads: {t} is not a positive number of threads"
            )))
        }
    }
    .min(MAX_DECODER_THREADS);
    interruptible(py, &path.display().to_string(), |cancel| {
        build(path, stream, n, cancel)
    })
}

/// probe(path, *, threads=None, stream=None) -> dict with width, height, fps, num_frames, duration,
/// codec, keyframes, stream. Cached per process (path, stream, mtime, size); read from the packets
/// when they can be trusted, else by decoding with `threads` decoder threads.
#[pyfunction]
#[pyo3(signature = (path, *, threads=None, stream=None))]
fn probe<'py>(
    py: Python<'py>,
    path: PathBuf,
    threads: Option<i64>,
    stream: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let index = index_with(py, &path, stream.as_ref(), threads, cache::index)?;
    index_dict(py, &index)
}

/// probe_exact(path, *, threads=None, stream=None) -> the same dict, from an index built by
/// decoding every frame.
#[pyfunction]
#[pyo3(signature = (path, *, threads=None, stream=None))]
fn probe_exact<'py>(
    py: Python<'py>,
    path: PathBuf,
    threads: Option<i64>,
    stream: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let index = index_with(py, &path, stream.as_ref(), threads, cache::exact_index)?;
    index_dict(py, &index)
}

/// frame_times(path, *, threads=None, stream=None) -> float64 array: each frame's presentation
/// time in seconds from the stream's start, in frame order, from the same cached index as `probe`.
#[pyfunction]
#[pyo3(signature = (path, *, threads=None, stream=None))]
fn frame_times<'py>(
    py: Python<'py>,
    path: PathBuf,
    threads: Option<i64>,
    stream: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let index = index_with(py, &path, stream.as_ref(), threads, cache::index)?;
    Ok(PyArray1::from_vec(py, index.times()))
}

/// Forget every cached video index and free the recycled batch buffers.
#[pyfunction]
fn clear_cache() {
    cache::clear();
    buffers::clear();
}

/// Test hook (tests/clips/test_fork.py): hold the locks of the index cache, of the decoding and
/// conv thread pool lists and of the kept batch buffers on a background thread for `seconds`;
/// returns once they are held, so that a `fork` right after it happens while a thread of the parent
/// holds them.
#[pyfunction]
#[pyo3(name = "_hold_locks_for_test")]
fn hold_locks_for_test(py: Python<'_>, seconds: f64) -> PyResult<()> {
    let hold = Duration::from_secs_f64(if seconds > 0.0 {
        seconds.min(3600.0)
    } else {
        0.0
    });
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("c3d-hold-locks".into())
        .spawn(move || {
            let mut held = vec![
                cache::hold_lock(),
                threads::DECODE_THREAD_POOLS.hold_lock(),
                conv::CONV_THREAD_POOLS.hold_lock(),
            ];
            held.extend(buffers::hold_lock());
            let _ = tx.send(());
            std::thread::sleep(hold);
            drop(held);
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
    py.detach(move || rx.recv())
        .map_err(|_| PyRuntimeError::new_err("the lock holder ended early"))
}

/// Number of cached video indexes.
#[pyfunction]
fn cache_len() -> usize {
    cache::len()
}

/// How often the waiting thread wakes to let Python handle signals (Ctrl-C) during a long read.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Run `work` on a thread of its own while this one waits without the GIL, waking every
/// SIGNAL_POLL to run Python's signal handlers. When a handler raises (Ctrl-C: KeyboardInterrupt),
/// `cancel` is set, the work stops at its next packet (decoding and indexing check it), and the
/// handler's exception is raised once the work has ended. The wait goes on running the handlers
/// meanwhile (a later handler's exception replaces the first). A panic in `work` becomes a
/// `VideoDecodeError` naming `what`.
fn interruptible<T: Send>(
    py: Python<'_>,
    what: &str,
    work: impl FnOnce(&AtomicBool) -> Result<T, ClipError> + Send,
) -> PyResult<T> {
    type Outcome<T> = std::thread::Result<Result<T, ClipError>>;
    let cancel = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Outcome<T>>();
    let rx = std::sync::Mutex::new(rx); // shared with the detached closures (a Receiver is not Sync)
    let outcome: PyResult<Outcome<T>> = std::thread::scope(|scope| {
        let cancel = &cancel;
        std::thread::Builder::new()
            .name("c3d-clips-call".into())
            .spawn_scoped(scope, move || {
                let _ = tx.send(catch_unwind(AssertUnwindSafe(|| work(cancel))));
            })
            .map_err(|e| {
                PyRuntimeError::new_err(format!("{what}: cannot start a worker thread: {e}"))
            })?;
        let mut raised: Option<PyErr> = None;
        loop {
            match py.detach(|| {
                rx.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .recv_timeout(SIGNAL_POLL)
            }) {
                Ok(r) => return raised.map_or(Ok(r), Err),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        cancel.store(true, Ordering::Relaxed);
                        raised = Some(e);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return raised.map_or(
                        Ok(Err(Box::new("worker thread ended without a result")
                            as Box<dyn std::any::Any + Send>)),
                        Err,
                    )
                }
            }
        }
    });
    match outcome? {
        Ok(r) => r.map_err(to_py_err),
        Err(panic) => {
            let msg = panic_message(panic);
            Err(VideoDecodeError::new_err(format!(
                "{what}: internal error (Rust panic: {msg})"
            )))
        }
    }
}

/// The Rust side of `read_clips` (arguments already normalised by `clips/reader.py`).
/// Returns `(array, ok_positions, failed)` with `failed = [(position, path, kind, message)]`.
#[pyfunction]
#[pyo3(signature = (clips, *, size, short_side, crop, random_crop, flip, seed, layout, dtype, mean, std, threads, skip, stream=None, channels="RGB"))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn read_clips<'py>(
    py: Python<'py>,
    clips: Vec<(PathBuf, Vec<i64>)>,
    size: Option<(u64, u64)>,
    short_side: Option<u64>,
    crop: Option<(u64, u64)>,
    random_crop: bool,
    flip: u8,
    seed: u64,
    layout: &str,
    dtype: &str,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    threads: Option<usize>,
    skip: bool,
    stream: Option<Bound<'py, PyAny>>,
    channels: &str,
) -> PyResult<(
    Bound<'py, PyAny>,
    Vec<usize>,
    Vec<(usize, String, String, String)>,
)> {
    // Taken as u64 so that a side beyond u32 is a ValueError naming the argument, not an
    // OverflowError from the conversion (clips/reader.py checks first; this is the second line).
    let side = |v: u64, arg: &str| -> PyResult<u32> {
        u32::try_from(v)
            .ok()
            .filter(|&v| v <= MAX_SIDE)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "{arg}: {v}: a frame side may be at most {MAX_SIDE}"
                ))
            })
    };
    let pair = |p: Option<(u64, u64)>, arg: &str| -> PyResult<Option<(u32, u32)>> {
        p.map(|(h, w)| Ok((side(h, arg)?, side(w, arg)?)))
            .transpose()
    };
    let size = pair(size, "size")?;
    let crop = pair(crop, "crop")?;
    let short_side = short_side.map(|s| side(s, "size")).transpose()?;
    let resize = match (size, short_side) {
        (Some((h, w)), None) => Resize::Fixed(h, w),
        (None, Some(s)) => Resize::ShortSide(s),
        (None, None) => Resize::Keep,
        _ => {
            return Err(PyValueError::new_err(
                "size: give (h, w) or a short side, not both",
            ))
        }
    };
    let spec = Spec {
        resize,
        crop,
        random_crop,
        flip: match flip {
            0 => Flip::Never,
            1 => Flip::Always,
            2 => Flip::Random,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "flip: {flip} is not 0, 1 or 2"
                )))
            }
        },
        seed,
        layout: Layout::parse(layout).map_err(to_py_err)?,
        channels: Channels::parse(channels).map_err(to_py_err)?,
        dtype: match dtype {
            "uint8" => DType::U8,
            "float32" => DType::F32,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "dtype: {dtype:?} is not 'uint8' or 'float32'"
                )))
            }
        },
        mean: mean.unwrap_or([0.0; 3]),
        std: std.unwrap_or([1.0; 3]),
        stream: stream_arg(stream.as_ref())?,
    };
    // The default is the cores, within MAX_THREADS even on a machine with more.
    let threads = threads.unwrap_or_else(|| threads::default_threads().min(MAX_THREADS));
    let requests: Vec<ClipRequest> = clips
        .into_iter()
        .map(|(path, frames)| ClipRequest { path, frames })
        .collect();

    // Ctrl-C stops the decoders at their next packet and raises KeyboardInterrupt here promptly.
    let batch = interruptible(py, "read_clips", |cancel| {
        clips::read_clips(&requests, &spec, threads, skip, cancel)
    })?;
    let array = match batch.data {
        Data::U8(v) => recycled_array(py, v, &batch.shape),
        Data::F32(v) => recycled_array(py, v, &batch.shape),
    }?;
    let failed = batch
        .failed
        .iter()
        .map(|(pos, e)| {
            let kind = match e {
                ClipError::NotFound { .. } => "FileNotFoundError",
                ClipError::Decode { .. } => "VideoDecodeError",
                ClipError::InvalidArgument { .. } => "ValueError",
                ClipError::OutOfMemory { .. } => "MemoryError",
                ClipError::Interrupted => "KeyboardInterrupt",
            };
            (
                *pos,
                requests[*pos].path.display().to_string(),
                kind.to_string(),
                e.to_string(),
            )
        })
        .collect();
    Ok((array, batch.ok, failed))
}

/// The memory of a batch array: numpy's base object for it. When the array (and every view or
/// torch tensor of it) is gone, the buffer goes back to `buffers` for a later batch.
#[pyclass(module = "c3d_distill._native", frozen)]
struct BatchBuffer {
    buf: Option<buffers::Buf>,
}

impl Drop for BatchBuffer {
    fn drop(&mut self) {
        match self.buf.take() {
            Some(buffers::Buf::U8(v)) => buffers::give(v),
            Some(buffers::Buf::F32(v)) => buffers::give(v),
            None => {}
        }
    }
}

/// `v` as a numpy array of `shape` without a copy, owned by a `BatchBuffer`.
fn recycled_array<'py, T: Recyclable + Element>(
    py: Python<'py>,
    v: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let internal =
        |e: String| VideoDecodeError::new_err(format!("read_clips: internal error ({e})"));
    let n: usize = shape.iter().product();
    if n != v.len() {
        return Err(internal(format!("shape {shape:?} for {} values", v.len())));
    }
    let ptr = v.as_ptr();
    let owner = Bound::new(
        py,
        BatchBuffer {
            buf: Some(T::wrap(v)),
        },
    )?;
    // SAFETY: `ptr` points at `n` initialised values owned by `owner`'s Vec, which is neither
    // moved, resized nor freed until `owner` is dropped; the array keeps `owner` alive as its base.
    let view = unsafe { ArrayViewD::from_shape_ptr(IxDyn(shape), ptr) };
    Ok(unsafe { PyArray::borrow_from_array(&view, owner.into_any()) }.into_any())
}

/// Process-wide counters: frames decoded, seeks, and passes retried after disagreeing with the
/// index (`mismatches`; each retry is slower, never wrong); bytes held by recycled batch buffers and
/// by cached video indexes.
#[pyfunction]
fn stats<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    use crate::decode::{FRAMES_DECODED, MISMATCHES, SEEKS};
    let d = PyDict::new(py);
    d.set_item("frames_decoded", FRAMES_DECODED.load(Ordering::Relaxed))?;
    d.set_item("seeks", SEEKS.load(Ordering::Relaxed))?;
    d.set_item("mismatches", MISMATCHES.load(Ordering::Relaxed))?;
    // Bytes of the batch buffers kept for reuse (`buffers`).
    d.set_item("pooled_bytes", buffers::kept_bytes())?;
    d.set_item("index_bytes", cache::bytes())?;
    Ok(d)
}

/// Threads `read_clips` uses by default: the cores this process may run on.
#[pyfunction]
fn default_threads() -> usize {
    threads::default_threads()
}

/// `conv.rs`'s fused temporal conv + bias + ReLU + max-pool on float32 numpy views of torch tensors:
/// `x` (N, T, H, W, C), `weight` (Cout, C, 3, 1, 1), `bias` (Cout), `out` (N, T/pt, H/2, W/2, Cout),
/// all C-contiguous; `out` is filled in place. Named `kernel_` in Python so that it reads as a
/// compute kernel next to the clip functions.
#[pyfunction]
#[pyo3(signature = (x, weight, bias, out, *, pt, threads))]
fn kernel_temporal_conv_pool(
    py: Python<'_>,
    x: PyReadonlyArrayDyn<'_, f32>,
    weight: PyReadonlyArrayDyn<'_, f32>,
    bias: PyReadonlyArrayDyn<'_, f32>,
    mut out: PyReadwriteArrayDyn<'_, f32>,
    pt: usize,
    threads: usize,
) -> PyResult<()> {
    let what = "kernel_temporal_conv_pool";
    let contiguous = |ok: bool, name: &str| {
        if ok {
            Ok(())
        } else {
            Err(PyValueError::new_err(format!(
                "{what}: {name} must be C-contiguous"
            )))
        }
    };
    contiguous(x.is_c_contiguous(), "x")?;
    contiguous(weight.is_c_contiguous(), "weight")?;
    contiguous(bias.is_c_contiguous(), "bias")?;
    contiguous(out.is_c_contiguous(), "out")?;
    let d = x.shape().to_vec();
    let (wd, od) = (weight.shape().to_vec(), out.shape().to_vec());
    if d.len() != 5 || od.len() != 5 {
        return Err(PyValueError::new_err(format!(
            "{what}: x and out must be 5-D (N, T, H, W, C), got {d:?} and {od:?}"
        )));
    }
    if wd.len() != 5 || wd[1] != d[4] || wd[2..] != [3, 1, 1] {
        return Err(PyValueError::new_err(format!(
            "{what}: weight must be (Cout, {}, 3, 1, 1), got {wd:?}",
            d[4]
        )));
    }
    // Checked here, before `out_dims` divides by it (outside the panic guard).
    if pt != 1 && pt != 2 {
        return Err(PyValueError::new_err(format!(
            "{what}: pt: temporal pool {pt} is not 1 or 2"
        )));
    }
    let shape = conv::Shape {
        n: d[0],
        t: d[1],
        h: d[2],
        w: d[3],
        c: d[4],
        cout: wd[0],
        pt,
    };
    let (to, ho, wo) = shape.out_dims();
    if od != [shape.n, to, ho, wo, shape.cout] {
        return Err(PyValueError::new_err(format!(
            "{what}: out has shape {od:?}, expected {:?}",
            [shape.n, to, ho, wo, shape.cout]
        )));
    }
    let (xs, ws, bs) = (x.as_slice()?, weight.as_slice()?, bias.as_slice()?);
    let os = out.as_slice_mut()?;
    let threads = threads.clamp(1, MAX_THREADS);
    guarded(py, what, || {
        conv::temporal_conv_pool(xs, shape, ws, bs, os, threads)
    })
}

/// Whether `kernel_temporal_conv_pool` can run on this CPU (AVX-512F) with `c` input channels.
#[pyfunction]
fn kernel_temporal_conv_pool_supported(c: usize) -> bool {
    conv::available() && conv::supported_channels(c)
}

#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("VideoDecodeError", m.py().get_type::<VideoDecodeError>())?;
    m.add_function(wrap_pyfunction!(probe, m)?)?;
    m.add_function(wrap_pyfunction!(probe_exact, m)?)?;
    m.add_function(wrap_pyfunction!(frame_times, m)?)?;
    m.add_function(wrap_pyfunction!(read_clips, m)?)?;
    m.add_function(wrap_pyfunction!(clear_cache, m)?)?;
    m.add_function(wrap_pyfunction!(cache_len, m)?)?;
    m.add_function(wrap_pyfunction!(hold_locks_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_temporal_conv_pool, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_temporal_conv_pool_supported, m)?)?;
    m.add_class::<BatchBuffer>()?;
    // The single source of the version and the limits: Python reads them here instead of keeping
    // copies that could drift.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_SIDE", MAX_SIDE)?;
    m.add("MAX_THREADS", MAX_THREADS)?;
    m.add("MAX_DECODER_THREADS", MAX_DECODER_THREADS)?;
    Ok(())
}
