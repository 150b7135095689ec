"""Where a network comes from: a run folder, a run checkpoint, or a public C3D state dict.

Every command that takes a model (``train --init``, ``distill --teacher``, ``eval``, ``transfer``,
``extract``, ``export``) opens it here, and so does :func:`load_model`, the user-facing loader. A source
brings its network and the clip pipeline it expects: a run its own (recorded in its config), a public
file its port's preset (:mod:`c3d_distill.models.presets`, chosen by the file's layout).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..log import warn
from ..models.presets import DEFAULT_PRESET, LAYOUT_PRESETS, Preset, get_preset
from .checkpoint import FORMAT, CheckpointError, load_checkpoint, resolve_checkpoint
from .config import RunConfig


@dataclass
class Source:
    """An opened model source. ``kind``: ``"run"`` or ``"public"``; ``meta``: the create_model arguments
    (name, num_classes — None for a network without a classifier —, width, frames, size, dropout);
    ``preset``: its clip pipeline; ``stride``: its frame step; ``ckpt``: the run checkpoint (None for a
    public file); ``layout``: a public file's key layout."""

    model: nn.Module
    meta: dict[str, Any]
    kind: str
    path: Path
    preset: Preset
    stride: int = 1
    ckpt: dict[str, Any] | None = None
    layout: str | None = None
    head_dropped: bool = False

    def clip(self) -> dict[str, Any]:
        """``frames``, ``stride`` and the ``read_clips`` keyword arguments that make this model's input."""
        kw = self.preset.read_kwargs()
        return {"frames": int(self.meta["frames"]), "stride": int(self.stride), "layout": "NCTHW", **kw}

    def sha256(self) -> str:
        return file_sha256(self.path)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_preset(conf: dict[str, Any] | None, meta: dict[str, Any]) -> Preset:
    """The clip pipeline a run was trained with, from its config (``preprocess`` when recorded; else its
    resize/mean/std/channels fields, which are in the reader's 0–1 units)."""
    cfg = RunConfig(size=int(meta["size"]))
    for k in ("resize", "mean", "std", "channels", "preprocess"):
        v = (conf or {}).get(k)
        if v is not None:
            setattr(cfg, k, tuple(v) if isinstance(v, list) else v)
    return cfg.preset()


def clip_settings(src: Source) -> dict[str, Any]:
    """What a run reading clips ``src``'s way takes over (see ``runs.model.CLIP_SETTINGS``)."""
    cfg = RunConfig(size=int(src.meta["size"]))
    cfg.use_preset(src.preset)
    return {"stride": src.stride, "resize": cfg.resize, "mean": cfg.mean, "std": cfg.std,
            "channels": cfg.channels, "preprocess": cfg.preprocess}


def _public_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):
        if key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key]
    return ckpt


