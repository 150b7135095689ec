"""A plain list, for anything that is neither UCF101 nor HMDB51: one ``path label`` per line.

- ``path`` is relative to the list's folder (or absolute); it may contain spaces (the label is the last
  field). ``/`` or ``\\`` separators.
- ``label`` is a 0-based integer, or a class name. Not both kinds in one list.
- Class names: from ``classes=`` (a list of names, or a file), else from ``classes.txt`` beside the list
  (one name per line, line 1 is label 0), else from the labels themselves (names sorted; integer labels
  0…max named "0", "1", …).
- Blank lines and lines starting with ``#`` are skipped."""

from __future__ import annotations

from pathlib import Path

from .base import DatasetError, FileIndex, VideoList, read_lines, relative_path

CLASSES_FILE = "classes.txt"


def _class_names(spec: str | Path | list[str], problems: list[str]) -> list[str]:
    if isinstance(spec, list):
        names = [str(s) for s in spec]
        where = "classes="
    else:
        path = Path(spec)
        names = [line for _, line in read_lines(path, problems) if not line.startswith("#")]
        where = str(path)
    seen: set[str] = set()
    for n in names:
        if n in seen:
            problems.append(f"{where}: class {n!r} listed twice")
        seen.add(n)
    return names


def load_list(file: str | Path, *, classes: str | Path | list[str] | None = None) -> VideoList:
    """Read a ``path label`` list. Raises :class:`DatasetError` listing every problem: malformed lines,
    labels out of range or not among the class names, duplicate entries, missing files, classes without a
    video."""
    file = Path(file)
    source = f"list:{file}"
    problems: list[str] = []
    lines = [(n, s) for n, s in read_lines(file, problems) if not s.startswith("#")]
    if problems:
        raise DatasetError(source, problems)
    if classes is None and (file.parent / CLASSES_FILE).is_file():
        classes = file.parent / CLASSES_FILE
    names = _class_names(classes, problems) if classes is not None else None

    parsed: list[tuple[int, str, str]] = []  # (line number, path text, label text)
    for lineno, line in lines:
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            problems.append(f"{file.name}:{lineno}: expected '<path> <label>', got {line!r}")
            continue
        parsed.append((lineno, parts[0], parts[1]))
    numeric = [p for p in parsed if p[2].lstrip("-").isdigit()]
    if numeric and len(numeric) != len(parsed):
        named = next(p for p in parsed if not p[2].lstrip("-").isdigit())
        problems.append(f"{file.name}: labels mix integers (line {numeric[0][0]}) and class names "
                        f"(line {named[0]}: {named[2]!r}); use one kind")
        raise DatasetError(source, problems)

    if names is None:
        if numeric:
            top = max((int(p[2]) for p in parsed), default=-1)
            names = [str(i) for i in range(top + 1)]
        else:
            names = sorted({p[2] for p in parsed})
    lookup = {n: i for i, n in enumerate(names)}

    base = file.parent
    index = FileIndex()
    items: list[tuple[str, int]] = []
    first_seen: dict[str, int] = {}
    for lineno, path_text, label_text in parsed:
        where = f"{file.name}:{lineno}"
        if numeric:
            label = int(label_text)
            if not 0 <= label < len(names):
                problems.append(f"{where}: label {label} out of range 0…{len(names) - 1}")
                continue
        else:
            if label_text not in lookup:
                problems.append(f"{where}: unknown class {label_text!r}")
                continue
            label = lookup[label_text]
        rel = Path(path_text)
        found = index.find(base, rel)
        if found is None and "\\" in path_text:
            found = index.find(base, relative_path(path_text))
        if found is None:
            problems.append(f"{where}: missing file {base / path_text}")
            continue
        key = str(found.absolute())
        if key in first_seen:
            problems.append(f"{where}: duplicate entry {path_text!r} (first on line {first_seen[key]})")
            continue
        first_seen[key] = lineno
        items.append((key, label))

    counts = [0] * len(names)
    for _, label in items:
        counts[label] += 1
    empty = [n for n, c in zip(names, counts, strict=True) if c == 0]
    if empty:
        problems.append(f"{len(empty)} class(es) without a video: {', '.join(empty[:20])}"
                        + (" …" if len(empty) > 20 else ""))
    if not parsed and not problems:
        problems.append("the list is empty")
    if problems:
        raise DatasetError(source, problems)
    return VideoList(items, names, name=f"list {file.name}", root=str(base.absolute()))
