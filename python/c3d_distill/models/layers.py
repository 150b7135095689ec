"""Reusable blocks: the time fold and the (2+1)D "SP" convolution."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def fold(x: torch.Tensor) -> torch.Tensor:
    """Fold time into channels: (N, C, T, H, W) → (N, C·T, H, W), channel ``c·T + t``.

    A view (no copy) when ``x`` is contiguous; otherwise a copy (``reshape`` semantics).
    """
    if x.dim() != 5:
        raise ValueError(f"fold: expected a 5-D tensor (N, C, T, H, W), got shape {tuple(x.shape)}")
    n, c, t, h, w = x.shape
    return x.reshape(n, c * t, h, w)


def unfold(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Inverse of :func:`fold`: (N, C·T, H, W) → (N, C, T, H, W) with T = ``frames``."""
    if x.dim() != 4:
        raise ValueError(f"unfold: expected a 4-D tensor (N, C·T, H, W), got shape {tuple(x.shape)}")
    n, ct, h, w = x.shape
    if frames <= 0 or ct % frames:
        raise ValueError(f"unfold: frames={frames} does not divide the {ct} channels")
    return x.reshape(n, ct // frames, frames, h, w)


class Fold(nn.Module):
    """Module form of :func:`fold` (no parameters), so model printouts and hooks show where time folds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(x)


class SPConv(nn.Module):
    """A 3×3×3 conv Cin→Cout split into space then time (the "SP" student).

    ``spatial``: Conv3d(Cin, Cout, (1,3,3), padding (0,1,1)), [BatchNorm3d], ReLU;
    ``temporal``: Conv3d(Cout, Cout, (3,1,1), padding (1,0,0)), [BatchNorm3d], ReLU.
    Input (N, Cin, T, H, W) → output (N, Cout, T, H, W), after the second ReLU.
    """

    def __init__(self, cin: int, cout: int, *, bn: bool = False):
        super().__init__()
        self.spatial = nn.Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1))
        self.spatial_bn = nn.BatchNorm3d(cout) if bn else None
        self.temporal = nn.Conv3d(cout, cout, (3, 1, 1), padding=(1, 0, 0))
        self.temporal_bn = nn.BatchNorm3d(cout) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.spatial(x)
        if self.spatial_bn is not None:
            x = self.spatial_bn(x)
        x = F.relu(x)
        x = self.temporal(x)
        if self.temporal_bn is not None:
            x = self.temporal_bn(x)
        return F.relu(x)
