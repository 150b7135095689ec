"""The transfer's report: per stage the relative weight and activation errors, and end to end the pool5
feature error against the teacher (and the same for a randomly initialised student, the baseline); and
the probe clips it is measured on."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class TransferReport:
    """What :func:`transfer` did and how close the student starts.

    ``rows``: one dict per layer: ``layer``, ``kind`` (``copied`` / ``exact`` / ``approx``), ``method``
    (how the weights were made), ``weight_rel_err`` (relative Frobenius error of the stage's effective
    kernel against the linear map it stands for: the 3D kernel, its band expansion, or the band expansion
    followed by temporal averaging), ``act_rel_err`` (relative error of that layer's output, after its
    ReLU, against the teacher's there — folded, and max-pooled over time for a "b" conv — on the check
    batch, end to end, so errors of earlier layers count). ``feature_rel_err`` and ``feature_cosine``
    compare the pool5 features (N, feature_dim); ``random_feature_rel_err`` and ``random_feature_cosine``
    give the same for a randomly initialised student of the same kind, the baseline. Item access
    (``report["feature_rel_err"]``) works as for a dict; :meth:`to_dict` gives plain JSON-able data.
    """

    student: str
    teacher: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    feature_rel_err: float = math.nan
    feature_cosine: float = math.nan
    random_feature_rel_err: float = math.nan
    random_feature_cosine: float = math.nan
    probe: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "student": self.student,
            "teacher": dict(self.teacher),
            "rows": [dict(r) for r in self.rows],
            "feature_rel_err": self.feature_rel_err,
            "feature_cosine": self.feature_cosine,
            "random_feature_rel_err": self.random_feature_rel_err,
            "random_feature_cosine": self.random_feature_cosine,
            "probe": dict(self.probe),
        }

    def table(self) -> str:
        """The rows as a markdown table, with the pool5 summary below it."""
        lines = [
            f"transfer c3d → {self.student}",
            "",
            "| layer | kind | method | weight_rel_err | act_rel_err |",
            "|---|---|---|---:|---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r['layer']} | {r['kind']} | {r['method']} | {_fmt(r['weight_rel_err'])} | "
                f"{_fmt(r['act_rel_err'])} |"
            )
        lines += [
            "",
            f"pool5 features: rel_err {_fmt(self.feature_rel_err)}, cosine {self.feature_cosine:.4f} "
            f"(randomly initialised {self.student}: rel_err {_fmt(self.random_feature_rel_err)}, "
            f"cosine {self.random_feature_cosine:.4f})",
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.2e}" if v < 1e-3 else f"{v:.4f}"


# ----------------------------------------------------------------------------------------------- probe
def make_probe(n: int, frames: int, size: int | tuple[int, int], *, seed: int = 0, device=None) -> Tensor:
    """A batch of smooth random clips (N, 3, T, H, W), float32, about zero mean and unit variance.

    Noise drawn on a coarse grid (T/4 × H/8 × W/8) and upsampled trilinearly, plus a little white noise:
    like normalised video, neighbouring pixels and frames are correlated — which matters for the "b"
    convs, where max and mean of two neighbouring frames differ less when the frames are alike.
    """
    h, w = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, max(2, frames // 4), max(2, h // 8), max(2, w // 8), generator=g)
    x = F.interpolate(coarse, size=(frames, h, w), mode="trilinear", align_corners=False)
    x = (x - x.mean(dim=(2, 3, 4), keepdim=True)) / x.std(dim=(2, 3, 4), keepdim=True).clamp_min(1e-6)
    x = x + 0.1 * torch.randn(x.shape, generator=g)
    return x.to(device=device, dtype=torch.float32)


# ------------------------------------------------------------------------------------- model plumbing
