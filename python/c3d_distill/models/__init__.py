"""The model zoo: the C3D teacher and the SP / MC students.

``create_model(name, num_classes=None, *, width=1.0, frames=16, size=112, dropout=0.5, fast=True)``
builds ``c3d``, ``sp``, ``sp_bn`` or ``mcK`` (K in 1..5); ``list_models()`` names them.
Everything is imported on first use (it needs torch, which takes seconds to import), so that
``c3d-distill --help`` and ``models --help`` read ``models/cli.py`` alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_WHERE = {
    "count_macs": ".counting",
    "count_params": ".counting",
    "layer_macs": ".counting",
    "Fold": ".layers",
    "SPConv": ".layers",
    "fold": ".layers",
    "unfold": ".layers",
    "STAGE_NAMES": ".net",
    "Stage": ".net",
    "VideoNet": ".net",
    "plan_stages": ".net",
    "create_model": ".factory",
    "list_models": ".factory",
    "register_model": ".registry",
    "load_c3d_weights": ".weights",
    "PRESETS": ".presets",
    "Preset": ".presets",
    "get_preset": ".presets",
}

if TYPE_CHECKING:
    from .counting import count_macs, count_params, layer_macs
    from .factory import create_model, list_models
    from .layers import Fold, SPConv, fold, unfold
    from .net import STAGE_NAMES, Stage, VideoNet, plan_stages
    from .presets import PRESETS, Preset, get_preset
    from .registry import register_model
    from .weights import load_c3d_weights

__getattr__ = lazy_attributes(__name__, _WHERE)

__all__ = [
    "STAGE_NAMES",
    "Fold",
    "SPConv",
    "Stage",
    "VideoNet",
    "count_macs",
    "count_params",
    "create_model",
    "fold",
    "layer_macs",
    "list_models",
    "load_c3d_weights",
    "PRESETS",
    "Preset",
    "get_preset",
    "plan_stages",
    "register_model",
    "unfold",
]
