"""Clip samplers: which frames of a video make a clip.

Pure functions of their arguments (the random one of an explicit ``seed`` or ``rng``), integer arithmetic
only, so a clip is the same on every machine and in every worker process.

Vocabulary (as in mmaction2's ``SampleFrames`` / pytorchvideo's clip samplers):

- ``clip_len`` frames per clip, taken every ``stride`` frames: a clip starting at ``s`` is
  ``[s, s + stride, ..., s + (clip_len - 1) * stride]`` and spans ``span = (clip_len - 1) * stride + 1``
  frames of the video.
- Valid starts are ``0 .. num_frames - span`` (there are ``num_frames - span + 1`` of them).
- A video shorter than one span is handled by the ``short`` policy:

  ``"repeat"`` (default)
      start at 0 and repeat the last frame: ``min(i * stride, num_frames - 1)``;
  ``"loop"``
      start at 0 and wrap around: ``(i * stride) % num_frames``;
  ``"error"``
      raise ``ValueError`` naming ``num_frames``, ``clip_len`` and ``stride``.

Every sampler returns plain Python ``int`` frame indices (0-based, presentation order), ready for
``read_clips([(path, indices), ...])``.
"""

from __future__ import annotations

import numpy as np

from ..checks import integer

__all__ = ["SHORT_POLICIES", "center_clip", "clip_span", "dense_clips", "random_clip", "uniform_clips"]

SHORT_POLICIES = ("repeat", "loop", "error")


def _check_short(short: str) -> str:
    if short not in SHORT_POLICIES:
        raise ValueError(f"short must be one of {SHORT_POLICIES}, got {short!r}")
    return short


def _validate(num_frames, clip_len, stride, short) -> tuple[int, int, int, str]:
    return (
        integer(num_frames, "num_frames"),
        integer(clip_len, "clip_len"),
        integer(stride, "stride"),
        _check_short(short),
    )


def clip_span(clip_len: int, stride: int = 1) -> int:
    """Frames of the video covered by one clip: ``(clip_len - 1) * stride + 1``."""
    clip_len = integer(clip_len, "clip_len")
    stride = integer(stride, "stride")
    return (clip_len - 1) * stride + 1


def _clip_at(start: int, clip_len: int, stride: int) -> list[int]:
    return list(range(start, start + clip_len * stride, stride))


def _short_clip(num_frames: int, clip_len: int, stride: int, short: str) -> list[int]:
    """The one clip a video shorter than a span yields, under the ``short`` policy."""
    if short == "error":
        raise ValueError(
            f"video too short: num_frames={num_frames} < span {(clip_len - 1) * stride + 1} "
            f"(clip_len={clip_len}, stride={stride}) and short='error'"
        )
    if short == "loop":
        return [(i * stride) % num_frames for i in range(clip_len)]
    last = num_frames - 1
    return [min(i * stride, last) for i in range(clip_len)]


def random_clip(
    num_frames: int,
    clip_len: int,
    stride: int = 1,
    *,
    rng: np.random.Generator | None = None,
    seed: int | None = None,
    short: str = "repeat",
) -> list[int]:
    """One clip with a start drawn uniformly from the valid starts.

    Give exactly one of ``seed`` (an int; the same seed gives the same clip) or ``rng`` (a
    ``numpy.random.Generator``, advanced by one draw). A video shorter than a span gives the ``short``
    clip starting at 0 (no draw is made). Returns ``clip_len`` frame indices.
    """
    num_frames, clip_len, stride, short = _validate(num_frames, clip_len, stride, short)
    if (rng is None) == (seed is None):
        raise ValueError("random_clip needs exactly one of seed= or rng=")
    if rng is None:
        rng = np.random.default_rng(integer(seed, "seed", minimum=0))
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    span = (clip_len - 1) * stride + 1
    if num_frames < span:
        return _short_clip(num_frames, clip_len, stride, short)
    start = int(rng.integers(0, num_frames - span + 1))
    return _clip_at(start, clip_len, stride)


def uniform_clips(
    num_frames: int, clip_len: int, num_clips: int, stride: int = 1, *, short: str = "repeat"
) -> list[list[int]]:
    """``num_clips`` clips spread evenly over the video (the usual test-time sampling).

    The ``n = num_frames - span + 1`` valid starts are cut into ``num_clips`` equal segments and each clip
    starts at the middle of its segment: ``start_k = floor((2k + 1) * n / (2 * num_clips))`` (exact
    integer arithmetic). Starts are non-decreasing; they repeat only when ``num_clips > n``. A video
    shorter than a span gives ``num_clips`` copies of the ``short`` clip. Returns a list of ``num_clips``
    lists of ``clip_len`` indices. ``uniform_clips(..., num_clips=1)[0] == center_clip(...)``.
    """
    num_frames, clip_len, stride, short = _validate(num_frames, clip_len, stride, short)
    num_clips = integer(num_clips, "num_clips")
    span = (clip_len - 1) * stride + 1
    if num_frames < span:
        clip = _short_clip(num_frames, clip_len, stride, short)
        return [list(clip) for _ in range(num_clips)]
    n = num_frames - span + 1
    return [_clip_at((2 * k + 1) * n // (2 * num_clips), clip_len, stride) for k in range(num_clips)]


def center_clip(num_frames: int, clip_len: int, stride: int = 1, *, short: str = "repeat") -> list[int]:
    """The clip in the middle of the video: start ``(num_frames - span + 1) // 2``, so the frames left
    out before it are as many as after it, or one more. Returns ``clip_len`` indices."""
    return uniform_clips(num_frames, clip_len, 1, stride, short=short)[0]


def dense_clips(
    num_frames: int, clip_len: int, stride: int = 1, step: int | None = None, *, short: str = "repeat"
) -> list[list[int]]:
    """Every clip whose start is a multiple of ``step``: starts ``0, step, 2*step, ...`` up to
    ``num_frames - span``.

    ``step`` defaults to ``clip_len * stride``, so consecutive clips continue one another's sampling grid
    without overlap (``step < span`` makes them overlap). Frames after the last whole clip are not covered.
    A video shorter than a span gives one ``short`` clip. Returns a list of clips (``clip_len`` indices each).
    """
    num_frames, clip_len, stride, short = _validate(num_frames, clip_len, stride, short)
    step = clip_len * stride if step is None else integer(step, "step")
    span = (clip_len - 1) * stride + 1
    if num_frames < span:
        return [_short_clip(num_frames, clip_len, stride, short)]
    return [_clip_at(s, clip_len, stride) for s in range(0, num_frames - span + 1, step)]
