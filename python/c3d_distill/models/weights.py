"""Load the public C3D checkpoints into the ``c3d`` teacher.

Two layouts exist:

* ``conv1.weight … conv5b.bias, fc6.*, fc7.*, fc8.*`` — the Sports-1M ``c3d.pickle`` port
  (487 classes); it is also this package's own state_dict layout for ``c3d``.
* ``features.{0,3,6,8,11,13,16,18}.*`` and ``classifier.{0,3[,6]}.*`` — the ``c3d-pretrained.pth``
  port, where C3D is one ``nn.Sequential`` of convs, ReLUs and pools followed by one of linears.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .net import STAGE_NAMES, VideoNet

# c3d-pretrained.pth: index in the Sequential → our stage.
SEQUENTIAL_TO_STAGE = {
    "features.0": "conv1",
    "features.3": "conv2",
    "features.6": "conv3a",
    "features.8": "conv3b",
    "features.11": "conv4a",
    "features.13": "conv4b",
    "features.16": "conv5a",
    "features.18": "conv5b",
    "classifier.0": "fc6",
    "classifier.3": "fc7",
    "classifier.6": "fc8",
}
_OWN_PREFIXES = (*STAGE_NAMES, "fc6", "fc7", "fc8")


@dataclass
class LoadReport:
    """What :func:`load_c3d_weights` did. ``loaded``: model keys copied from the checkpoint;
    ``skipped``: checkpoint key → why it was not used (e.g. fc8 with another class count, or a head the
    model does not have); ``missing``: model keys the checkpoint did not provide (left as initialised)."""

    layout: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"layout {self.layout}: loaded {len(self.loaded)} tensors"]
        lines += [f"  skipped {k}: {why}" for k, why in self.skipped.items()]
        if self.missing:
            lines.append(f"  not in checkpoint (left as initialised): {', '.join(self.missing)}")
        return "\n".join(lines)


def _read(path_or_state_dict) -> tuple[Mapping[str, torch.Tensor], str]:
    if isinstance(path_or_state_dict, Mapping):
        return path_or_state_dict, "<state_dict>"
    if not isinstance(path_or_state_dict, (str, os.PathLike)):
        raise TypeError(
            f"path_or_state_dict: expected a file path or a state dict, got {type(path_or_state_dict).__name__}"
        )
    path = Path(path_or_state_dict)
    if not path.is_file():
        raise FileNotFoundError(f"C3D checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError … for bad files
        raise ValueError(f"{path}: not a loadable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict (a mapping of tensors), found {type(obj).__name__}")
    return obj, str(path)


def _unwrap(sd: Mapping, source: str) -> dict[str, torch.Tensor]:
    # Training scripts often save {"state_dict": …} or {"model": …}, and DataParallel prefixes "module.".
    for key in ("state_dict", "model"):
        if key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
            break
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{source}: entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k.removeprefix("module.")] = v
    return out


def _to_own_layout(sd: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], str]:
    keys = list(sd)
    if any(k.startswith(("features.", "classifier.")) for k in keys):
        layout, mapped, unknown = "features.N/classifier.N", {}, []
        for k, v in sd.items():
            prefix, _, leaf = k.rpartition(".")
            stage = SEQUENTIAL_TO_STAGE.get(prefix)
            if stage is None or leaf not in ("weight", "bias"):
                unknown.append(k)
            else:
                mapped[f"{stage}.{leaf}"] = v
    else:
        layout, mapped = "conv1…fc8", {}
        unknown = [k for k in keys if k.split(".", 1)[0] not in _OWN_PREFIXES or k.count(".") != 1]
        mapped = {k: v for k, v in sd.items() if k not in unknown}
    if unknown:
        raise ValueError(
            f"{source}: unknown C3D checkpoint layout ({layout}); keys that fit neither "
            f"'conv1.weight … fc8.bias' nor 'features.N / classifier.N': {', '.join(unknown[:20])}"
            + (f" … ({len(unknown)} in all)" if len(unknown) > 20 else "")
        )
    return mapped, layout


def load_c3d_weights(model: nn.Module, path_or_state_dict) -> LoadReport:
    """Copy a public C3D checkpoint into ``model`` (a ``c3d`` :class:`VideoNet`, any head or none).

    Every conv stage must be present with matching shapes; a shape mismatch raises ``ValueError``
    listing each offending key with both shapes. fc6/fc7 load when the model has a head. fc8 with a
    different class count (e.g. Sports-1M's 487 for a 101-class model) is skipped with a warning and
    reported, as is an fc8 the checkpoint lacks: the new head keeps its initialisation.
    Returns a :class:`LoadReport`.
    """
    if not (isinstance(model, VideoNet) and model.arch == "3d" and model.fold_at is None):
        name = getattr(model, "name", type(model).__name__)
        raise ValueError(
            f"model: load_c3d_weights loads the C3D teacher ('c3d'), got {name!r}; "
            "students get the teacher's weights through c3d_distill.transfer"
        )
    raw, source = _read(path_or_state_dict)
    sd, layout = _to_own_layout(_unwrap(raw, source), source)
    own = model.state_dict()
    report = LoadReport(layout=layout)
    conv_keys = [f"{s}.{leaf}" for s in STAGE_NAMES for leaf in ("weight", "bias")]
    absent = [k for k in conv_keys if k not in sd]
    if absent:
        raise ValueError(f"{source}: C3D checkpoint lacks conv weights: {', '.join(absent)}")
    mismatched, to_copy = [], {}
    for k, v in sd.items():
        if k not in own:
            report.skipped[k] = "the model has no head (num_classes=None)"
            continue
        if tuple(v.shape) != tuple(own[k].shape):
            if k.startswith("fc8."):
                report.skipped[k] = (
                    f"class count differs: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}"
                )
                continue
            mismatched.append(f"{k} (checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)})")
            continue
        to_copy[k] = v
    if mismatched:
        raise ValueError(f"{source}: shape mismatch for {len(mismatched)} keys: {'; '.join(mismatched)}")
    with torch.no_grad():
        for k, v in to_copy.items():
            own[k].copy_(v)
    report.loaded = list(to_copy)
    report.missing = [k for k in own if k not in to_copy]
    if model.num_classes is not None:
        differs = [k for k in report.skipped if k.startswith("fc8.")]
        absent = [k for k in report.missing if k.startswith("fc8.") and k not in differs]
        if differs or absent:
            why = "class count differs" if differs else "not in checkpoint"
            warnings.warn(
                f"{source}: fc8 not loaded ({', '.join(differs or absent)}): {why}; "
                "the classifier keeps its initialisation",
                stacklevel=2,
            )
    return report
