"""Resuming a run: which settings may change, the ``--init`` path it keeps, and the checks that the
checkpoint was trained with the same settings and inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..log import notice, warn
from ..runs.config import INITS, RunConfig

# Settings that may change between a run and its resumption without changing what it computes. The data
# and teacher paths may change (a moved data set); what they hold is compared by fingerprint instead.
RESUMABLE_CHANGES = {
    "device", "progress", "threads", "prefetch", "out", "extra", "teacher", "data", "test_data",
    "on_error",  # a run stopped by a corrupt video continues with --on-error skip
    "teacher_cache_mb",  # cached outputs are bit-identical to computed ones
    "tensorboard",
    "recipe",  # a name only: the values it filled are compared field by field
}



def settle_init_path(cfg: RunConfig, resumed: RunConfig | None) -> None:
    """``--init FILE`` (or run folder) is recorded as an absolute path. A resumed run keeps the path it was
    started with: the file is not read again (the checkpoint holds the weights), so a path given from
    another working directory, or a file since moved, is no reason to refuse it."""
    if cfg.init in INITS:
        return
    if resumed is not None and resumed.init not in INITS:
        if os.path.abspath(cfg.init) != os.path.abspath(resumed.init) and os.environ.get("RANK", "0") == "0":
            notice(f"--resume: --init {cfg.init}: the run started from {resumed.init}; it continues from its "
                  "checkpoint (the file is not read again)")
        cfg.init = resumed.init
    else:
        cfg.init = os.path.abspath(cfg.init)


def check_resume_config(old: RunConfig, new: RunConfig, src: Path) -> None:
    a, b = old.to_dict(), new.to_dict()
    diffs = [f"{k}: {a[k]!r} → {b[k]!r}" for k in a if k not in RESUMABLE_CHANGES and a[k] != b.get(k)]
    if diffs:
        raise ValueError(
            f"--resume: {src} was started with other settings; resuming would not give the same "
            f"run ({'; '.join(diffs)}). Start a new --out folder instead."
        )


INPUT_NAMES = {"train_data": "training videos", "test_data": "test videos", "teacher": "teacher weights"}


def _describe_input(key: str, fp: dict[str, Any] | None) -> str:
    if not fp:
        return "none"
    sha = str(fp.get("sha256", ""))[:12]
    if key == "teacher":
        return f"{fp.get('path')} (epoch {fp.get('epoch')}, sha256 {sha}…)"
    return f"{fp.get('videos')} videos, {fp.get('classes')} classes (sha256 {sha}…)"


def check_resume_inputs(old: dict[str, Any] | None, new: dict[str, Any], src: Path, *, force: bool) -> None:
    """The data and teacher a checkpoint was trained with against this run's, by fingerprint: resuming
    with others would silently mix two runs. ``force`` (``--force-resume``) continues anyway, with a warning."""
    if not old:
        notice(f"--resume: {src} records no data or teacher fingerprints (an older checkpoint); not checked")
        return
    diffs = [
        f"{what}: checkpoint {_describe_input(k, old.get(k))}, now {_describe_input(k, new.get(k))}"
        for k, what in INPUT_NAMES.items()
        if (old.get(k) or {}).get("sha256") != (new.get(k) or {}).get("sha256")
    ]
    if not diffs:
        return
    if not force:
        raise ValueError(
            f"--resume: {src} was trained on other inputs; resuming would mix two runs ({'; '.join(diffs)}). "
            "Pass --force-resume to continue it anyway, or start a new --out folder."
        )
    warn(f"--force-resume: {src} was trained on other inputs, continuing anyway ({'; '.join(diffs)})")

