"""``c3d-distill report``: the table and the plots of DESIGN.md §7 from finished run folders.

Reads each run's ``config.json``, ``metrics.jsonl`` and ``eval.json``. Cross-model plots use the test
cross-entropy, which every run has (a feature-distilled student is scored through the teacher's head);
the per-model plot shows the loss each run minimised (CE for the teacher, the distillation loss for a
student), train against test.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import MODES


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
        """Trained from scratch with ``train`` (any model), not distilled."""
        return self.config["mode"] == "train"

    @property
    def is_teacher(self) -> bool:
        """A C3D trained from scratch: what the students are distilled from."""
        return self.trained and self.model == "c3d"

    @property
    def init(self) -> str:
        """transfer, random, the name of the student file it started from (``--init FILE``), or scratch
        for a run made with ``train``."""
        if self.trained:
            return "scratch"
        init = str(self.config.get("init", ""))
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
    # file, then trained from scratch.
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


def table_rows(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        e = r.eval or {}
        rows.append(
            {
                "run": r.name,
                "folder": r.folder,
                "model": r.model,
                "init": r.init,
                "loss": e.get(
                    "loss", str(r.config.get("loss", "?")) + ("+hints" if r.config.get("hints") else "")
                ),
                "epochs": r.config.get("epochs"),
                "params": e.get("params"),
                "gmacs": e.get("gmacs"),
                "train_clips_per_s": e.get("train_clips_per_s"),
                "eval_clips_per_s": e.get("final_clips_per_s"),
                "clip_acc": e.get("final_top1"),
                "clip_top5": e.get("final_top5"),
                "video_acc": e.get("final_video_acc"),
                "test_ce": e.get("final_ce"),
                "feature_err": e.get("final_feature_err"),
                "held_out": e.get("held_out", True),
                "finished": r.eval is not None,
            }
        )
    return rows


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    try:
        return format(v, spec)
    except (TypeError, ValueError):  # a hand-edited eval.json: show what is there
        return str(v)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| run | model | init | loss | params | GMACs | train clips/s | eval clips/s | clip acc | video acc "
        "| feature err |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        params = (
            _fmt(r["params"] / 1e6, ".2f") + " M"
            if isinstance(r["params"], int | float)
            else _fmt(r["params"], "")
        )
        mark = "" if r.get("held_out", True) else " †"
        folder = str(r.get("folder", r["run"])).replace("|", "\\|")
        lines.append(
            f"| {folder} | {r['model']} | {r['init']} | {r['loss']} | {params} | {_fmt(r['gmacs'], '.3f')} "
            f"| {_fmt(r['train_clips_per_s'], '.1f')} | {_fmt(r['eval_clips_per_s'], '.1f')} "
            f"| {_fmt(r['clip_acc'], '.3f')}{mark} | {_fmt(r['video_acc'], '.3f')}{mark} "
            f"| {_fmt(r['feature_err'], '.3f')} |"
        )
    note = ""
    if any(not r.get("held_out", True) for r in rows):
        note = "\n† not held out: the test videos of that run include training videos\n"
    return head + "\n".join(lines) + "\n" + note


# --------------------------------------------------------------------------------------------------
# plots

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class Style:
    color: Any
    marker: str
    label: str


def run_labels(runs: list[Run]) -> dict[Path, str]:
    """Each run's legend label, keyed by :attr:`Run.key`: ``model init`` (or ``(teacher)``/``(trained)``),
    with the shortest end of its path that tells it apart appended where runs share a label (the run's
    name, or parent/name for runs of the same name in different folders)."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.label, []).append(r)
    labels: dict[Path, str] = {}
    for base, group in groups.items():
        keys = list(dict.fromkeys(r.key for r in group))
        if len(keys) == 1:
            labels[keys[0]] = base
            continue
        parts = [k.parts for k in keys]
        for n in range(1, max(map(len, parts)) + 1):
            ends = ["/".join(p[-n:]) for p in parts]
            if len(set(ends)) == len(ends):
                break
        for k, end in zip(keys, ends, strict=True):
            labels[k] = f"{base} [{end}]"
    return labels


def run_styles(runs: list[Run]) -> dict[Path, Style]:
    """One colour, marker and label per run, keyed by :attr:`Run.key`, computed once over all the runs of
    a report so that a run looks the same in every plot. Up to 20 runs have colours of their own (tab10,
    then tab20's light shades with another marker); more take colours spread over a colour map, with
    the markers cycling."""
    import matplotlib

    keys = list(dict.fromkeys(r.key for r in runs))
    labels = run_labels(runs)
    n = len(keys)
    tab10 = list(matplotlib.colormaps["tab10"].colors)
    if n <= 20:
        light = list(matplotlib.colormaps["tab20"].colors)[1::2]
        styles = [(c, "o") for c in tab10] + [(c, "s") for c in light]
    else:
        cmap = matplotlib.colormaps["gist_rainbow"]
        styles = [(cmap(i / (n - 1)), MARKERS[i % len(MARKERS)]) for i in range(n)]
    return {k: Style(styles[i][0], styles[i][1], labels[k]) for i, k in enumerate(keys)}


