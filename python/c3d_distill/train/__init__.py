"""Training and distillation: the engine (``train_one_epoch`` / ``evaluate``), losses, checkpoints, runs,
reports and the demo. The ``c3d-distill`` subcommands train / distill / eval / report / demo live in
``train/cli.py``.

The names below are imported on first use: the command line reads ``train/cli.py`` (and ``report`` runs)
without importing torch, which takes seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_WHERE = {
    "CheckpointError": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
    "RunConfig": ".config",
    "Objective": ".engine",
    "StudentNet": ".engine",
    "TeacherCache": ".engine",
    "evaluate": ".engine",
    "lr_at": ".engine",
    "train_one_epoch": ".engine",
    "feature_loss": ".losses",
    "hint_loss": ".losses",
    "kd_loss": ".losses",
}

if TYPE_CHECKING:
    from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from .config import RunConfig
    from .engine import Objective, StudentNet, TeacherCache, evaluate, lr_at, train_one_epoch
    from .losses import feature_loss, hint_loss, kd_loss

__getattr__ = lazy_attributes(__name__, _WHERE)


__all__ = [
    "CheckpointError",
    "Objective",
    "RunConfig",
    "StudentNet",
    "TeacherCache",
    "evaluate",
    "feature_loss",
    "hint_loss",
    "kd_loss",
    "load_checkpoint",
    "lr_at",
    "save_checkpoint",
    "train_one_epoch",
]
