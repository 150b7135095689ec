"""The one network family behind every model: C3D's eight conv stages and five pools, each stage run
as a 3-D conv (``c3d``), a (2+1)D pair (``sp``, ``sp_bn``) or, from stage group K on, a 2-D conv over
the time-folded tensor (``mcK``). The plan (channels, clip length and spatial size at every stage) is a
pure function, :func:`plan_stages`, so the formulas are testable without building a network."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import Fold, SPConv


class FastExecutor(Protocol):
    """What runs a :class:`VideoNet` with ``fast=True`` (:mod:`.fast` provides it; the factory installs
    it), so that the network's definition does not depend on its fast path."""

    def prepare(self, model: VideoNet, enabled: bool) -> None:
        """Called when the fast path is switched on or off."""

    def forward(
        self, model: VideoNet, x: torch.Tensor, stages: dict[str, torch.Tensor] | None
    ) -> torch.Tensor | None:
        """The flattened pool5 features, or None when the plain layers must run (hooks on a stage)."""


_fast_executor: FastExecutor | None = None


def set_fast_executor(executor: FastExecutor | None) -> None:
    """Install the executor that ``fast=True`` networks run on."""
    global _fast_executor
    _fast_executor = executor

# (stage name, stage group, C3D output channels). Groups end with pool1 … pool5.
C3D_STAGES: tuple[tuple[str, int, int], ...] = (
    ("conv1", 1, 64),
    ("conv2", 2, 128),
    ("conv3a", 3, 256),
    ("conv3b", 3, 256),
    ("conv4a", 4, 512),
    ("conv4b", 4, 512),
    ("conv5a", 5, 512),
    ("conv5b", 5, 512),
)
STAGE_NAMES: tuple[str, ...] = tuple(s[0] for s in C3D_STAGES)
# C3D pools: (kernel, stride, padding) as (T, H, W). pool1 keeps time; pool5 pads space by one.
C3D_POOLS: dict[int, tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]] = {
    1: ((1, 2, 2), (1, 2, 2), (0, 0, 0)),
    2: ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    3: ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    4: ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
    5: ((2, 2, 2), (2, 2, 2), (0, 1, 1)),
}
HEAD_HIDDEN = 4096


@dataclass(frozen=True)
class Stage:
    """One conv stage of a plan.

    kind: ``"3d"`` (Conv3d 3×3×3), ``"sp"`` (SPConv), ``"2d"`` (Conv2d 3×3 on the folded tensor).
    cin, cout: the module's channel counts (folded counts C·T for ``"2d"``).
    channels: output channels per frame (C'), so that ``cout == channels * t_out`` for ``"2d"``.
    t_in, t_out: clip length entering the stage and leaving it (a ``"2d"`` "b" conv halves it, taking
    over the temporal half of the following pool). hw: spatial size, unchanged by the conv.
    fold_before: the time fold happens right before this stage.
    pool: ``None`` or the pool that follows, as (kernel, stride, padding) over (T, H, W) for 3-D stages
    and over (H, W) for 2-D ones; hw_out: spatial size after that pool.
    """

    name: str
    group: int
    kind: str
    cin: int
    cout: int
    channels: int
    t_in: int
    t_out: int
    hw: tuple[int, int]
    fold_before: bool
    pool: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None
    hw_out: tuple[int, int]
    t_after_pool: int


def scale_channels(c: int, width: float) -> int:
    """Channel count ``c`` under the width multiplier (rounded, at least 1)."""
    return max(1, int(round(c * width)))


