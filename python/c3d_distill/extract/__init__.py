"""Feature extraction over whole data sets: ``extract(source, videos, out)`` and ``c3d-distill extract``.

The names below are imported on first use (they need torch)."""

from __future__ import annotations

from .._lazy import lazy_attributes

__getattr__ = lazy_attributes(__name__, {"extract": ".core", "ExtractError": ".output", "read_manifest": ".output",
                                         "layer_outputs": ".core"})

__all__ = ["ExtractError", "extract", "layer_outputs", "read_manifest"]
