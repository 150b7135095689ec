"""UCF101 as distributed (Soomro et al. 2012, https://www.crcv.ucf.edu/data/UCF101.php)::

    UCF-101/<Class>/v_<Class>_gXX_cYY.avi
    ucfTrainTestlist/classInd.txt        "1 ApplyEyeMakeup"                           (1-based)
    ucfTrainTestlist/trainlist0N.txt     "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    ucfTrainTestlist/testlist0N.txt      "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"  (label from the folder)

Three folds (N = 1, 2, 3). The split lists may sit inside the video folder, beside it (the two archives
unpack side by side), or anywhere (``lists=``)."""

from __future__ import annotations

from pathlib import Path

from .base import DatasetError, FileIndex, VideoList, read_lines, relative_path

LISTS_DIR = "ucfTrainTestlist"
FOLDS = (1, 2, 3)
SPLITS = ("train", "test")


def find_lists(root: Path, lists: str | Path | None = None) -> tuple[Path | None, list[Path]]:
    """The folder holding classInd.txt, and the places looked at."""
    candidates = [Path(lists)] if lists is not None else [root / LISTS_DIR, root, root.parent / LISTS_DIR]
    for c in candidates:
        if (c / "classInd.txt").is_file():
            return c, candidates
    return None, candidates


def read_class_index(path: Path, problems: list[str]) -> list[str]:
    """classInd.txt → class names in label order. Indices must be 1…N, each once; names unique."""
    by_index: dict[int, str] = {}
    seen: dict[str, int] = {}
    for lineno, line in read_lines(path, problems):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            problems.append(f"{path}:{lineno}: expected '<index> <ClassName>', got {line!r}")
            continue
        idx, name = int(parts[0]), parts[1].strip()
        if idx in by_index:
            problems.append(f"{path}:{lineno}: index {idx} given twice ({by_index[idx]!r} and {name!r})")
            continue
        if name.lower() in seen:
            problems.append(f"{path}:{lineno}: class {name!r} listed twice (lines {seen[name.lower()]} and {lineno})")
            continue
        by_index[idx] = name
        seen[name.lower()] = lineno
    if by_index and sorted(by_index) != list(range(1, len(by_index) + 1)):
        gaps = sorted(set(range(1, max(by_index) + 1)) - set(by_index))
        extra = sorted(i for i in by_index if i < 1)
        problems.append(f"{path}: indices must run 1…{len(by_index)} without gaps"
                        + (f"; missing {gaps[:10]}" if gaps else "") + (f"; invalid {extra}" if extra else ""))
    if not by_index and not any(p.startswith(str(path)) for p in problems):
        problems.append(f"{path}: no classes listed")
    return [by_index[i] for i in sorted(by_index)]


def parse_split_list(path: Path, root: Path, classes: list[str], problems: list[str],
                     index: FileIndex) -> list[tuple[str, int]]:
    """trainlist/testlist lines → (absolute path, 0-based label). The label comes from the class folder;
    a label written on the line (train lists, 1-based) must agree with it."""
    lookup = {c: i for i, c in enumerate(classes)}
    lookup_ci = {c.lower(): i for i, c in enumerate(classes)}
    items: list[tuple[str, int]] = []
    first_seen: dict[str, int] = {}
    for lineno, line in read_lines(path, problems):
        where = f"{path.name}:{lineno}"
        parts = line.rsplit(maxsplit=1)
        written: int | None = None
        if len(parts) == 2 and parts[1].lstrip("+-").isdigit():
            rel_text, written = parts[0], int(parts[1])
        else:
            rel_text = line
        rel = relative_path(rel_text)
        key = rel.as_posix().lower()
        if key in first_seen:
            problems.append(f"{where}: duplicate entry {rel_text!r} (first on line {first_seen[key]})")
            continue
        first_seen[key] = lineno
        if len(rel.parts) < 2:
            problems.append(f"{where}: {rel_text!r} has no class folder (expected '<Class>/<file>')")
            continue
        folder = rel.parts[0]
        label = lookup.get(folder, lookup_ci.get(folder.lower()))
        if label is None:
            problems.append(f"{where}: unknown class {folder!r} (not in classInd.txt)")
            continue
        if written is not None:
            if not 1 <= written <= len(classes):
                problems.append(f"{where}: label {written} out of range 1…{len(classes)}")
                continue
            if written - 1 != label:
                problems.append(f"{where}: label {written} ({classes[written - 1]}) disagrees with the folder "
                                f"{folder!r} (label {label + 1})")
                continue
        found = index.find(root, rel)
        if found is None:
            problems.append(f"{where}: missing file {root / rel}")
            continue
        items.append((str(found.absolute()), label))
    return items


def load_ucf101(root: str | Path, fold: int = 1, split: str = "train", *,
                lists: str | Path | None = None) -> VideoList:
    """Read fold ``fold`` (1–3), ``split`` ``"train"`` or ``"test"``, of a UCF101-shaped folder.

    Raises :class:`DatasetError` listing every problem: unreadable or malformed lists, unknown classes,
    labels out of range or disagreeing with the folder, duplicate entries, missing files, classes without a
    video in this split."""
    root = Path(root)
    source = f"ucf101:{root}:{fold} ({split})"
    if split not in SPLITS:
        raise DatasetError(source, [f"split={split!r}: must be one of {', '.join(SPLITS)}"])
    if fold not in FOLDS:
        raise DatasetError(source, [f"fold={fold!r}: UCF101 has folds {FOLDS}"])
    if not root.is_dir():
        raise DatasetError(source, [f"{root}: video folder not found"])
    lists_dir, looked = find_lists(root, lists)
    if lists_dir is None:
        raise DatasetError(source, ["classInd.txt not found; looked in " + ", ".join(map(str, looked))])
    problems: list[str] = []
    classes = read_class_index(lists_dir / "classInd.txt", problems)
    list_file = lists_dir / f"{split}list{fold:02d}.txt"
    items = parse_split_list(list_file, root, classes, problems, FileIndex()) if classes else []
    if list_file.is_file() and classes:
        counts = [0] * len(classes)
        for _, label in items:
            counts[label] += 1
        empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
        # Only meaningful when the lists themselves are sound; otherwise the missing entries explain it.
        if empty and len(empty) < len(classes):
            problems.append(f"{list_file.name}: {len(empty)} class(es) without a video: {', '.join(empty[:20])}"
                            + (" …" if len(empty) > 20 else ""))
        elif empty:
            problems.append(f"{list_file.name}: no usable video in any class")
    if problems:
        raise DatasetError(source, problems)
    return VideoList(items, classes, name=f"ucf101 fold {fold} {split}", root=str(root.absolute()))


def available_folds(root: str | Path, lists: str | Path | None = None) -> list[int]:
    """Folds whose train and test lists both exist."""
    lists_dir, _ = find_lists(Path(root), lists)
    if lists_dir is None:
        return []
    return [k for k in FOLDS if (lists_dir / f"trainlist{k:02d}.txt").is_file()
            and (lists_dir / f"testlist{k:02d}.txt").is_file()]
