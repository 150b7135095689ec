"""Helpers shared by the benchmarks that record which build they measured."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path


def native_module() -> dict:
    """Which build of the native module was measured: its file, sha256 prefix and modification time."""
    from c3d_distill import _native

    path = Path(_native.__file__)
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
            "mtime_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))}
