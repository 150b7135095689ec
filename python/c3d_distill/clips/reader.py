"""Frame-exact video reading and batched clip reading, backed by the Rust extension
(``c3d_distill._native``).

Frame ``i`` is the ``i``-th frame in presentation order, numbered as
``ffmpeg -i f -f rawvideo -pix_fmt rgb24 -`` numbers them; ``VideoReader.pts[i]`` is its time in
seconds, and ``VideoReader.index_at`` finds the frame on screen at a time. This module only checks and
normalises the arguments; decoding, resizing, cropping, channel order and stacking happen in Rust with
the GIL released.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .. import _native
from ..checks import integer
from .times import end_of, frames_at, seconds_arg

__all__ = ["VideoReader", "read_clips"]

_LAYOUTS = ("NCTHW", "NTCHW", "NTHWC")
_DTYPES = ("uint8", "float32")
_CHANNELS = ("RGB", "BGR")

# The limits are the Rust side's own (one source), checked here first so that a mistaken number is a
# ValueError naming its argument before anything is decoded or allocated.
MAX_SIDE = _native.MAX_SIDE  # FFmpeg's common codec limit; libx264 and H.264 level 6.2 stop there too
MAX_THREADS = _native.MAX_THREADS  # far beyond the cores more threads only add switching and memory
_INT64 = 1 << 63


def _side(value: Any, arg: str) -> int:
    v = integer(value, arg)
    if v > MAX_SIDE:
        raise ValueError(f"{arg}: {v}: a frame side may be at most {MAX_SIDE}")
    return v


def _hw(value: Any, arg: str) -> tuple[int, int]:
    """(h, w) from an int (square) or a pair, each side in 1..MAX_SIDE."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{arg}: expected (height, width), got {value!r}")
        return _side(value[0], arg), _side(value[1], arg)
    v = _side(value, arg)
    return v, v


def _scalable(hw: tuple[int, int], arg: str) -> tuple[int, int]:
    """A resize target within FFmpeg's image limit (av_image_check_size, which swscale applies to its
    output): beyond it a resize fails inside FFmpeg and would be blamed on the file."""
    h, w = hw
    if 8 * (w + 128) * (h + 128) >= 2**31 - 1:
        raise ValueError(f"{arg}: ({h}, {w}) is beyond the largest frame FFmpeg can scale to "
                         "(8 * (w + 128) * (h + 128) must be below 2**31 - 1)")
    return hw


def _indices(frames: Any, arg: str) -> list[int]:
    """Frame indices as Python ints (a list, tuple, range or integer numpy array), each within int64
    (the Rust side's type; no video has more frames). Out-of-range values are a ValueError naming
    ``arg`` and the index as given: never wrapped (as ``uint64 -> int64`` would) nor an OverflowError."""
    if isinstance(frames, np.ndarray):
        if frames.ndim != 1 or not (np.issubdtype(frames.dtype, np.integer) or frames.size == 0):
            raise ValueError(f"{arg}: expected a 1-D array of integers, got {frames.dtype} with shape {frames.shape}")
        out = [int(f) for f in frames.tolist()]  # Python ints: uint64 values stay as given
    elif isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise ValueError(f"{arg}: expected a sequence of frame indices, got {type(frames).__name__}")
    else:
        out = []
        for f in frames:
            if isinstance(f, bool):
                raise ValueError(f"{arg}: frame indices must be integers, got {f!r}")
            try:
                out.append(operator.index(f))
            except TypeError:
                raise ValueError(f"{arg}: frame indices must be integers, got {f!r}") from None
    for f in out:
        if not -_INT64 <= f < _INT64:
            raise ValueError(f"{arg}: frame index {f} out of range (beyond any video's frame count)")
    return out


def _triple(value: Any, arg: str) -> list[float] | None:
    if value is None:
        return None
    try:
        v = [float(x) for x in value]
    except (TypeError, ValueError):
        raise ValueError(f"{arg}: expected 3 numbers (one per channel, 0-1 scale), got {value!r}") from None
    if len(v) != 3:
        raise ValueError(f"{arg}: expected 3 numbers (one per channel, 0-1 scale), got {len(v)}")
    return v


