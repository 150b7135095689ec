"""Helpers shared by the benchmarks: which build they measured, and results without machine paths."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def native_module() -> dict:
    """Which build of the native module was measured: its file, sha256 prefix and modification time."""
    from c3d_distill import _native

    path = Path(_native.__file__)
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
            "mtime_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))}


def _prefixes() -> list[tuple[str, str]]:
    """(absolute prefix, what it becomes), longest first: the repository → relative, $OUT, the temp
    folder and the home folder → their variable."""
    pairs = [(str(ROOT) + "/", "")]
    if os.environ.get("OUT"):
        pairs.append((str(Path(os.environ["OUT"]).resolve()) + "/", "$OUT/"))
    pairs += [(str(Path(tempfile.gettempdir()).resolve()) + "/", "$TMPDIR/"), (str(Path.home()) + "/", "~/")]
    return sorted(pairs, key=lambda p: -len(p[0]))


def portable(value):
    """``value`` (JSON-like) with every absolute path under the repository made relative to it, and
    paths under $OUT, the temp folder or the home folder written with that variable, so a result
    records no machine's layout."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str) and "/" in value:
        for prefix, repl in _prefixes():
            # the prefix itself, or the folder it names, at the start of a word
            value = re.sub(r"(?<![\w.])" + re.escape(prefix[:-1]) + r"(/|(?=[\s\"':,]|$))",
                           lambda m, r=repl: r if m.group(1) else (r.rstrip("/") or "."), value)
    return value


def write_json(path: Path, result, indent: int = 1) -> None:
    """Write a benchmark's result as JSON with ``portable`` paths."""
    Path(path).write_text(json.dumps(portable(result), indent=indent, default=str) + "\n")
