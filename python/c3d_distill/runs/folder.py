"""The run folder: what a run writes there, the checks before it writes, and its metrics log.

    RUN_DIR/config.json      the RunConfig
    RUN_DIR/checkpoint.pt    last finished epoch (atomic; see checkpoint.py)
    RUN_DIR/metrics.jsonl    one row per (epoch, split): loss parts, accuracies, clips/s, lr, time
    RUN_DIR/eval.json        final evaluation (clip and video accuracy, feature error, params, GMACs)
    RUN_DIR/transfer.json    distillation with --init transfer: the per-layer transfer report
    RUN_DIR/tensorboard/     TensorBoard scalars (losses, accuracies, lr, epoch time) unless --no-tensorboard
    RUN_DIR/run.lock         held while a run writes here (pid and host inside); removed at the end
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

import numpy as np

from .checkpoint import CHECKPOINT_NAME

# What a run writes into its folder; a fresh start removes the ones a previous run left.
RUN_FILES = (CHECKPOINT_NAME, "config.json", "metrics.jsonl", "eval.json", "transfer.json")
LOCK_NAME = "run.lock"
TENSORBOARD_DIR = "tensorboard"


class RunLock:
    """One run at a time in a run folder: an exclusive ``fcntl.flock`` on ``RUN_DIR/run.lock``, which also
    holds the owner's pid, host and start time for the message a second run gets. The OS drops the lock
    when its process dies however it dies (SIGKILL included), so a lock file left behind by a dead run is
    no obstacle: the next run takes it and says so. Where the file system has no locks (``flock`` fails
    with ENOLCK/ENOTSUP, some network mounts), the pid in the file decides: alive on this host, refused.

    ``acquire`` creates the folder when needed; ``release`` removes the lock file and any folder it
    created that is still empty, so a run refused by its checks leaves nothing behind."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self.fd: int | None = None
        self.created: list[Path] = []

    @classmethod
    def acquire(cls, out: Path) -> RunLock:
        lock = cls(out)
        lock._acquire()
        return lock

    def _acquire(self) -> None:
        from ..log import notice

        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"--out {self.out}: exists and is not a folder")
        missing = [p for p in (self.out, *self.out.parents) if not p.exists()]
        self.out.mkdir(parents=True, exist_ok=True)
        self.created = missing  # innermost first
        try:
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked = True
                except BlockingIOError:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise ValueError(
                        f"--out {self.out}: another run is using this folder ({_describe(holder)}, holds "
                        f"{self.path}); wait for it to end or choose another --out"
                    ) from None
                except OSError as exc:
                    if exc.errno not in (errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP):
                        os.close(fd)
                        raise
                    locked = False  # no locks on this file system: the pid in the file decides
                # A run that ended removed the file after we opened it: lock the new file instead.
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            holder = _read_holder(fd)
            if holder:
                alive = holder.get("host") == socket.gethostname() and _pid_alive(holder.get("pid"))
                if not locked and alive and holder.get("pid") != os.getpid():
                    os.close(fd)
                    raise ValueError(
                        f"--out {self.out}: another run is using this folder ({_describe(holder)}, named in "
                        f"{self.path}; this file system has no locks); wait for it to end or choose another "
                        "--out"
                    )
                notice(f"--out {self.out}: took over the lock of a run that is no longer running "
                       f"({_describe(holder)})")
            me = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
            self.fd = fd
        except BaseException:
            self._remove_created()
            raise

    def release(self) -> None:
        """Remove the lock file and unlock (idempotent); then the folders ``acquire`` created, if empty."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # before unlocking: a waiting run then locks a new file
        finally:
            os.close(self.fd)  # closing drops the flock
            self.fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        for p in self.created:
            try:
                p.rmdir()
            except OSError:  # not empty (the run wrote there) or already gone
                break
        self.created = []

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        d = json.loads(text) if text else {}
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "pid unknown"
    s = f"pid {holder.get('pid')} on host {holder.get('host')}"
    return s + (f", started {holder['started']}" if holder.get("started") else "")


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


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
    for d in ("tb", TENSORBOARD_DIR):  # tb/: where earlier versions wrote TensorBoard events
        if (out / d).is_dir():
            shutil.rmtree(out / d)


class MetricsLog:
    """``metrics.jsonl`` (rank 0) plus TensorBoard scalars in ``RUN_DIR/tensorboard/`` (``tensorboard``:
    every numeric field of a row as ``split/field`` at its epoch: train loss and lr, test accuracy, epoch
    time …). Rows are also kept for checkpoints, so a resumed run rewrites the file from its checkpoint and
    never holds rows of an epoch it redoes; TensorBoard drops the events of those epochs too
    (``purge_step``)."""

    def __init__(self, out: Path, rows: list[dict] | None, enabled: bool, tensorboard: bool = True):
        self.path = out / "metrics.jsonl"
        self.rows = list(rows or [])
        self.enabled = enabled
        self.tb = None
        if enabled:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
            if tensorboard:
                self.tb = _summary_writer(out / TENSORBOARD_DIR, max((r["epoch"] for r in self.rows), default=0))

    def add(self, row: dict) -> None:
        row = {k: (float(v) if isinstance(v, (np.floating,)) else v) for k, v in row.items()}
        self.rows.append(row)
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
                    self.tb.add_scalar(f"{row['split']}/{k}", v, row["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _summary_writer(folder: Path, done_epochs: int):
    """torch's ``SummaryWriter`` (it needs the ``tensorboard`` package, a dependency of c3d-distill; an
    installation without it warns once and runs on without the events). A resumed run purges the events
    of the epochs after its checkpoint, which the interrupted run may have written."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        from ..log import warn

        warn(f"TensorBoard: not written ({exc}; `pip install tensorboard`, or pass --no-tensorboard)")
        return None
    return SummaryWriter(str(folder), purge_step=done_epochs + 1 if done_epochs else None)