def _channels(value: Any) -> str:
    if value not in _CHANNELS:  # a str compared, never hashed: a list is refused, not a TypeError
        raise ValueError(f"channels: {value!r:.100} is not 'RGB' or 'BGR'")
    return value


def _stream(value: Any) -> int | None:
    """A video stream's position among the file's video streams (0 the first), or None."""
    return None if value is None else integer(value, "stream", minimum=0)


def read_clips(
    clips: Sequence[tuple[str | os.PathLike, Sequence[int]]],
    *,
    size: int | tuple[int, int] | None = (128, 171),
    crop: int | tuple[int, int] | None = 112,
    crop_mode: str = "center",
    flip: bool | str = False,
    seed: int = 0,
    layout: str = "NCTHW",
    dtype: str = "uint8",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    threads: int | None = None,
    on_error: str = "raise",
    stream: int | None = None,
    channels: str = "RGB",
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Decode many clips into one array.

    ``clips`` is a list of ``(path, frame_indices)``; every clip has the same number of frames T.
    Each frame is resized (``size``: ``(h, w)``, an ``int`` short side keeping the aspect ratio, or
    ``None``), cropped (``crop``: ``int`` square, ``(h, w)`` or ``None``; ``crop_mode`` ``"center"``
    or ``"random"``) and optionally mirrored (``flip``: ``False``, ``True`` or ``"random"``). Random
    crop and flip are drawn per clip from ``(seed, position in clips)`` and shared by its frames.

    Returns an array of shape ``(N, 3, T, H, W)`` (``layout="NCTHW"``), ``(N, T, 3, H, W)``
    (``"NTCHW"``) or ``(N, T, H, W, 3)`` (``"NTHWC"``), C-contiguous; ``uint8`` or ``float32``
    (``x / 255``, then ``(x - mean[c]) / std[c]`` when given). The channel axis is R, G, B, or B, G, R
    with ``channels="BGR"`` (what OpenCV-trained models take), for every layout and dtype; ``mean``
    and ``std`` are given in that same output order (``mean[0]`` is blue's with ``"BGR"``). The order
    is made while the frames are written, at no cost. The array's memory was written by
    Rust and is shared by ``torch.from_numpy``; its ``.base`` is a ``BatchBuffer`` that recycles it for a
    later batch once the array and every view or tensor of it are gone (``_native.clear_cache()`` frees
    the kept ones). An ``NCTHW`` batch viewed as ``(N, 3 * T, H, W)`` is the
    folded input of the 2D students, without a copy.

    ``stream`` picks the video stream every clip is read from: its position among the file's video
    streams (``0`` the first, as ``ffmpeg -map 0:v:0``); ``None`` (default) is the one FFmpeg rates
    best, which the ``ffmpeg`` command reads by default. A file with fewer video streams fails with
    a ``ValueError`` naming ``stream`` and the file.

    ``size`` and ``crop`` sides are at most ``MAX_SIDE``, and a fixed ``size`` must be within
    FFmpeg's image limit (``8 * (w + 128) * (h + 128) < 2**31 - 1``).

    ``threads`` (1 to ``MAX_THREADS``; default: the cores available) decode videos in parallel;
    the clips of one video are decoded in a single forward pass. At most 4x the cores videos are
    decoded at once, and one video gets at most 16 FFmpeg decoder threads (``threads`` divided by the
    videos in the call). With ``on_error="skip"`` the result is
    ``(array, report)``: the array holds only the clips that succeeded, in order, and
    ``report = {"ok": [positions], "failed": [(position, path, message), ...]}``.

    Raises ``FileNotFoundError`` (missing file), ``VideoDecodeError`` (undecodable file, naming it
    and the cause), ``ValueError`` (a bad argument or a frame index out of range, naming it),
    ``MemoryError`` (the batch, or a frame buffer, cannot be allocated; the message gives its shape
    and bytes; the process stays alive) and ``KeyboardInterrupt`` promptly on Ctrl-C.
    """
    if isinstance(clips, (str, bytes)) or not isinstance(clips, Iterable):
        raise ValueError(f"clips: expected a list of (path, frame_indices), got {type(clips).__name__}")
    requests = []
    for i, clip in enumerate(clips):
        try:
            path, frames = clip
        except (TypeError, ValueError):
            raise ValueError(f"clips[{i}]: expected (path, frame_indices), got {clip!r:.100}") from None
        try:
            path = os.fspath(path)
        except TypeError:
            raise ValueError(f"clips[{i}]: path must be a str or os.PathLike, got {type(path).__name__}") from None
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        requests.append((path, _indices(frames, f"clips[{i}]")))
    if not requests:
        raise ValueError("clips: no clips given")

    fixed_size = short_side = None
    if size is not None:
        if isinstance(size, Sequence) and not isinstance(size, str):
            fixed_size = _scalable(_hw(size, "size"), "size")
        else:
            short_side = _side(size, "size")
    crop_hw = None if crop is None else _hw(crop, "crop")
    if crop_mode not in ("center", "random"):
        raise ValueError(f"crop_mode: {crop_mode!r} is not 'center' or 'random'")
    if flip is False:
        flip_code = 0
    elif flip is True:
        flip_code = 1
    elif flip == "random":
        flip_code = 2
    else:
        raise ValueError(f"flip: {flip!r} is not False, True or 'random'")
    if isinstance(seed, bool):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    try:
        seed = operator.index(seed) % (1 << 64)
    except TypeError:
        raise ValueError(f"seed: expected an integer, got {seed!r}") from None
    channels = _channels(channels)
    if layout not in _LAYOUTS:
        raise ValueError(f"layout: {layout!r} is not one of {', '.join(map(repr, _LAYOUTS))}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: {dtype!r} is not 'uint8' or 'float32'")
    mean_v, std_v = _triple(mean, "mean"), _triple(std, "std")
    if dtype == "uint8" and (mean_v is not None or std_v is not None):
        raise ValueError("mean/std: normalisation needs dtype='float32'")
    if std_v is not None and any(s == 0 for s in std_v):
        raise ValueError(f"std: {std_v} contains 0")
    threads_n = None if threads is None else integer(threads, "threads")
    if threads_n is not None and threads_n > MAX_THREADS:
        raise ValueError(f"threads: {threads_n} is more than {MAX_THREADS}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error: {on_error!r} is not 'raise' or 'skip'")
    stream_n = _stream(stream)

    array, ok, failed = _native.read_clips(
        requests, size=fixed_size, short_side=short_side, crop=crop_hw, random_crop=crop_mode == "random",
        flip=flip_code, seed=seed, layout=layout, dtype=dtype, mean=mean_v, std=std_v, threads=threads_n,
        skip=on_error == "skip", stream=stream_n, channels=channels,
    )
    if on_error == "raise":
        return array
    return array, {"ok": list(ok), "failed": [(pos, path, msg) for pos, path, _kind, msg in failed]}


class VideoReader:
    """Random access to the frames of one video, by frame number or by time.

    Opening reads the video's index once per process (cached by path, stream, modification time and
    size): ``num_frames``, ``fps``, ``width``, ``height``, ``duration``, ``codec`` and ``keyframes``;
    ``pts`` (each frame's time) on first use. ``stream`` picks the video stream as in
    :func:`read_clips` (``None``: FFmpeg's best); the one read is ``self.stream``, its position
    among the file's video streams.
    """

    def __init__(self, path: str | os.PathLike, *, stream: int | None = None):
        self.path = os.fspath(path)
        # Kept as asked: the index cache knows a video by the stream as asked for.
        self._stream = _stream(stream)
        info = _native.probe(self.path, stream=self._stream)
        self.stream: int = info["stream"]
        self.num_frames: int = info["num_frames"]
        self.fps: float = info["fps"]
        self.width: int = info["width"]
        self.height: int = info["height"]
        self.duration: float = info["duration"]
        self.codec: str = info["codec"]
        self.keyframes: list[int] = info["keyframes"]
        self._pts: np.ndarray | None = None

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (f"VideoReader({self.path!r}, {self.num_frames} frames, {self.width}x{self.height}, "
                f"{self.fps:.3g} fps, {self.codec})")

    @property
    def pts(self) -> np.ndarray:
        """Each frame's presentation time in seconds, in frame order (``pts[i]`` is when frame ``i``
        is shown), as a read-only float64 array of ``num_frames`` values, strictly increasing.

        The timestamps the decoder gives the frames (FFmpeg's best-effort timestamps, ffprobe's
        ``best_effort_timestamp_time``; its ``pts_time`` where that is given), counted from the
        stream's start time as ``ffmpeg -ss`` counts them (for most files the start is 0, and these
        are ffprobe's values). A frame without a timestamp is placed one frame period after the
        previous one. Variable frame rates are kept as they are: ``pts[i]`` is not ``i / fps``.
        """
        if self._pts is None:
            pts = _native.frame_times(self.path, stream=self._stream)
            pts.flags.writeable = False  # shared by every caller of this reader
            self._pts = pts
        return self._pts

    def _end(self) -> float:
        return end_of(self.pts, self.duration, self.fps)

    def index_at(self, seconds: float | Sequence[float] | np.ndarray) -> int | list[int]:
        """The number of the frame on screen at each time in ``seconds``: the last frame whose time in
        ``pts`` is at or before it (a time up to 1 µs earlier counts too, so that computed times such
        as ``i / fps`` land on the frame they name). Times before the first frame give frame 0. An
        ``int`` for one number, a list for a sequence or 1-D array.

        The video lasts until ``duration``, or until its last frame's time plus the interval before
        it when that is later; a time after that, a negative one or one not finite (``nan``,
        ``inf``) is a ``ValueError`` naming ``seconds`` and the value.
        """
        times, single = seconds_arg(seconds)
        idx = frames_at(self.pts, times, self._end(), self.path).tolist()
        return idx[0] if single else idx

    def get_frames_at(self, seconds: float | Sequence[float] | np.ndarray, size: tuple[int, int] | None = None,
                      threads: int | None = None, *, channels: str = "RGB") -> np.ndarray:
        """The frames on screen at ``seconds`` (a number or a sequence; any order, repeats allowed) as
        ``(N, H, W, 3)`` uint8, as ``get_frames(index_at(seconds))``: see :meth:`index_at` for
        which frame a time gives and for the errors, :meth:`get_frames` for ``size``, ``threads``
        and ``channels``."""
        times, _ = seconds_arg(seconds)
        idx = frames_at(self.pts, times, self._end(), self.path).tolist()
        return self.get_frames(idx, size=size, threads=threads, channels=channels)

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None,
                   threads: int | None = None, *, channels: str = "RGB") -> np.ndarray:
        """Frames ``indices`` (any order, repeats allowed) as ``(N, H, W, 3)`` uint8, the last axis
        R, G, B (``channels="BGR"``: B, G, R, as OpenCV gives them).

        ``size=(h, w)`` resizes while decoding (bicubic, as ``ffmpeg -vf scale=w:h``). Each distinct
        frame is decoded once; the decoder seeks forward to the keyframe before the next wanted
        frame when that saves decoding. Raises ``ValueError`` for an index outside
        ``[0, num_frames)``.
        """
        idx = _indices(indices, "indices")
        channels = _channels(channels)
        bad = [i for i in idx if not 0 <= i < self.num_frames]
        if bad:
            raise ValueError(f"indices: {bad[:5]} out of range for {self.path} ({self.num_frames} frames)")
        if size is not None:
            h, w = _scalable(_hw(size, "size"), "size")
        else:
            h, w = self.height, self.width
        if not idx:
            return np.empty((0, h, w, 3), np.uint8)
        out = read_clips([(self.path, idx)], size=None if size is None else (h, w), crop=None,
                         layout="NTHWC", dtype="uint8", threads=threads, stream=self._stream, channels=channels)
        return out[0]

    def __getitem__(self, i: int) -> np.ndarray:
        """Frame ``i`` (negative counts from the end) as ``(H, W, 3)`` uint8."""
        i = operator.index(i)
        if i < 0:
            i += self.num_frames
        return self.get_frames([i])[0]
