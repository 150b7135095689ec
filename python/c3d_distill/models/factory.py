"""``create_model(name, ...)``: the zoo's networks, built with the fast path installed.

Importing this module registers the zoo (:mod:`.zoo` imports the registry, never the other way round)
and installs the fast executor (:mod:`.fast`) that ``fast=True`` networks run on."""

from __future__ import annotations

import re

import torch.nn as nn

from . import zoo  # noqa: F401  (registers the models)
from .fast import EXECUTOR
from .net import set_fast_executor
from .registry import builders

set_fast_executor(EXECUTOR)


def list_models() -> list[str]:
    """Registered model names, in registration order (c3d, sp, sp_bn, mc1 … mc5)."""
    return list(builders())


def create_model(
    name: str,
    num_classes: int | None = None,
    *,
    width: float = 1.0,
    frames: int = 16,
    size: int | tuple[int, int] = 112,
    dropout: float = 0.5,
    fast: bool = True,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: ``c3d``, ``sp``, ``sp_bn`` or ``mcK`` (K in 1..5; ``mc3``/``mc4``/``mc5`` are the paper's).
        num_classes: ``None`` → backbone only, ``forward`` returns pool5 features (N, feature_dim);
            an int → the C3D head fc6/fc7/fc8 is added and ``forward`` returns logits (N, num_classes).
        width: multiplies every channel count (and the head's 4096), e.g. 1/16 for CPU tests.
        frames: clip length T (a positive multiple of 16: every temporal pool halves T, pool5 included).
        size: spatial input size, int (square) or (H, W); with ``frames`` it fixes ``feature_dim``.
        dropout: dropout probability after fc6 and fc7.
        fast: use the fast execution paths (same parameters, same state_dict keys, same function);
            ``False`` runs the plain PyTorch layers.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a model name (str), got {type(name).__name__}")
    known = builders()
    builder = known.get(name)
    if builder is None:
        hint = ""
        if re.fullmatch(r"mc\d+", name):
            hint = " (mcK exists for K in 1..5: the 2D part starts at conv stage K)"
        raise ValueError(f"name: unknown model {name!r}{hint}; known: {', '.join(known)}")
    return builder(num_classes=num_classes, width=width, frames=frames, size=size, dropout=dropout, fast=fast)