def _pool_len(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def _check_args(arch: str, fold_at: int | None, width: float, frames: int, size) -> tuple[int, int]:
    if arch not in ("3d", "sp", "sp_bn"):
        raise ValueError(f"arch: expected '3d', 'sp' or 'sp_bn', got {arch!r}")
    if fold_at is not None and not (isinstance(fold_at, int) and 1 <= fold_at <= 5):
        raise ValueError(f"fold_at: expected a stage group in 1..5 or None, got {fold_at!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width < math.inf:
        raise ValueError(f"width: expected a positive finite number, got {width!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames <= 0 or frames % 16:
        raise ValueError(
            f"frames: expected a positive multiple of 16 (four temporal pools halve the clip), got {frames!r}"
        )
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        hw = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"size: expected an int or (H, W), got {size!r}")
    if min(hw) < 16:
        raise ValueError(f"size: at least 16 pixels per side are needed for four spatial pools, got {hw}")
    return hw


def plan_stages(
    arch: str = "3d",
    fold_at: int | None = None,
    *,
    width: float = 1.0,
    frames: int = 16,
    size: int | tuple[int, int] = 112,
) -> list[Stage]:
    """The eight conv stages of a model: ``arch`` "3d" (C3D), "sp"/"sp_bn"; ``fold_at`` K → ``mcK``
    (stage groups ≥ K are 2-D convs on the folded tensor; groups < K stay ``arch``)."""
    hw = _check_args(arch, fold_at, width, frames, size)
    kind3 = "3d" if arch == "3d" else "sp"
    stages: list[Stage] = []
    c_prev, t = 3, frames
    group_last = {g: name for name, g, _ in C3D_STAGES}  # the last stage of each group wins
    for name, group, c in C3D_STAGES:
        cout_c = scale_channels(c, width)
        two_d = fold_at is not None and group >= fold_at
        kt, st, pt = C3D_POOLS[group][0][0], C3D_POOLS[group][1][0], C3D_POOLS[group][2][0]
        pool3 = C3D_POOLS[group] if name == group_last[group] else None
        if two_d:
            absorbs = pool3 is not None and kt == 2
            t_out = t // 2 if absorbs else t
            cin, cout = c_prev * t, cout_c * t_out
            pool = None if pool3 is None else tuple(v[1:] for v in pool3)
        else:
            t_out, cin, cout, pool = t, c_prev, cout_c, pool3
        if pool is None:
            hw_out, t_after = hw, t_out
        else:
            k, s, p = pool[0][-2:], pool[1][-2:], pool[2][-2:]
            hw_out = (_pool_len(hw[0], k[0], s[0], p[0]), _pool_len(hw[1], k[1], s[1], p[1]))
            t_after = t_out if two_d else _pool_len(t_out, kt, st, pt)
        stages.append(
            Stage(
                name=name,
                group=group,
                kind="2d" if two_d else kind3,
                cin=cin,
                cout=cout,
                channels=cout_c,
                t_in=t,
                t_out=t_out,
                hw=hw,
                fold_before=two_d and not (stages and stages[-1].kind == "2d"),
                pool=pool,
                hw_out=hw_out,
                t_after_pool=t_after,
            )
        )
        c_prev, t, hw = cout_c, t_after, hw_out
    return stages


def feature_dim_of(stages: list[Stage]) -> int:
    """pool5 features per clip: C5 · T5 · H5 · W5 (the folded channel count already holds T5 for mcK)."""
    last = stages[-1]
    return last.channels * last.t_after_pool * last.hw_out[0] * last.hw_out[1]


class VideoNet(nn.Module):
    """C3D-shaped video network (teacher or student).

    Input: (N, 3, T, H, W) float, T = ``frames``, (H, W) = ``size``; ``mc1`` also takes the folded
    (N, 3·T, H, W). ``forward`` returns logits (N, num_classes) when there is a head, else the
    flattened pool5 features (N, ``feature_dim``); ``features`` always returns the latter, and
    ``forward_stages`` each conv stage's output after its ReLU (before pooling): (N, C, T, H, W) for
    3-D/SP stages, folded (N, C·T, H, W) for 2-D ones.

    Attributes: ``conv1, conv2, conv3a, conv3b, conv4a, conv4b, conv5a, conv5b`` (``nn.Conv3d``,
    :class:`SPConv` or ``nn.Conv2d``), ``pool1`` … ``pool5``, ``fold`` (mcK only), and with a head
    ``fc6, fc7, fc8``. ``plan`` lists the :class:`Stage` shapes; ``config`` the create_model arguments.
    """

    def __init__(
        self,
        name: str,
        *,
        arch: str = "3d",
        fold_at: int | None = None,
        num_classes: int | None = None,
        width: float = 1.0,
        frames: int = 16,
        size: int | tuple[int, int] = 112,
        dropout: float = 0.5,
        fast: bool = True,
    ):
        super().__init__()
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0
        ):
            raise ValueError(f"num_classes: expected None or a positive int, got {num_classes!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        self.plan = plan_stages(arch, fold_at, width=width, frames=frames, size=size)
        self.config = dict(
            name=name,
            num_classes=num_classes,
            width=width,
            frames=frames,
            size=size,
            dropout=dropout,
            fast=fast,
        )
        self.name = name
        self.arch, self.fold_at = arch, fold_at
        self.frames = frames
        self.input_hw = self.plan[0].hw
        self.feature_dim = feature_dim_of(self.plan)
        self.num_classes = num_classes
        if fold_at is not None:
            self.fold = Fold()
        for st in self.plan:
            if st.kind == "3d":
                conv: nn.Module = nn.Conv3d(st.cin, st.cout, 3, padding=1)
            elif st.kind == "sp":
                conv = SPConv(st.cin, st.cout, bn=arch == "sp_bn")
            else:
                conv = nn.Conv2d(st.cin, st.cout, 3, padding=1)
            setattr(self, st.name, conv)
            if st.pool is not None:
                k, s, p = st.pool
                pool = nn.MaxPool2d(k, s, p) if st.kind == "2d" else nn.MaxPool3d(k, s, p)
                setattr(self, f"pool{st.group}", pool)
        if num_classes is not None:
            hidden = scale_channels(HEAD_HIDDEN, width)
            self.fc6 = nn.Linear(self.feature_dim, hidden)
            self.fc7 = nn.Linear(hidden, hidden)
            self.fc8 = nn.Linear(hidden, num_classes)
            self.dropout = nn.Dropout(dropout)
        self.reset_parameters()
        self.fast = False
        if fast:
            self.set_fast(True)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return STAGE_NAMES

    def reset_parameters(self) -> None:
        """He-normal convs (fan-in, ReLU gain: 8 stages without normalisation still train from random initialisation),
        zero biases; the head's linears likewise; BatchNorm to identity."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def set_fast(self, enabled: bool = True) -> VideoNet:
        """Switch between the fast execution paths and the plain layers (parameters untouched)."""
        if enabled and _fast_executor is None:
            raise RuntimeError(
                "fast=True: no fast executor is installed; build models with c3d_distill.models.create_model"
            )
        if _fast_executor is not None:
            _fast_executor.prepare(self, bool(enabled))
        self.fast = bool(enabled)
        self.config["fast"] = self.fast
        return self

    # -- forward -----------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        h, w = self.input_hw
        if x.dim() == 5 and x.shape[1] == 3 and x.shape[2] == self.frames and tuple(x.shape[3:]) == (h, w):
            return
        if (
            self.fold_at == 1
            and x.dim() == 4
            and x.shape[1] == 3 * self.frames
            and tuple(x.shape[2:]) == (h, w)
        ):
            return
        folded = f" or folded (N, {3 * self.frames}, {h}, {w})" if self.fold_at == 1 else ""
        raise ValueError(
            f"x: {self.name} expects (N, 3, {self.frames}, {h}, {w}){folded}, got shape {tuple(x.shape)}"
        )

    def _run(self, x: torch.Tensor, stages: dict[str, torch.Tensor] | None) -> torch.Tensor:
        self._check_input(x)
        if self.fast and _fast_executor is not None:
            out = _fast_executor.forward(self, x, stages)
            if out is not None:
                return out
        for st in self.plan:
            if st.fold_before and x.dim() == 5:
                x = self.fold(x)
            x = getattr(self, st.name)(x)
            if st.kind != "sp":  # SPConv ends with its own ReLU
                x = F.relu(x)
            if stages is not None:
                stages[st.name] = x
            if st.pool is not None:
                x = getattr(self, f"pool{st.group}")(x)
        return x.flatten(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened pool5 features (N, feature_dim)."""
        return self._run(x, None)

    def forward_stages(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Each conv stage's output after its ReLU, before pooling, keyed conv1 … conv5b, in order."""
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._run(x, out)
        return out

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        """fc6 → ReLU → dropout → fc7 → ReLU → dropout → fc8: (N, feature_dim) → (N, num_classes)."""
        if self.num_classes is None:
            raise RuntimeError(f"{self.name} was built without a head (num_classes=None)")
        x = self.dropout(F.relu(self.fc6(feats)))
        x = self.dropout(F.relu(self.fc7(x)))
        return self.fc8(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.features(x)
        return feats if self.num_classes is None else self.head(feats)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, feature_dim={self.feature_dim}, frames={self.frames}, fast={self.fast}"

    def plan_dicts(self) -> list[dict]:
        return [asdict(s) for s in self.plan]
