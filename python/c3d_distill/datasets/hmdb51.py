"""HMDB51 as distributed (Kuehne et al. 2011, https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/)::

    hmdb51/<class>/<name>.avi
    testTrainMulti_7030_splits/<class>_test_split<N>.txt     "<name>.avi 1"   1 train, 2 test, 0 unused

Three folds (N = 1, 2, 3); 70 train / 30 test videos per class and fold. Class names come from the split
file names; labels are their positions in sorted order (the order everybody uses). The split lists may
sit inside the video folder, beside it, or anywhere (``lists=``)."""

from __future__ import annotations

import re
from pathlib import Path

from .base import DatasetError, FileIndex, VideoList, read_lines, relative_path

LISTS_DIR = "testTrainMulti_7030_splits"
FOLDS = (1, 2, 3)
SPLIT_IDS = {"train": 1, "test": 2, "unused": 0}
_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<fold>[1-9])\.txt$")


def _split_files(folder: Path) -> dict[int, dict[str, Path]]:
    out: dict[int, dict[str, Path]] = {}
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return out
    for name in names:
        m = _SPLIT_FILE.match(name)
        if m:
            out.setdefault(int(m["fold"]), {})[m["cls"]] = folder / name
    return out


def find_lists(root: Path, lists: str | Path | None = None) -> tuple[Path | None, list[Path]]:
    """The folder holding the ``<class>_test_split<N>.txt`` files, and the places looked at."""
    candidates = [Path(lists)] if lists is not None else [root / LISTS_DIR, root, root.parent / LISTS_DIR]
    for c in candidates:
        if c.is_dir() and _split_files(c):
            return c, candidates
    return None, candidates


def load_hmdb51(root: str | Path, fold: int = 1, split: str = "train", *,
                lists: str | Path | None = None) -> VideoList:
    """Read fold ``fold`` (1–3), ``split`` ``"train"``, ``"test"`` or ``"unused"``, of an HMDB51-shaped
    folder.

    Raises :class:`DatasetError` listing every problem: classes missing a split file for this fold (or
    a folder), malformed lines, split ids other than 0/1/2, duplicate entries, missing files, classes
    without a video in this split."""
    root = Path(root)
    source = f"hmdb51:{root}:{fold} ({split})"
    if split not in SPLIT_IDS:
        raise DatasetError(source, [f"split={split!r}: must be one of {', '.join(SPLIT_IDS)}"])
    if fold not in FOLDS:
        raise DatasetError(source, [f"fold={fold!r}: HMDB51 has folds {FOLDS}"])
    if not root.is_dir():
        raise DatasetError(source, [f"{root}: video folder not found"])
    lists_dir, looked = find_lists(root, lists)
    if lists_dir is None:
        raise DatasetError(source, ["no '<class>_test_split<N>.txt' files found; looked in "
                                    + ", ".join(map(str, looked))])
    problems: list[str] = []
    by_fold = _split_files(lists_dir)
    classes = sorted(set().union(*(set(v) for v in by_fold.values())))
    files = by_fold.get(fold, {})
    for c in classes:
        if c not in files:
            problems.append(f"class {c!r}: no {c}_test_split{fold}.txt in {lists_dir}")
    want = SPLIT_IDS[split]
    index = FileIndex()
    items: list[tuple[str, int]] = []
    counts = [0] * len(classes)
    reported = {c for c in classes if c not in files}  # problems already said about these classes
    for label, c in enumerate(classes):
        if c in reported:
            continue
        if index.find(root, Path(c)) is None:
            problems.append(f"class {c!r}: folder {root / c} not found")
            reported.add(c)
            continue
        first_seen: dict[str, int] = {}
        for lineno, line in read_lines(files[c], problems):
            where = f"{files[c].name}:{lineno}"
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                problems.append(f"{where}: expected '<name>.avi 0|1|2', got {line!r}")
                continue
            name, sid = parts[0], int(parts[1])
            if name.lower() in first_seen:
                problems.append(f"{where}: duplicate entry {name!r} (first on line {first_seen[name.lower()]})")
                continue
            first_seen[name.lower()] = lineno
            if sid != want:
                continue
            found = index.find(root / c, relative_path(name))
            if found is None:
                problems.append(f"{where}: missing file {root / c / name}")
                continue
            items.append((str(found.absolute()), label))
            counts[label] += 1
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0 and c not in reported]
    if empty and split != "unused":  # an unused part may well be empty
        problems.append(f"fold {fold} {split}: {len(empty)} class(es) without a video: {', '.join(empty[:20])}"
                        + (" …" if len(empty) > 20 else ""))
    if problems:
        raise DatasetError(source, problems)
    return VideoList(items, classes, name=f"hmdb51 fold {fold} {split}", root=str(root.absolute()))


def available_folds(root: str | Path, lists: str | Path | None = None) -> list[int]:
    """Folds with at least one split file."""
    lists_dir, _ = find_lists(Path(root), lists)
    return sorted(_split_files(lists_dir)) if lists_dir is not None else []
