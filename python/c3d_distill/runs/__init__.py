"""Run folders and what they hold: the settings (``RunConfig``), checkpoints (atomic, ``weights_only``), the
metrics log, and the network of a run with the clip settings it was trained with.

The names below are imported on first use (checkpoints need torch, which takes seconds to import)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_WHERE = {
    "CheckpointError": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
    "RunConfig": ".config",
    "MetricsLog": ".folder",
    "load_run_model": ".model",
    "teacher_clip_settings": ".model",
    "load_model": ".source",
    "open_source": ".source",
}

if TYPE_CHECKING:
    from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from .config import RunConfig
    from .folder import MetricsLog
    from .model import load_run_model, teacher_clip_settings
    from .source import load_model, open_source

__getattr__ = lazy_attributes(__name__, _WHERE)

__all__ = [
    "CheckpointError",
    "MetricsLog",
    "RunConfig",
    "load_checkpoint",
    "load_model",
    "load_run_model",
    "open_source",
    "save_checkpoint",
    "teacher_clip_settings",
]
