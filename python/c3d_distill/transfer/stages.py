"""Which student stage answers which teacher conv: its kind (exact fold, banded pool, SP split), the
teacher's 3-D convs and the stages whose outputs share a space after folding (the fold hints)."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..models import fold

STAGES = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
HEAD = ("fc6", "fc7", "fc8")


def conv3d_of(teacher: nn.Module, name: str) -> nn.Conv3d:
    m = getattr(teacher, name, None)
    if not isinstance(m, nn.Conv3d) or m.weight.dim() != 5:
        raise ValueError(f"teacher: stage {name} must be an nn.Conv3d (a C3D teacher), got {type(m).__name__}")
    if tuple(m.stride) != (1, 1, 1) or m.kernel_size[0] != 3 or m.padding[0] != 1:
        raise ValueError(f"teacher: stage {name} must be a stride-1 conv with temporal kernel 3 and padding 1, "
                         f"got kernel {m.kernel_size}, stride {m.stride}, padding {m.padding}")
    return m


def is_sp(m: nn.Module) -> bool:
    return isinstance(getattr(m, "spatial", None), nn.Conv3d) and isinstance(getattr(m, "temporal", None), nn.Conv3d)


def batchnorms_of(m: nn.Module) -> tuple[nn.BatchNorm3d | None, nn.BatchNorm3d | None]:
    s, t = getattr(m, "spatial_bn", None), getattr(m, "temporal_bn", None)
    return (s if isinstance(s, nn.modules.batchnorm._BatchNorm) else None,
            t if isinstance(t, nn.modules.batchnorm._BatchNorm) else None)


def stage_kind(teacher: nn.Module, student: nn.Module, name: str) -> tuple[str, int]:
    """``("3d" | "a" | "b" | "sp", T_in)`` for a student stage (``T_in`` only meaningful for 2D stages)."""
    tconv = conv3d_of(teacher, name)
    s = getattr(student, name, None)
    cout, cin = tconv.weight.shape[:2]
    if isinstance(s, nn.Conv3d):
        if s.weight.shape != tconv.weight.shape:
            raise ValueError(f"student: 3D stage {name} has kernel {tuple(s.weight.shape)}, the teacher's is "
                             f"{tuple(tconv.weight.shape)} (build the student with the teacher's width)")
        return "3d", 0
    if is_sp(s):
        if s.spatial.in_channels != cin or s.temporal.out_channels != cout:
            raise ValueError(f"student: SP stage {name} maps {s.spatial.in_channels}→{s.temporal.out_channels}, "
                             f"the teacher's {cin}→{cout} (build the student with the teacher's width)")
        return "sp", 0
    if isinstance(s, nn.Conv2d):
        if s.in_channels % cin:
            raise ValueError(f"student: 2D stage {name} takes {s.in_channels} channels, not a multiple of the "
                             f"teacher's {cin} (build the student with the teacher's width)")
        t = s.in_channels // cin
        if s.out_channels == cout * t:
            return "a", t
        if t >= 2 and s.out_channels == cout * (t // 2):
            return "b", t
        raise ValueError(f"student: 2D stage {name} maps {s.in_channels}→{s.out_channels} channels; with the "
                         f"teacher's {cin}→{cout} over T={t} frames it must give {cout * t} ('a') or "
                         f"{cout * (t // 2)} ('b')")
    raise ValueError(f"student: stage {name} is a {type(s).__name__}; expected nn.Conv3d, nn.Conv2d or an SP pair")


def fold_hint_pairs(teacher: nn.Module, student: nn.Module, *, pooled: bool = False) -> list[tuple[str, str]]:
    """(teacher stage, student stage) pairs whose ``forward_stages`` outputs live in the same space.

    For a pair, ``align(teacher_out, student_out)`` gives the teacher's output in the student's layout
    (folded when the student's is 4D) with the student's shape, so a layer-wise MSE hint needs no
    regressor. Included: 3D stages (identical), SP stages (same (N, C, T, H, W)) and the "a" convs of MC
    students (the fold identity). The "b" convs, whose output has half the teacher's frames, match the
    teacher only after its temporal max pool: ``pooled=True`` includes them too (``align`` applies that pool).
    """
    pairs = []
    for name in STAGES:
        kind, _ = stage_kind(teacher, student, name)
        if kind != "b" or pooled:
            pairs.append((name, name))
    return pairs


def align(teacher_out: Tensor, student_out: Tensor) -> Tensor:
    """The teacher's stage output (N, C, T, H, W) in the student's layout: itself for a 5D student stage;
    folded (N, C·T, H, W) for a 2D one; max-pooled over frame pairs first when the student's stage (a "b"
    conv) has ``C·T/2`` channels."""
    t = teacher_out
    if student_out.dim() == 4 and t.dim() == 5:
        n, c, frames = t.shape[:3]
        if student_out.shape[1] == c * (frames // 2) and frames >= 2 and student_out.shape[1] != c * frames:
            t = tmax(t)
        t = fold(t)
    if t.shape != student_out.shape:
        raise ValueError(f"align: teacher output {tuple(teacher_out.shape)} does not fold to the student's "
                         f"{tuple(student_out.shape)}")
    return t


def tmax(x: Tensor) -> Tensor:
    """Temporal max pool, kernel 2 stride 2, of (N, C, T, H, W) (the temporal half of C3D's pools)."""
    return F.max_pool3d(x, (2, 1, 1), (2, 1, 1))


