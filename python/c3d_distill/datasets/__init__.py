"""Labelled video lists for the clip loader: UCF101 and HMDB51 as published, plain ``path label`` lists,
and the synthetic action set (the embedded default for the demo and the tests).

    >>> train = load("ucf101:/data/UCF-101:1", "train")     # fold 1; the lists beside or inside the folder
    >>> loader = ClipLoader(train.items, clip_len=16)        # items: (absolute path, 0-based label)

Specs: ``ucf101:ROOT[:FOLD]``, ``hmdb51:ROOT[:FOLD]``, ``list:FILE``, ``synth:DIR`` (a set made by
:func:`make_synthetic`; the same as ``ucf101:DIR``). FOLD is 1–3, default 1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .base import DatasetError, VideoList
from .hmdb51 import load_hmdb51
from .listfile import load_list
from .scenes import CLASSES as SYNTH_CLASSES
from .scenes import REVERSE_PAIRS
from .synth import make_synthetic
from .ucf101 import load_ucf101

__all__ = [
    "is_list_spec",
    "split_of",
    "REVERSE_PAIRS",
    "SPEC_HELP",
    "SYNTH_CLASSES",
    "DatasetError",
    "VideoList",
    "load",
    "load_hmdb51",
    "load_list",
    "load_ucf101",
    "make_synthetic",
    "parse_spec",
]

KINDS = ("ucf101", "hmdb51", "list", "synth")
# How every command that takes a data set describes ``--data``.
SPEC_HELP = (
    "data set: ucf101:ROOT[:FOLD], hmdb51:ROOT[:FOLD], synth:DIR[:FOLD] (FOLD 1-3, default 1; the split "
    "within the fold is chosen separately) or list:FILE ('path label' lines: one split)"
)
_FOLD_SUFFIX = re.compile(r"^(?P<path>.+):(?P<fold>[0-9]+)$")


def is_list_spec(spec: str | None) -> bool:
    """True for a ``list:FILE`` spec: one split, no train/test parts."""
    return bool(spec) and str(spec).startswith("list:")


def split_of(spec: str | None, split: str | None, option: str, default: str | None) -> str | None:
    """The split ``option`` names for ``spec`` (``default`` when not given). A ``list:`` spec is one split:
    naming one is a ValueError that says how to give test videos instead."""
    if split is not None and is_list_spec(spec):
        raise ValueError(
            f"{option} {split}: {spec} is one split (a list file has no train/test parts); give the test "
            "videos as their own list with --test-data list:FILE"
        )
    return default if split is None else split


def parse_spec(spec: str) -> tuple[str, str, int]:
    """``"kind:PATH[:FOLD]"`` → ``(kind, path, fold)``. The fold is the trailing ``:digits``, so paths
    with colons in them still work; ``list:`` takes no fold."""
    kind, sep, rest = str(spec).partition(":")
    if not sep or kind not in KINDS or not rest:
        raise DatasetError(f"spec {spec!r}", [f"expected one of {', '.join(k + ':PATH' for k in KINDS)} "
                                              "(ucf101/hmdb51/synth take an optional ':FOLD', 1-3)"])
    if kind == "list":
        return kind, rest, 1
    m = _FOLD_SUFFIX.match(rest)
    if m and not Path(rest).exists():
        return kind, m["path"], int(m["fold"])
    return kind, rest, 1


def load(spec: str, split: str = "train", *, lists: str | Path | None = None) -> VideoList:
    """The videos of ``split`` (``"train"`` or ``"test"``; HMDB51 also ``"unused"``) named by ``spec``.

    ``lists``: where the split lists are when they are neither inside the video folder nor beside it.
    A ``list:`` spec is itself one split: ``split`` is not used. Raises :class:`DatasetError` listing
    every problem found."""
    kind, path, fold = parse_spec(spec)
    if kind == "ucf101":
        return load_ucf101(path, fold, split, lists=lists)
    if kind == "hmdb51":
        return load_hmdb51(path, fold, split, lists=lists)
    if kind == "list":
        return load_list(path)
    manifest = Path(path) / "synth.json"
    why = "missing or marks an unfinished set"
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        complete = isinstance(doc, dict) and doc.get("complete", False)
    except FileNotFoundError:
        complete = False
    except (OSError, ValueError) as exc:
        complete, why = False, f"unreadable ({type(exc).__name__}: {exc})"
    if not complete:
        raise DatasetError(f"synth:{path}", [
            f"{manifest}: {why}; make it with make_synthetic() or `c3d-distill data synth {path}` (it "
            f"resumes; --force replaces a damaged set), or read another layout with ucf101:{path}"])
    return load_ucf101(path, fold, split, lists=lists)
