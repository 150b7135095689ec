"""Training and distillation: the engine (``train_one_epoch`` / ``evaluate``), the objective of every mode,
the losses, and the run loop (``run``). The ``c3d-distill`` subcommands train and distill live in
``train/cli.py``.

The names below are imported on first use: the command line reads ``train/cli.py`` without importing
torch, which takes seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_WHERE = {
    "Objective": ".objective",
    "StudentNet": ".objective",
    "TeacherCache": ".objective",
    "run": ".run",
    "evaluate": ".engine",
    "lr_at": ".engine",
    "train_one_epoch": ".engine",
    "feature_loss": ".losses",
    "hint_loss": ".losses",
    "kd_loss": ".losses",
}

if TYPE_CHECKING:
    from .engine import evaluate, lr_at, train_one_epoch
    from .losses import feature_loss, hint_loss, kd_loss
    from .objective import Objective, StudentNet, TeacherCache
    from .run import run

__getattr__ = lazy_attributes(__name__, _WHERE)


__all__ = [
    "Objective",
    "StudentNet",
    "TeacherCache",
    "evaluate",
    "feature_loss",
    "hint_loss",
    "kd_loss",
    "lr_at",
    "run",
    "train_one_epoch",
]
