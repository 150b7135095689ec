"""Clip and video accuracy of a run or checkpoint on a data set (``c3d-distill eval``), with the pool5
feature error against a teacher when one is given."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_WHERE = {"evaluate_checkpoint": ".evaluation", "training_overlap": ".evaluation"}

if TYPE_CHECKING:
    from .evaluation import evaluate_checkpoint, training_overlap

__getattr__ = lazy_attributes(__name__, _WHERE)

__all__ = ["evaluate_checkpoint", "training_overlap"]
