"""Export a network of the zoo for deployment: ONNX, TorchScript or a ``torch.export`` ExportedProgram
(``.pt2``), with a dynamic batch dimension, checked against the eager model before it is kept, and a
metadata file (``FILE.json``) that tells a deployment how to feed it.

``export_model(model, fmt, out, ...)`` does it for a model in memory; ``c3d-distill export SOURCE`` for a run
folder, a run checkpoint or a public C3D state dict. Imported on first use (torch takes seconds to import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_WHERE = {
    "FORMATS": ".names",
    "OUTPUTS": ".names",
    "ExportCheckError": ".core",
    "ExportError": ".core",
    "ExportResult": ".core",
    "export_model": ".core",
    "plain_model": ".core",
}

if TYPE_CHECKING:
    from .core import ExportCheckError, ExportError, ExportResult, export_model, plain_model
    from .names import FORMATS, OUTPUTS

__getattr__ = lazy_attributes(__name__, _WHERE)

__all__ = [
    "FORMATS",
    "OUTPUTS",
    "ExportCheckError",
    "ExportError",
    "ExportResult",
    "export_model",
    "plain_model",
]
