"""Decode, sample and stack clips. The work is done in Rust (``c3d_distill._clips``)."""

from .._clips import VideoDecodeError, probe

__all__ = ["VideoDecodeError", "probe"]
