"""Training and distillation: the engine (``train_one_epoch`` / ``evaluate``), losses, checkpoints, runs,
reports and the demo. The ``c3d-distill`` subcommands train / distill / eval / report / demo live in
``train/cli.py``."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import RunConfig
from .engine import Objective, StudentNet, TeacherCache, evaluate, lr_at, train_one_epoch
from .losses import feature_loss, hint_loss, kd_loss

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
