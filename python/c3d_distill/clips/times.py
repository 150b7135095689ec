"""From times in seconds to frame numbers: the frame on screen at a time is the last one whose
presentation time is at or before it (``VideoReader.index_at``, ``get_frames_at``)."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["TOLERANCE_S", "end_of", "frames_at", "seconds_arg"]

# A time this close below a frame's timestamp counts as that frame's: times computed in floating
# point (i / fps, np.arange) land a rounding error either side of the one they name. No video has
# frames a microsecond apart.
TOLERANCE_S = 1e-6


def _number(v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise ValueError(f"seconds: expected a time in seconds (a real number), got {type(v).__name__} {v!r:.100}")
    return float(v)


def seconds_arg(seconds: Any) -> tuple[np.ndarray, bool]:
    """``seconds`` (a number, a sequence of numbers or a 1-D numeric array) as a float64 array, and
    whether it was a single number. Wrong types are a ValueError naming ``seconds``; the values are
    checked by :func:`frames_at`."""
    if isinstance(seconds, np.ndarray):
        if seconds.ndim == 0:
            return np.array([_number(seconds.item())]), True
        if seconds.ndim != 1 or not (np.issubdtype(seconds.dtype, np.integer)
                                     or np.issubdtype(seconds.dtype, np.floating) or seconds.size == 0):
            raise ValueError(f"seconds: expected a 1-D array of times, got {seconds.dtype} with shape {seconds.shape}")
        return seconds.astype(np.float64), False
    if isinstance(seconds, (str, bytes)):
        raise ValueError(f"seconds: expected a time or a sequence of times, got {type(seconds).__name__}")
    if isinstance(seconds, Iterable):
        return np.array([_number(t) for t in seconds], np.float64), False
    return np.array([_number(seconds)]), True


def end_of(pts: np.ndarray, duration: float, fps: float) -> float:
    """Where a video of frames at ``pts`` ends: the header's duration, or later when the last frame
    starts at or after it (the last frame's time plus the interval before it, or 1 / fps)."""
    if len(pts) == 0:
        return max(duration, 0.0)
    if len(pts) > 1:
        last = float(pts[-1] - pts[-2])
    else:
        last = 1.0 / fps if fps > 0 else 0.0
    return max(duration, float(pts[-1]) + last)


def frames_at(pts: np.ndarray, times: np.ndarray, end: float, path: str) -> np.ndarray:
    """For each of ``times``, the number of the last frame whose time in ``pts`` (increasing) is at or
    before it (within ``TOLERANCE_S``); frame 0 for times before the first frame. A time that is
    negative, not finite or after ``end`` is a ValueError naming ``seconds`` and the value."""
    def first(mask: np.ndarray) -> float | None:
        hit = np.flatnonzero(mask)
        return float(times[hit[0]]) if hit.size else None

    if (t := first(~np.isfinite(times))) is not None:
        raise ValueError(f"seconds: {t} is not a finite time")
    if (t := first(times < 0)) is not None:
        raise ValueError(f"seconds: {t} is negative (times count from the start of the video, 0)")
    if (t := first(times > end + TOLERANCE_S)) is not None:
        raise ValueError(f"seconds: {t} is past the end of {path} ({end:.6g} s)")
    idx = np.searchsorted(pts, times + TOLERANCE_S, side="right") - 1
    return np.maximum(idx, 0)
