"""Type stubs for the native module (rust/python.rs), checked against the compiled module by
tests/package/test_stubs.py (every name here exists there and vice versa, with the same parameters).

User code calls the wrappers in ``c3d_distill.clips`` (reader.py), which validate the arguments."""

import os
from typing import Any

import numpy as np

__version__: str
"""The crate's version (Cargo.toml), which is also the package's."""

MAX_SIDE: int
"""The largest frame side ``size`` and ``crop`` accept."""
MAX_THREADS: int
"""The most ``threads`` a call may ask for."""
MAX_DECODER_THREADS: int
"""FFmpeg decoder threads per video at most (``probe``'s ``threads`` is capped at it)."""

class VideoDecodeError(RuntimeError):
    """A video file exists but cannot be decoded; the message names the file and the cause."""

def probe(
    path: str | os.PathLike[str], *, threads: int | None = None, stream: int | None = None
) -> dict[str, Any]:
    """Index video stream ``stream`` of a file (cached per process by path, stream, modification time
    and size). ``stream`` is the position among the file's video streams (0 the first, as
    ``-map 0:v:0``); ``None`` is the one FFmpeg rates best.

    Returns ``width``, ``height``, ``fps``, ``num_frames`` (frames that decode), ``duration``
    (seconds), ``codec`` (FFmpeg's short name), ``keyframes`` (frame indices), ``stream`` (the
    position of the stream read among the video streams) and ``path``. The index
    is read from the packets when the codec and container make them one frame each (checked against
    every frame later decoded), else by decoding every frame once with ``threads`` decoder threads
    (default: the cores available; 1 to ``MAX_DECODER_THREADS``).
    Raises FileNotFoundError for a missing path, VideoDecodeError for anything unreadable and
    ValueError (naming ``stream`` and the file) for a ``stream`` the file does not have.
    """

def probe_exact(
    path: str | os.PathLike[str], *, threads: int | None = None, stream: int | None = None
) -> dict[str, Any]:
    """Like ``probe``, from an index built by decoding every frame once."""

def frame_times(
    path: str | os.PathLike[str], *, threads: int | None = None, stream: int | None = None
) -> np.ndarray:
    """Each frame's presentation time in seconds from the stream's start, in frame order, as a
    float64 array (``VideoReader.pts``), from the same cached index as ``probe`` (same arguments,
    same errors)."""

def read_clips(
    clips: list[tuple[str, list[int]]],
    *,
    size: tuple[int, int] | None,
    short_side: int | None,
    crop: tuple[int, int] | None,
    random_crop: bool,
    flip: int,
    seed: int,
    layout: str,
    dtype: str,
    mean: list[float] | None,
    std: list[float] | None,
    threads: int | None,
    skip: bool,
    stream: int | None = None,
    channels: str = "RGB",
) -> tuple[np.ndarray, list[int], list[tuple[int, str, str, str]]]:
    """Read clips into one batch (see ``c3d_distill.clips.read_clips``).

    ``flip``: 0 never, 1 always, 2 random. ``stream`` as for ``probe``, for every clip.
    ``channels``: ``"RGB"`` or ``"BGR"``, the order of the channel axis, which ``mean`` and ``std``
    follow. Returns ``(array, ok_positions, failed)`` with ``failed = [(position, path, exception
    class name, message)]`` (empty unless ``skip``).
    Raises ``MemoryError`` (naming the shape and bytes) when the batch or a frame buffer cannot be
    allocated, and ``ValueError`` for a side of ``size``/``crop`` above ``MAX_SIDE`` (or ``size``
    beyond FFmpeg's image limit) or ``threads`` above ``MAX_THREADS``.
    """

def clear_cache() -> None:
    """Forget every cached video index and free the recycled batch buffers."""

def cache_len() -> int:
    """Number of cached video indexes."""

def default_threads() -> int:
    """The cores this process may run on (``read_clips`` uses at most ``MAX_THREADS`` of them by
    default)."""

def stats() -> dict[str, int]:
    """Process-wide counters: ``frames_decoded``, ``seeks``, ``mismatches`` (passes that disagreed
    with the index and were retried more carefully: slower, never wrong), ``pooled_bytes`` (batch
    buffers kept for reuse: at most 6 buffers and 512 MiB) and ``index_bytes`` (cached video indexes:
    8 bytes per frame and 8 per keyframe, plus ~300 per video; at most 256 MiB, oldest dropped
    first)."""

def kernel_temporal_conv_pool(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
    *,
    pt: int,
    threads: int,
) -> None:
    """max_pool3d(ReLU(conv3d(x, weight, bias, padding (1,0,0))), (pt, 2, 2)) on float32, C-contiguous
    arrays: ``x`` (N, T, H, W, C), ``weight`` (Cout, C, 3, 1, 1), ``bias`` (Cout), ``out``
    (N, T//pt, H//2, W//2, Cout), filled in place (rust/conv.rs; AVX-512F, C in 32/64/128, Cout a
    multiple of 32, pt 1 or 2). User code gets it through the models' fast path
    (``c3d_distill.models.fast``)."""

def kernel_temporal_conv_pool_supported(c: int) -> bool:
    """Whether ``kernel_temporal_conv_pool`` runs on this CPU with ``c`` input channels."""

class BatchBuffer:
    """The memory behind a ``read_clips`` array (its ``.base``). When the array and every view or
    tensor of it are gone, the buffer is recycled for a later batch instead of freed."""
