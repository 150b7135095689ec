"""What every data set loader shares: the result (VideoList), the error (DatasetError), reading list files
(UTF-8, any line ending), and a cheap file-existence check."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class DatasetError(ValueError):
    """Everything wrong with a data set, found in one pass: ``.problems`` lists every problem (the message
    shows the first ``SHOWN``), ``.source`` names what was being loaded."""

    SHOWN = 40

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        n = len(self.problems)
        lines = [f"{source}: {n} problem{'s' if n != 1 else ''}"]
        lines += [f"  - {p}" for p in self.problems[: self.SHOWN]]
        if n > self.SHOWN:
            lines.append(f"  … and {n - self.SHOWN} more (all of them are in .problems)")
        super().__init__("\n".join(lines))


@dataclass
class VideoList:
    """A labelled list of videos, ready for ``ClipLoader(video_list.items, ...)``.

    ``items``: ``(absolute path, label)`` with labels 0-based indices into ``classes``. ``name`` (e.g.
    ``"ucf101 fold 1 train"``) and ``root`` describe where it came from; they do not take part in ``==``,
    so the same videos and classes read through two specs compare equal."""

    items: list[tuple[str, int]]
    classes: list[str]
    name: str = field(default="", compare=False)
    root: str | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self.items)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.items[i]

    @property
    def paths(self) -> list[str]:
        return [p for p, _ in self.items]

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.items]

    def counts(self) -> list[int]:
        """Videos per class, in ``classes`` order."""
        out = [0] * len(self.classes)
        for _, label in self.items:
            out[label] += 1
        return out

    def fingerprint(self) -> dict[str, object]:
        """What identifies these videos, independent of where the data set lies: ``{"videos", "classes",
        "sha256"}``, the hash over the class names and the sorted ``(path relative to root, label)`` pairs.
        A run stores its data's fingerprints, so ``--resume`` notices another data set (a moved one is the
        same) and ``eval`` notices the videos a model was trained on."""
        h = hashlib.sha256()
        h.update(json.dumps(list(self.classes)).encode())
        rel = sorted(self._key(p) + "\t" + str(label) for p, label in self.items)
        h.update("\n".join(rel).encode())
        return {"videos": len(self.items), "classes": len(self.classes), "sha256": h.hexdigest()}

    def video_hashes(self, absolute: bool = False) -> list[str]:
        """One short hash (16 hex digits) per video, sorted and without repeats: compact enough to store in
        a checkpoint, so ``eval`` can count the test videos that were training videos (another fold's test
        split shares many with this fold's training split). Of its path as :meth:`fingerprint` names it
        (a moved data set keeps its hashes), or with ``absolute`` of its absolute path (two lists in
        different folders naming the same files)."""
        return sorted({_short_hash(self._path_key(p, absolute)) for p, _ in self.items})

    def video_hash_pairs(self) -> list[tuple[str, str]]:
        """Per video (in order), its :meth:`video_hashes` by name and by absolute path."""
        return [(_short_hash(self._key(p)), _short_hash(self._path_key(p, True))) for p, _ in self.items]

    def _path_key(self, path: str, absolute: bool) -> str:
        return os.path.abspath(path).replace(os.sep, "/") if absolute else self._key(path)

    def _key(self, path: str) -> str:
        """A video's path as fingerprints name it: relative to ``root`` for a file under it (a moved data set
        keeps its names), absolute otherwise (a list may name files anywhere; ``../`` paths would make two
        unrelated files the same)."""
        p = os.path.abspath(path)
        if self.root:
            root = os.path.abspath(self.root)
            try:
                under = os.path.commonpath([p, root]) == root
            except ValueError:  # another drive
                under = False
            if under:
                p = os.path.relpath(p, root)
        return p.replace(os.sep, "/")

    def __repr__(self) -> str:
        return f"VideoList({self.name or 'videos'}: {len(self.items)} videos, {len(self.classes)} classes)"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_lines(path: Path, problems: list[str]) -> list[tuple[int, str]]:
    """The non-blank lines of a text list as ``(line number, stripped text)``. UTF-8 (a BOM is dropped),
    ``\\n``, ``\\r\\n`` or ``\\r`` line ends. A file that cannot be read or is not UTF-8 adds a problem and
    gives no lines."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{path}: list file not found")
        return []
    except OSError as exc:
        problems.append(f"{path}: cannot read ({exc.strerror or exc})")
        return []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.append(f"{path}: line {line}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})")
        return []
    return [(i, s.strip()) for i, s in enumerate(text.splitlines(), start=1) if s.strip()]


class FileIndex:
    """Existence checks by listing each folder once (one ``scandir`` per class folder instead of a ``stat``
    per video, which matters on network file systems), with a case-insensitive fallback: UCF101's own
    lists say ``HandstandPushups/v_HandStandPushups_g01_c01.avi`` for files named
    ``v_HandStandPushups_…`` in some copies and ``v_HandstandPushups_…`` in others."""

    def __init__(self) -> None:
        self._dirs: dict[str, tuple[set[str], dict[str, list[str]]] | None] = {}

    def _listing(self, folder: str):
        if folder not in self._dirs:
            try:
                with os.scandir(folder) as it:
                    names = {e.name for e in it}
            except OSError:
                self._dirs[folder] = None
            else:
                lower: dict[str, list[str]] = {}
                for n in names:
                    lower.setdefault(n.lower(), []).append(n)
                self._dirs[folder] = (names, lower)
        return self._dirs[folder]

    def find(self, base: Path, rel: Path) -> Path | None:
        """``base / rel`` as it exists on disk, each part of ``rel`` matched exactly, else by its one
        case-insensitive match; None when missing. ``base`` itself is taken as given (an absolute ``rel``
        replaces it)."""
        if rel.is_absolute():
            base, rel = Path(rel.anchor), rel.relative_to(rel.anchor)
        here = base
        for part in rel.parts:
            if part in (".", ""):
                continue
            if part == "..":
                here = here.parent
                continue
            listing = self._listing(str(here))
            if listing is None:
                return None
            names, lower = listing
            if part in names:
                here = here / part
                continue
            matches = lower.get(part.lower(), [])
            if len(matches) != 1:
                return None
            here = here / matches[0]
        return here


def relative_path(text: str) -> Path:
    """A path as written in a list: ``/`` or ``\\`` separated (lists made on Windows use ``\\``)."""
    return Path(text.replace("\\", "/"))