def open_source(
    path: str | os.PathLike,
    *,
    option: str = "SOURCE",
    width: float | None = None,
    frames: int | None = None,
    size: int | None = None,
    preprocess: str | None = None,
    num_classes: int | None = None,
    fast: bool = True,
    check_run_shape: bool = True,
) -> Source:
    """Open a run folder, run checkpoint or public C3D state dict (errors name ``option`` and the file).

    ``width``/``frames``/``size`` shape a public state dict (default: conv1's channels / 64, 16, 112); a run
    records its own, and a value given that differs is refused (unless ``check_run_shape`` is false: the
    caller compares them itself). ``preprocess`` names the preset of a public
    file (default: its port's, by layout). ``num_classes``: the classes the caller's data has; a public
    file whose classifier has other classes is opened without it (a feature network, ``head_dropped``)."""
    from ..models import create_model, load_c3d_weights

    ckpt = load_checkpoint(path, map_location="cpu")
    src = resolve_checkpoint(path)
    if ckpt.get("format") == FORMAT:
        from .model import load_run_model

        meta = ckpt.get("model_meta")
        if not isinstance(meta, dict):
            raise CheckpointError(f"{option} {src}: a c3d-distill checkpoint without model_meta")
        given = {"width": width, "frames": frames, "size": size}
        clash = [f"--{k} {v:g}: the checkpoint's model has {k}={meta[k]:g}" for k, v in given.items()
                 if v is not None and float(v) != float(meta[k])]
        if clash and check_run_shape:
            raise ValueError(f"{option} {src} is a run checkpoint, which records its own shape: "
                             + "; ".join(clash) + " (leave these options out for a run checkpoint)")
        if preprocess is not None:
            raise ValueError(f"--preprocess {preprocess}: {option} {src} is a run, which reads its clips the way it "
                             "was trained (recorded in its config); --preprocess is for public state dicts")
        model, meta, ckpt = load_run_model(src)
        conf = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
        stride = int(conf.get("stride", 1))
        return Source(model.eval(), dict(meta), "run", src, run_preset(conf, meta), stride, ckpt)
    state = _public_state(ckpt)
    frames = 16 if frames is None else frames
    size = 112 if size is None else size
    fc8 = next((v for k, v in state.items() if k.endswith(("fc8.weight", "classifier.6.weight"))), None)
    classes = int(fc8.shape[0]) if isinstance(fc8, torch.Tensor) else None
    dropped = False
    if classes is None and any(k.endswith(("fc6.weight", "classifier.0.weight")) for k in state):
        warn(f"{option} {src}: fc6/fc7 without fc8 (no class layer): loaded without its head, "
             "as a pool5 feature extractor (fc6 and fc7 are not used)")
    if classes is not None and num_classes is not None and classes != num_classes:
        dropped, classes = True, None
    given_width = width
    if width is None:
        conv1 = next((v for k, v in state.items() if k.endswith(("conv1.weight", "features.0.weight"))), None)
        width = conv1.shape[0] / 64 if isinstance(conv1, torch.Tensor) else 1.0
    meta = dict(name="c3d", num_classes=classes, width=width, frames=frames, size=size, dropout=0.5)
    try:
        model = create_model("c3d", classes, width=width, frames=frames, size=size, fast=fast)
    except ValueError as exc:  # "frames: …", "size: …", "width: …": the option that gave it
        raise ValueError(f"--{exc}") from exc
    try:
        report = load_c3d_weights(model, state)
    except ValueError as exc:
        guessed = " (guessed from conv1's channels / 64)" if given_width is None else ""
        raise ValueError(
            f"{option}: {src}: {exc} (a public state dict's shape is read from --width {width:g}{guessed}, "
            f"--frames {frames} and --size {size}: give the ones it was trained with)"
        ) from exc
    preset = get_preset(preprocess if preprocess is not None else LAYOUT_PRESETS.get(report.layout, DEFAULT_PRESET))
    return Source(model.eval(), meta, "public", src, preset.for_crop(size), 1, None, report.layout, dropped)


def load_model(
    source: str | os.PathLike, *, device: str | torch.device = "cpu", preprocess: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """A network and the clips it takes, from a run folder, a run checkpoint or a public C3D state dict.

    Returns ``(model, clip)``: ``model`` in eval mode on ``device``; ``clip`` holds ``frames`` and
    ``stride`` (every ``stride``-th frame, ``frames`` of them) and the :func:`c3d_distill.clips.read_clips`
    keyword arguments (``size``, ``crop``, ``layout``, ``dtype``, ``mean``, ``std``, ``channels``), so::

        model, clip = load_model("runs/teacher")
        frames, stride = clip.pop("frames"), clip.pop("stride")
        x = read_clips([(path, range(0, frames * stride, stride))], **clip)
        logits = model(torch.from_numpy(x))

    feeds the model the clips it was trained on. A run uses the pipeline its config records; a public
    file its port's preset (``c3d.pickle``'s or ``c3d-pretrained.pth``'s, told apart by the key layout),
    or ``preprocess`` (a name in :data:`c3d_distill.models.presets.PRESETS`).
    """
    src = open_source(source, option="source", preprocess=preprocess)
    return src.model.to(device).eval(), src.clip()
