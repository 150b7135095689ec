"""The registered models: the C3D teacher and its SP / MC students."""

from __future__ import annotations

from .net import VideoNet
from .registry import register_model


@register_model("c3d")
def c3d(**kwargs) -> VideoNet:
    """The teacher: eight 3×3×3 convs, backbone 27,655,936 parameters."""
    return VideoNet("c3d", arch="3d", **kwargs)


@register_model("sp")
def sp(**kwargs) -> VideoNet:
    """Every 3×3×3 conv split into (1,3,3) then (3,1,1), ReLU after each: 12,823,616 parameters."""
    return VideoNet("sp", arch="sp", **kwargs)


@register_model("sp_bn")
def sp_bn(**kwargs) -> VideoNet:
    """``sp`` with BatchNorm3d after each of the two convs (the second SP version)."""
    return VideoNet("sp_bn", arch="sp_bn", **kwargs)


def _mc_builder(k: int):
    def build(**kwargs) -> VideoNet:
        return VideoNet(f"mc{k}", arch="3d", fold_at=k, **kwargs)

    build.__name__ = f"mc{k}"
    build.__doc__ = f"3-D up to pool{k - 1}, then time folded into channels and 2-D convs from conv{k} on."
    return build


for _k in range(1, 6):
    register_model(f"mc{_k}")(_mc_builder(_k))
