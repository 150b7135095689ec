"""Decode, sample and stack clips. The work is done in Rust (``c3d_distill._clips``)."""

from .._clips import VideoDecodeError, probe
from .loader import ClipLoader
from .reader import VideoReader, read_clips
from .samplers import (
    center_clip,
    dense_clips,
    random_clip,
    uniform_clips,
)

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
