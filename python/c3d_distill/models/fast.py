"""Fast execution paths (see apply_fast)."""

from __future__ import annotations

import torch.nn as nn


def apply_fast(model: nn.Module, enabled: bool) -> None:
    """Placeholder until the fast paths land: the plain layers are used either way."""
    return None