def _style(runs: list[Run], style: dict[Path, Style] | None) -> dict[Path, Style]:
    if style is not None and all(r.key in style for r in runs):
        return style
    return run_styles(runs)


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_per_model(runs: list[Run], path: Path, *, style: dict[Path, Style] | None = None) -> Path:
    import matplotlib.pyplot as plt

    style = _style(runs, style)
    n = len(runs)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, r in zip(axes.flat, runs, strict=False):
        for split, ls in (("train", "-"), ("test", "--")):
            x, y = r.series(split, "loss")
            ax.plot(x, y, ls, marker="o", ms=3, label=split)
        ax.set_title(f"{style[r.key].label}: {r.config.get('loss', '?')}", fontsize=10)
        _epoch_axis(ax)
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return _save(fig, path)


def plot_loss(
    runs: list[Run],
    path: Path,
    *,
    splits=("train", "test"),
    title: str,
    style: dict[Path, Style] | None = None,
) -> Path:
    import matplotlib.pyplot as plt

    style = _style(runs, style)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in runs:
        s = style[r.key]
        for split in splits:
            x, y = r.series(split, "ce")
            if x:
                ax.plot(
                    x,
                    y,
                    "-" if split == "test" else ":",
                    color=s.color,
                    marker=s.marker,
                    ms=3,
                    label=f"{s.label} {split}" if len(splits) > 1 else s.label,
                )
    _epoch_axis(ax)
    ax.set_ylabel("cross-entropy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_accuracy(runs: list[Run], path: Path, *, style: dict[Path, Style] | None = None) -> Path:
    import matplotlib.pyplot as plt

    style = _style(runs, style)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in runs:
        s = style[r.key]
        x, y = r.series("test", "top1")
        if x:
            ax.plot(x, y, "-", color=s.color, marker=s.marker, ms=3, label=s.label)
    chance = None
    for r in runs:
        if r.config.get("num_classes"):
            chance = 1.0 / r.config["num_classes"]
            break
    if chance:
        ax.axhline(chance, color="grey", lw=0.8, ls=":", label="chance")
    _epoch_axis(ax)
    ax.set_ylabel("test clip accuracy (top-1)")
    ax.set_ylim(0, 1)
    ax.set_title("accuracy per epoch", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def pick_teacher(runs: list[Run], teacher: str | Path | None) -> Run | None:
    """The run drawn as the teacher against the SP students.

    ``None``: the first C3D trained with ``train``. Otherwise a run name or the path of a run folder;
    a run folder that is not among ``runs`` is read and returned too. Nothing matching is an error that
    lists the run names."""
    if teacher is None:
        return next((r for r in runs if r.is_teacher), None)
    teacher = str(teacher)
    by_name = [r for r in runs if r.name == teacher]
    if len(by_name) == 1:
        return by_name[0]
    p = Path(teacher)
    if p.is_dir():
        for r in runs:
            if r.key == p.resolve():
                return r
        if not by_name:
            try:
                return Run(p)
            except ValueError as exc:
                raise ValueError(f"--teacher {teacher}: {exc}") from exc
    if by_name:
        raise ValueError(
            f"--teacher {teacher}: {len(by_name)} runs have that name ("
            + ", ".join(r.folder for r in by_name)
            + "); give the path of one"
        )
    names = ", ".join(dict.fromkeys(r.name for r in runs))
    raise ValueError(
        f"--teacher {teacher}: no run of that name and no run folder at that path (the runs: {names})"
    )


def write_report(paths: list[str | Path], out: str | Path, *, teacher: str | None = None) -> list[Path]:
    """Write ``table.md``, ``table.json`` and the PNG plots to ``out``; returns the written paths.

    ``teacher``: a run name or the path of a run folder (default: the first C3D made with ``train``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file; give a folder for table.md, table.json and the plots")
    runs = find_runs(paths, out=out)
    t_run = pick_teacher(runs, teacher)
    t_runs = [t_run] if t_run is not None else []
    sp_runs = [r for r in runs if r.model in ("sp", "sp_bn") and r.key not in {t.key for t in t_runs}]
    style = run_styles(runs + [t for t in t_runs if t.key not in {r.key for r in runs}])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot make that folder ({exc.strerror or exc})") from exc
    rows = table_rows(runs)
    written = []
    md = out / "table.md"
    md.write_text(markdown_table(rows))
    js = out / "table.json"
    js.write_text(json.dumps(rows, indent=2) + "\n")
    written += [md, js]
    import matplotlib

    matplotlib.use("Agg")
    written.append(plot_per_model(runs, out / "loss_per_model.png", style=style))
    written.append(
        plot_loss(
            runs, out / "loss_all.png", title="all models: train (dotted) and test (solid) loss", style=style
        )
    )
    written.append(
        plot_loss(
            runs, out / "test_loss_all.png", splits=("test",), title="all models: test loss", style=style
        )
    )
    if t_runs or sp_runs:
        written.append(
            plot_loss(
                t_runs + sp_runs,
                out / "test_loss_teacher_vs_sp.png",
                splits=("test",),
                title="teacher against the SP versions: test loss",
                style=style,
            )
        )
    written.append(plot_accuracy(runs, out / "accuracy.png", style=style))
    return written
