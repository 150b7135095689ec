"""The run folder: what a run writes there, the checks before it writes, and its metrics log.

    RUN_DIR/config.json      the RunConfig
    RUN_DIR/checkpoint.pt    last finished epoch (atomic; see checkpoint.py)
    RUN_DIR/metrics.jsonl    one row per (epoch, split): loss parts, accuracies, clips/s, lr, time
    RUN_DIR/eval.json        final evaluation (clip and video accuracy, feature error, params, GMACs)
    RUN_DIR/transfer.json    distillation with --init transfer: the per-layer transfer report
    RUN_DIR/tb/              TensorBoard events, when tensorboard is installed
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .checkpoint import CHECKPOINT_NAME

# What a run writes into its folder; a fresh start removes the ones a previous run left.
RUN_FILES = (CHECKPOINT_NAME, "config.json", "metrics.jsonl", "eval.json", "transfer.json")


def check_out_folder(out: Path, *, resume: bool, overwrite: bool, force_resume: bool = False) -> None:
    """Refuse to start a run in a folder that already holds one, unless told to continue it (``resume``)
    or to replace it (``overwrite``). Reads only: nothing is written or removed here."""
    if (resume or force_resume) and overwrite:
        flag = "--force-resume" if force_resume else "--resume"
        raise ValueError(f"{flag} and --overwrite: choose one (continue the run in --out, or start it again)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    held = [n for n in (CHECKPOINT_NAME, "config.json") if (out / n).exists()]
    if held and not resume and not overwrite:
        raise ValueError(
            f"--out {out}: already holds a run ({', '.join(held)}); pass --resume to continue it, "
            "--overwrite to replace it, or choose another folder"
        )


def prepare_out_folder(out: Path, *, fresh: bool) -> None:
    """Create the run folder; on a fresh start remove what an earlier run left there (its checkpoint,
    metrics, final evaluation, transfer report, TensorBoard log), so nothing stale survives."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    if not fresh:
        return
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    if (out / "tb").is_dir():
        shutil.rmtree(out / "tb")


class MetricsLog:
    """``metrics.jsonl`` (rank 0) plus TensorBoard when installed. Rows are also kept for checkpoints, so a
    resumed run rewrites the file from its checkpoint and never holds rows of an epoch it redoes."""

    def __init__(self, out: Path, rows: list[dict] | None, enabled: bool):
        self.path = out / "metrics.jsonl"
        self.rows = list(rows or [])
        self.enabled = enabled
        self.tb = None
        if enabled:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
            except ImportError:
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(str(out / "tb"))

    def add(self, row: dict) -> None:
        row = {k: (float(v) if isinstance(v, (np.floating,)) else v) for k, v in row.items()}
        self.rows.append(row)
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("epoch",):
                    self.tb.add_scalar(f"{row['split']}/{k}", v, row["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

