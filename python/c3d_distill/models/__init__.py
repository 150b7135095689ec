"""The model zoo: the C3D teacher and the SP / MC students (DESIGN.md §2).

``create_model(name, num_classes=None, *, width=1.0, frames=16, size=112, dropout=0.5, fast=True)``
builds ``c3d``, ``sp``, ``sp_bn`` or ``mcK`` (K in 1..5); ``list_models()`` names them.
"""

from .counting import count_macs, count_params, layer_macs
from .layers import Fold, SPConv, fold, unfold
from .net import STAGE_NAMES, Stage, VideoNet, plan_stages
from .registry import create_model, list_models, register_model
from .weights import load_c3d_weights

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
    "plan_stages",
    "register_model",
    "unfold",
]
