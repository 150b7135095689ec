"""Checkpoints: written atomically (temp file, fsync, ``os.replace``), read with ``weights_only=True``.

A checkpoint is a plain dict of tensors and Python scalars/containers::

    {"format": "c3d-distill/1", "model": state_dict, "model_meta": {name, num_classes, width, frames,
     size, dropout}, "optimizer": state_dict, "scheduler": {"step": int}, "epoch": completed epochs,
     "config": RunConfig dict, "metrics": [metrics rows], "rng": {...}}

A crash at any moment leaves either the previous checkpoint or the new one, never a torn file: the
new bytes go to a temp file in the same folder and replace the old name in one rename.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "c3d-distill/1"
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, truncated, unsafe, or for another model."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (disk full, file too large, no permission); the file it was
    to replace is untouched. ``errno`` is the cause's."""


def save_checkpoint(
    state: dict[str, Any], path: str | os.PathLike, *, previous_epoch: int | None = None
) -> Path:
    """Write ``state`` to ``path`` atomically and durably; returns the path.

    A write that fails (``ENOSPC``, ``EFBIG``, …) removes its temp file and raises
    :class:`CheckpointWriteError` naming the file, the cause, and whether the checkpoint already there
    (``previous_epoch``, when the caller knows it) is kept — it always is, the rename never happened."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        cause = _os_error(exc)
        if cause is None:
            raise
        if path.exists():
            kept = "the previous checkpoint" + (f" (epoch {previous_epoch})" if previous_epoch else "")
            kept += " is kept, unchanged"
        else:
            kept = "there was no earlier checkpoint there"
        what = f"epoch {state['epoch']}" if isinstance(state.get("epoch"), int) else "the checkpoint"
        err = CheckpointWriteError(f"{path}: could not write {what} ({cause.strerror or cause}); {kept}")
        err.errno = cause.errno
        raise err from exc
    # The rename itself must reach the disk too, or a power cut could bring back the old name.
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind a failed write: ``exc`` itself, or the one torch's C++ writer turned into a
    RuntimeError ("unexpected pos …"), which stays reachable as its context."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run folder means its ``checkpoint.pt``; a file is taken as is."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
        if not p.exists():
            raise FileNotFoundError(
                f"{path}: run folder has no {CHECKPOINT_NAME} (has the run finished an epoch?)"
            )
    elif not p.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file or run folder")
    return p


def _check_magic(p: Path) -> None:
    """A file ``torch.save`` cannot have written (its zip archive, or a legacy pickle: protocol 2+ starts
    with byte 0x80) is named as such, instead of with the unpickler's message about an invalid load key
    and its advice to retry with ``weights_only=False``."""
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except IsADirectoryError:
        return  # resolve_checkpoint gives files; a folder here fails in torch.load with its own message
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return
    if not head:
        raise CheckpointError(f"{p}: an empty file, not a checkpoint (truncated?)")
    text = head.lstrip()[:1] in (b"{", b"[", b"#", b"<") or head.isascii() and head.decode("ascii").isprintable()
    raise CheckpointError(
        f"{p}: not a PyTorch checkpoint (it starts with {head!r}{', text' if text else ''}; torch.save writes "
        "a zip archive)"
    )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint or plain state dict with ``weights_only=True``.

    Raises ``FileNotFoundError`` for a missing path and ``CheckpointError`` (naming the file and the cause)
    for a truncated or corrupt file or one holding objects other than tensors and plain containers —
    such a pickle is refused before any of its code can run.
    """
    p = resolve_checkpoint(path)
    _check_magic(p)
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only's unpickler raises this for any global outside the tensor allow-list.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p}: refused to load — it holds objects other than tensors and plain "
            f"containers (loaded with weights_only=True; not trusted): {first}"
        ) from exc
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - a torn file fails in many ways (EOF, zip, KeyError in the memo)
        size = p.stat().st_size if p.exists() else 0
        raise CheckpointError(
            f"{p}: not a readable checkpoint ({size} bytes; truncated or corrupt?): "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{p}: expected a dict (a checkpoint or state dict), found {type(obj).__name__}"
        )
    return obj


def model_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights of a c3d-distill checkpoint, or the dict itself when it is a bare state dict."""
    if ckpt.get("format") == FORMAT:
        return ckpt["model"]
    if all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt
    raise CheckpointError(
        "not a c3d-distill checkpoint and not a plain state dict "
        f"(top-level keys: {', '.join(sorted(map(str, ckpt))[:8])})"
    )


def check_compatible(ckpt: dict[str, Any], expected: dict[str, Any], *, source: str = "checkpoint") -> None:
    """Compare the checkpoint's ``model_meta`` with the model about to receive it; name every difference."""
    meta = ckpt.get("model_meta")
    if meta is None:
        return
    diffs = [
        f"{k}: checkpoint has {meta.get(k)!r}, this run wants {expected[k]!r}"
        for k in ("name", "num_classes", "width", "frames", "size")
        if k in expected and meta.get(k) != expected[k]
    ]
    if diffs:
        raise CheckpointError(f"{source} is for another model — " + "; ".join(diffs))


def load_weights(
    model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str = "checkpoint"
) -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(
                f"shape mismatch (checkpoint vs model) for {len(shapes)} keys: {', '.join(shapes[:6])}"
            )
        if missing:
            parts.append(f"missing {len(missing)} keys: {', '.join(missing[:6])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {', '.join(unexpected[:6])}")
        raise CheckpointError(
            f"{source} does not fit this model ({type(model).__name__}): " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and bytes: the identity of a set of weights (a
    distilled run records its teacher's, so ``--resume`` notices another teacher at the same path)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k]
        if not isinstance(t, torch.Tensor):
            h.update(f"{k}={t!r};".encode())
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def rng_state() -> dict[str, Any]:
    """Every random generator a training step touches (dropout and shuffles), as weights_only-safe values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
