"""A run's network from its folder or checkpoint, and the clip settings it was trained with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from .checkpoint import (
    FORMAT,
    CheckpointError,
    check_compatible,
    load_checkpoint,
    load_weights,
    model_state,
    resolve_checkpoint,
)
from .config import RunConfig


def build_model(meta: dict[str, Any], *, fast: bool = True) -> nn.Module:
    from ..models import create_model

    return create_model(
        meta["name"],
        meta["num_classes"],
        width=meta["width"],
        frames=meta["frames"],
        size=meta["size"],
        dropout=meta.get("dropout", 0.5),
        fast=fast,
    )


def load_run_model(path: str | Path, *, map_location="cpu", expected: dict[str, Any] | None = None):
    """The network of a finished (or running) run: ``(model, meta, checkpoint)``.

    ``path`` is a run folder or a checkpoint file written by this package. Errors name the file and cause.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    src = str(resolve_checkpoint(path))
    if ckpt.get("format") != FORMAT or "model_meta" not in ckpt:
        raise CheckpointError(
            f"{src}: not a c3d-distill run checkpoint (no model_meta); a public C3D state dict "
            "loads with models.load_c3d_weights"
        )
    if expected is not None:
        check_compatible(ckpt, expected, source=src)
    meta = ckpt["model_meta"]
    model = build_model(meta)
    load_weights(model, model_state(ckpt), source=src)
    return model, meta, ckpt


# How clips are made: a student distilled from a teacher must see clips made the teacher's way.
CLIP_SETTINGS = ("stride", "resize", "mean", "std", "channels")
# Set by the command line for the settings given explicitly (they are not saved with the run).
GIVEN_FLAGS = ("width_given", "frames_given", "size_given", "stride_given")


def teacher_clip_settings(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The clip settings (stride, resize, mean, std, channels, and the preset as ``preprocess``) a run
    checkpoint was trained with, from its config; None when it records none (a checkpoint not written by
    ``train``)."""
    conf = ckpt.get("config")
    if not isinstance(conf, dict):
        return None
    d = RunConfig()
    out: dict[str, Any] = {}
    for k in CLIP_SETTINGS:
        v = conf.get(k, getattr(d, k))
        out[k] = tuple(v) if isinstance(v, list) else v
    out["preprocess"] = conf.get("preprocess")
    return out




def model_figures(model: nn.Module, meta: dict) -> dict[str, Any]:
    """Parameters and GMACs of one clip of the run's shape."""
    from ..models import count_macs, count_params

    shape = (1, 3, meta["frames"], meta["size"], meta["size"])
    return {"params": int(count_params(model)), "gmacs": float(count_macs(model, shape)) / 1e9}
