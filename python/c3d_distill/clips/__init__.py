"""Decode, sample and stack clips. The work is done in Rust (``c3d_distill._native``)."""

from typing import TYPE_CHECKING

from .._native import VideoDecodeError, probe
from .reader import VideoReader, read_clips
from .samplers import (
    center_clip,
    dense_clips,
    random_clip,
    uniform_clips,
)

if TYPE_CHECKING:
    from .loader import ClipLoader


def __getattr__(name: str):
    # ClipLoader needs torch, whose import takes seconds: the reader, the samplers and the data commands
    # (`c3d-distill data synth`, `probe`) do not pay for it until a loader is asked for.
    if name == "ClipLoader":
        from .loader import ClipLoader

        return ClipLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ClipLoader",
    "VideoDecodeError",
    "VideoReader",
    "center_clip",
    "dense_clips",
    "probe",
    "random_clip",
    "read_clips",
    "uniform_clips",
]
