"""A small model registry: one decorator registers a builder under its name. It knows no model: the zoo
registers them, and :mod:`.factory` builds them."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: ``@register_model("c3d")`` over a builder ``fn(**kwargs) -> nn.Module``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = fn
        return fn

    return wrap


def builders() -> dict[str, Callable[..., nn.Module]]:
    """The registered builders by name, in registration order (a copy)."""
    return dict(_BUILDERS)
