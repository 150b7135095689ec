"""Finished run folders as the report reads them: ``config.json``, ``metrics.jsonl`` and ``eval.json`` of
each, found under the paths given, with clear errors for what is not a run or is broken."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..runs.config import MODES


class NotARunError(ValueError):
    """A folder that is not a c3d-distill run: no ``config.json``, or another tool's."""


class RunError(ValueError):
    """A c3d-distill run folder with a file that cannot be read (the message names the file and the cause)."""


def _note(msg: str) -> None:
    print(f"report: {msg}", file=sys.stderr, flush=True)


def _read_text(file: Path) -> str:
    try:
        return file.read_text()
    except UnicodeDecodeError as exc:
        raise RunError(f"{file}: not a text file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise RunError(f"{file}: cannot be read ({exc.strerror or exc})") from exc


def _read_json(file: Path) -> Any:
    text = _read_text(file)
    if not text.strip():
        raise RunError(f"{file}: empty file, not JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunError(f"{file}: not valid JSON ({exc})") from exc


class Run:
    """One run folder. Raises :class:`NotARunError` for a folder that is not a c3d-distill run and
    :class:`RunError` (naming the file and the cause) for a run whose files cannot be read. A torn last
    line of ``metrics.jsonl`` (the run was stopped while writing it) is left out; it is in ``notes``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.notes: list[str] = []
        cfg_file = self.path / "config.json"
        if not cfg_file.is_file():
            raise NotARunError(f"{self.path}: not a run folder (no config.json)")
        self.config = _read_json(cfg_file)
        if not isinstance(self.config, dict):
            raise NotARunError(
                f"{self.path}: not a c3d-distill run (its {cfg_file.name} is not a JSON object)"
            )
        missing = [
            *([f'no "mode" {" or ".join(MODES)}'] if self.config.get("mode") not in MODES else []),
            *(['no "model"'] if not isinstance(self.config.get("model"), str) else []),
        ]
        if missing:
            raise NotARunError(
                f"{self.path}: not a c3d-distill run (its {cfg_file.name} has {' and '.join(missing)})"
            )
        self.rows: list[dict[str, Any]] = []
        metrics = self.path / "metrics.jsonl"
        if metrics.exists():
            lines = _read_text(metrics).splitlines()
            numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
            for k, (no, line) in enumerate(numbered):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    if k == len(numbered) - 1:
                        self.notes.append(
                            f"{metrics} line {no}: incomplete (the run stopped while writing it?), left out"
                        )
                        continue
                    raise RunError(f"{metrics} line {no}: not valid JSON ({exc})") from exc
                if not isinstance(row, dict):
                    raise RunError(f"{metrics} line {no}: not a JSON object")
                self.rows.append(row)
        ev = self.path / "eval.json"
        self.eval: dict[str, Any] | None = None
        if ev.exists():
            self.eval = _read_json(ev)
            if not isinstance(self.eval, dict):
                raise RunError(f"{ev}: not a JSON object")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def key(self) -> Path:
        """The absolute folder: what tells runs apart (two parents can hold runs of the same name)."""
        return self.path.resolve()

    @property
    def folder(self) -> str:
        """The folder as shown in the table: relative to the working directory where possible."""
        if not self.path.is_absolute():
            return str(self.path)
        try:
            return str(self.key.relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(self.path)

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def trained(self) -> bool:
        """Trained with ``train`` (any model, from random initialisation or ``--init``), not distilled."""
        return self.config["mode"] == "train"

    @property
    def is_teacher(self) -> bool:
        """A C3D trained with ``train``: what the students are distilled from."""
        return self.trained and self.model == "c3d"

    @property
    def init(self) -> str:
        """transfer, random, the name of the file it started from (``--init FILE|RUN``), or none for a run
        made with ``train`` from random initialisation."""
        init = str(self.config.get("init", ""))
        if self.trained and init in ("transfer", "random", ""):
            return "none"
        return init if init in ("transfer", "random") else Path(init).name

    @property
    def label(self) -> str:
        if self.is_teacher:
            return f"{self.model} (teacher)"
        if self.trained:
            return f"{self.model} (trained)"
        return f"{self.model} {self.init}"

    def series(self, split: str, key: str) -> tuple[list[int], list[float]]:
        pts = [
            (r["epoch"], r[key])
            for r in self.rows
            if r.get("split") == split and r.get("epoch") is not None and r.get(key) is not None
        ]
        return [p[0] for p in pts], [p[1] for p in pts]


def _sort_key(r: Run) -> tuple:
    # The teacher first, then by model: distilled from transferred weights, from random init, from a
    # file, then trained from random initialisation.
    return (not r.is_teacher, r.model, r.trained, r.config.get("init") != "transfer", r.name, str(r.key))


def find_runs(
    paths: Iterable[str | Path],
    *,
    out: str | Path | None = None,
    note: Callable[[str], None] = _note,
) -> list[Run]:
    """Run folders among ``paths`` and their direct sub-folders, the teacher first, then by model.

    Left out, each with a note: ``out`` (the report's own folder), files, folders that are not runs and
    hold none, and sub-folders of a folder of runs that are not c3d-distill runs or cannot be read. A run
    folder named in ``paths`` that cannot be read is an error naming the file. No run at all is an error."""
    runs: dict[Path, Run] = {}
    skipped: list[str] = []
    out_key = Path(out).resolve() if out is not None else None

    def skip(msg: str) -> None:
        skipped.append(msg)

    def add(run: Run) -> None:
        for n in run.notes:
            note(n)
        runs.setdefault(run.key, run)

    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such run folder")
        if not p.is_dir():
            skip(f"{p}: not a folder")
            continue
        if (p / "config.json").exists():
            try:
                add(Run(p))
            except NotARunError as exc:
                skip(str(exc))
            continue
        if out_key is not None and p.resolve() == out_key:
            skip(f"{p}: the --out folder of this report")
            continue
        subs = sorted(d for d in p.iterdir() if d.is_dir() and (d / "config.json").exists())
        if not subs:
            skip(f"{p}: not a run folder (no config.json) and no run folders inside")
            continue
        for d in subs:
            try:
                add(Run(d))
            except ValueError as exc:
                skip(str(exc))
    if not runs:
        raise FileNotFoundError("no c3d-distill run found: " + "; ".join(skipped))
    for msg in skipped:
        note(f"left out {msg}")
    return sorted(runs.values(), key=_sort_key)


