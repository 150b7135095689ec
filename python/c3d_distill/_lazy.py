"""Module-level ``__getattr__`` for packages whose public names import torch: the command line reads
their ``cli.py`` without paying seconds for it (PEP 562)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """``__getattr__`` for ``package``: name → the submodule (relative, e.g. ``".engine"``) holding it."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    return __getattr__
