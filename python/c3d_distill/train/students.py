"""The networks of a distillation run: the teacher's clip settings adopted, a collapsed teacher told apart,
and the student built from the teacher's weights, at random or from a file."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..log import warn
from ..runs.checkpoint import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    load_weights,
    model_state,
    resolve_checkpoint,
    state_fingerprint,
)
from ..runs.config import RunConfig
from .objective import unwrap


def adopt_teacher_clips(cfg: RunConfig, clip: dict[str, Any] | None) -> None:
    """Make ``cfg``'s clips the teacher's: resize, mean, std and channel order always (a teacher fed other pixels is
    another function), stride unless given explicitly — then a different stride is allowed with a warning,
    since it can be right (a data set at another frame rate needs another stride for the same motion)."""
    if clip is None:
        warn(f"--teacher {cfg.teacher}: the checkpoint records no run config, so the clip settings "
                f"(stride {cfg.stride}, resize {cfg.resize_hw}, mean/std) are this run's; make sure the teacher "
                "was trained on clips made the same way")
        return
    if cfg.extra.get("stride_given") and cfg.stride != clip["stride"]:
        warn(f"--stride {cfg.stride}: the teacher was trained with stride {clip['stride']}; it "
                f"will see motion {cfg.stride / clip['stride']:.3g}× as fast as in training (right only if this "
                "data's frame rate differs accordingly)")
    else:
        cfg.stride = clip["stride"]
    cfg.resize, cfg.mean, cfg.std = clip["resize"], clip["mean"], clip["std"]
    cfg.channels, cfg.preprocess = clip.get("channels", "RGB"), clip.get("preprocess")


def copy_head(student: nn.Module, teacher: nn.Module) -> None:
    for name in ("fc6", "fc7", "fc8"):
        s, t = getattr(student, name, None), getattr(teacher, name, None)
        if s is None or t is None or s.weight.shape != t.weight.shape:
            raise ValueError(
                f"distill: student and teacher heads differ at {name}; feature distillation reuses "
                "the teacher's head"
            )
        s.load_state_dict(t.state_dict())


def collapsed_teacher(teacher: nn.Module, probe: torch.Tensor) -> str | None:
    """Why the teacher cannot teach, when its pool5 features are the same for every probe clip (the
    usual sign of a diverged run whose ReLUs all died): None when they differ."""
    net = unwrap(teacher)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        feats = net.features(probe).float()
    net.train(was_training)
    if not torch.isfinite(feats).all():
        return "its pool5 features are not finite"
    spread = (feats - feats[0]).abs().max().item()
    scale = feats.abs().max().item()
    if scale == 0:
        return f"its pool5 features are all zero on {len(probe)} real clips (every ReLU is dead)"
    if spread <= 1e-6 * scale:
        return f"its pool5 features are the same for all {len(probe)} real clips"
    return None


def student_from_file(
    cfg: RunConfig, teacher: nn.Module, tmeta: dict[str, Any], *, teacher_sha256: str | None = None
) -> tuple[nn.Module, dict | None]:
    """``--init FILE``: the student a ``c3d-distill transfer --out FILE`` wrote (or any c3d-distill checkpoint
    of this student). Its model, width, clip length, input size and classes must be this run's: the
    student named by ``--student`` at the teacher's shape. Returns ``(student, its transfer report or None)``."""
    from ..models import create_model

    src = str(resolve_checkpoint(cfg.init))
    ckpt = load_checkpoint(src, map_location="cpu")
    meta = ckpt.get("model_meta")
    if ckpt.get("format") != FORMAT or not isinstance(meta, dict):
        raise CheckpointError(
            f"--init {src}: not a c3d-distill student checkpoint (no model_meta); make one with "
            f"`c3d-distill transfer --teacher {cfg.teacher} --student {cfg.model} --out FILE`"
        )
    want = {"name": cfg.model, "width": tmeta["width"], "frames": tmeta["frames"], "size": tmeta["size"],
            "num_classes": tmeta["num_classes"]}
    diffs = [f"{k}: the file has {meta.get(k)!r}, this run needs {v!r}" for k, v in want.items() if meta.get(k) != v]
    if diffs:
        raise ValueError(
            f"--init {src} does not fit this run (--student {cfg.model} at the teacher's shape): " + "; ".join(diffs)
            + f". Make a matching one with `c3d-distill transfer --teacher {cfg.teacher} --student {cfg.model} "
            "--out FILE`, or use --init transfer"
        )
    made_from = ckpt.get("teacher_sha256")
    if made_from is not None and teacher_sha256 is None:
        teacher_sha256 = state_fingerprint(unwrap(teacher).state_dict())
    if made_from is not None and made_from != teacher_sha256:
        warn(f"--init {src} was made from another teacher than --teacher {cfg.teacher} (its weights "
              "differ); the student starts from that teacher's approximation")
    student = create_model(
        cfg.model, tmeta["num_classes"], width=tmeta["width"], frames=tmeta["frames"], size=tmeta["size"],
        dropout=cfg.dropout, fast=cfg.fast,
    )
    load_weights(student, model_state(ckpt), source=f"--init {src}")
    report = ckpt.get("transfer")
    return student, report if isinstance(report, dict) else None


def build_student(
    cfg: RunConfig,
    teacher: nn.Module,
    tmeta: dict[str, Any],
    probe: torch.Tensor | None = None,
    *,
    teacher_sha256: str | None = None,
    resumed: bool = False,
) -> tuple[nn.Module, dict | None]:
    """The student named ``cfg.model`` at the teacher's width/frames/size, from the teacher's weights
    (``init="transfer"``, calibrated on ``probe`` clips when given), random, or from a student checkpoint
    file (``init=PATH``, see :func:`student_from_file`; not read when ``resumed``: the checkpoint being
    resumed replaces the weights). ``teacher_sha256``: the teacher's weight fingerprint, when known. With ``loss="feature"`` the
    head is the teacher's and stays frozen: the loss never reaches it, and a frozen copy reads the
    teacher's feature space the student learns."""
    from ..models import create_model

    kw = dict(
        width=tmeta["width"], frames=tmeta["frames"], size=tmeta["size"], dropout=cfg.dropout, fast=cfg.fast
    )
    report = None
    has_head = getattr(unwrap(teacher), "num_classes", None) is not None  # a public feature teacher has none
    if cfg.init not in ("transfer", "random") and not resumed:
        student, report = student_from_file(cfg, teacher, tmeta, teacher_sha256=teacher_sha256)
    elif cfg.init == "transfer":
        from ..transfer import transfer

        student, report = transfer(
            teacher, cfg.model, probe=probe, seed=cfg.seed, num_classes=tmeta["num_classes"], **kw
        )
        if hasattr(report, "to_dict"):
            report = report.to_dict()
        if has_head:
            copy_head(student, teacher)
    else:
        student = create_model(cfg.model, tmeta["num_classes"], **kw)
    if cfg.init != "transfer" and cfg.loss == "feature" and has_head:
        copy_head(student, teacher)
    if cfg.loss == "feature":
        for name in ("fc6", "fc7", "fc8"):
            for p in getattr(student, name).parameters():
                p.requires_grad_(False)
    return student, report


# --------------------------------------------------------------------------------------------------
# bookkeeping

