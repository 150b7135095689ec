"""A run that is not learning says so, once: after the warm-up and 3 more epochs, a cross-entropy still
within 2 % of ln(classes) — the loss of the constant uniform prediction — with training accuracy near
chance means the network sits at the constant solution. The warning names the likely cause for the
run's settings and the flags to try. (A NaN loss is not this: it stops the run at its step.)"""

from __future__ import annotations

import math
from typing import Any

PATIENCE = 3  # epochs after the warm-up
LOSS_TOLERANCE = 0.02  # relative to ln(classes)
CHANCE_FACTOR = 1.5  # training accuracy below this × chance counts as "near chance"


def check_epoch(cfg, epoch: int, train_row: dict[str, Any], num_classes: int) -> str | None:
    """The warning for ``epoch`` (1-based, just finished) when the run is not learning, else None.
    Only at the one epoch ``ceil(warmup_epochs) + 3`` (so it is said once), and only for runs whose loss
    is the cross-entropy (``train``); a distillation's loss is the teacher's, not ln(classes)."""
    if cfg.mode != "train" or num_classes < 2 or epoch != math.ceil(cfg.warmup_epochs) + PATIENCE:
        return None
    loss, acc = train_row.get("ce", train_row.get("loss")), train_row.get("top1")
    if loss is None or acc is None or not math.isfinite(loss):
        return None
    flat = math.log(num_classes)
    if abs(loss - flat) > LOSS_TOLERANCE * flat or acc > CHANCE_FACTOR / num_classes:
        return None
    return (
        f"not learning: after {epoch} epochs the training loss {loss:.4f} is within "
        f"{LOSS_TOLERANCE:.0%} of ln({num_classes}) = {flat:.4f} (a constant prediction) and training "
        f"accuracy {acc:.3f} is near chance ({1 / num_classes:.3f}). Likely: {_cause(cfg)}"
    )


def _cause(cfg) -> str:
    tips = []
    if cfg.optimizer == "sgd" and cfg.lr >= 5e-3:
        tips.append(f"SGD at --lr {cfg.lr:g} is too high a step for a network without normalisation "
                    "(it drops to the constant solution and stays); try --optimizer adamw --lr 1e-3")
    elif cfg.optimizer == "adamw" and cfg.lr > 1e-3:
        tips.append(f"--lr {cfg.lr:g} is high for AdamW; try --lr 1e-3 or 3e-4")
    if cfg.dropout > 0:
        tips.append(f"--dropout {cfg.dropout:g} slows the escape from it in a narrow head; try --dropout 0")
    if cfg.warmup_epochs < 1:
        tips.append("no warm-up lets the first large steps throw it there; try --warmup-epochs 1")
    if cfg.clip_grad is None:
        tips.append("unclipped gradients; try --clip-grad 5")
    if not tips:
        tips.append("the network may simply need longer at these settings (the normalisation-free C3D can "
                    "sit near the constant solution for several epochs): give it more --epochs, or try a "
                    "lower --lr")
    return "; ".join(tips) + "."
