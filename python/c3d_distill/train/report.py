"""``c3d-distill report``: the table and the plots of DESIGN.md §7 from finished run folders.

Reads each run's ``config.json``, ``metrics.jsonl`` and ``eval.json``. Cross-model plots use the test
cross-entropy, which every run has (a feature-distilled student is scored through the teacher's head);
the per-model plot shows the loss each run minimised (CE for the teacher, the distillation loss for a
student), train against test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class Run:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.config = json.loads((path / "config.json").read_text())
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{path}: not a run folder (no config.json)") from exc
        metrics = path / "metrics.jsonl"
        self.rows = (
            [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            if metrics.exists()
            else []
        )
        ev = path / "eval.json"
        self.eval: dict[str, Any] | None = json.loads(ev.read_text()) if ev.exists() else None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def is_teacher(self) -> bool:
        return self.config["mode"] == "train"

    @property
    def init(self) -> str:
        """transfer, random, or the name of the student file it started from (``--init FILE``)."""
        init = str(self.config.get("init", ""))
        return init if init in ("transfer", "random") else Path(init).name

    @property
    def label(self) -> str:
        if self.is_teacher:
            return f"{self.model} (teacher)"
        return f"{self.model} {self.init}"

    def series(self, split: str, key: str) -> tuple[list[int], list[float]]:
        pts = [(r["epoch"], r[key]) for r in self.rows if r.get("split") == split and r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Run folders among ``paths`` and their direct sub-folders, in the order given (sub-folders sorted)."""
    runs: list[Run] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such run folder")
        if (p / "config.json").exists():
            runs.append(Run(p))
            continue
        subs = sorted(d for d in p.iterdir() if (d / "config.json").exists())
        if not subs:
            raise FileNotFoundError(f"{p}: neither a run folder nor a folder of runs (no config.json inside)")
        runs.extend(Run(d) for d in subs)
    # The teacher first, then students grouped by model, transfer before random.
    return sorted(runs, key=lambda r: (not r.is_teacher, r.model, r.config.get("init") != "transfer", r.name))


def table_rows(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        e = r.eval or {}
        rows.append(
            {
                "run": r.name,
                "model": r.model,
                "init": "scratch" if r.is_teacher else r.init,
                "loss": e.get("loss", r.config["loss"] + ("+hints" if r.config.get("hints") else "")),
                "epochs": r.config["epochs"],
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
    return format(v, spec)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | init | loss | params | GMACs | train clips/s | eval clips/s | clip acc | video acc "
        "| feature err |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        params = _fmt(r["params"] / 1e6, ".2f") + " M" if r["params"] is not None else "–"
        mark = "" if r.get("held_out", True) else " †"
        lines.append(
            f"| {r['model']} | {r['init']} | {r['loss']} | {params} | {_fmt(r['gmacs'], '.3f')} "
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


def _style(runs: list[Run]):
    import matplotlib

    colors = matplotlib.colormaps["tab10"].colors
    return {r.name: colors[i % len(colors)] for i, r in enumerate(runs)}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_per_model(runs: list[Run], path: Path) -> Path:
    import matplotlib.pyplot as plt

    n = len(runs)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, r in zip(axes.flat, runs, strict=False):
        for split, ls in (("train", "-"), ("test", "--")):
            x, y = r.series(split, "loss")
            ax.plot(x, y, ls, marker="o", ms=3, label=split)
        ax.set_title(f"{r.label}: {r.config['loss']}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return _save(fig, path)


def plot_loss(runs: list[Run], path: Path, *, splits=("train", "test"), title: str) -> Path:
    import matplotlib.pyplot as plt

    color = _style(runs)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in runs:
        for split in splits:
            x, y = r.series(split, "ce")
            if x:
                ax.plot(
                    x,
                    y,
                    "-" if split == "test" else ":",
                    color=color[r.name],
                    marker="o",
                    ms=3,
                    label=f"{r.label} {split}" if len(splits) > 1 else r.label,
                )
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_accuracy(runs: list[Run], path: Path) -> Path:
    import matplotlib.pyplot as plt

    color = _style(runs)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in runs:
        x, y = r.series("test", "top1")
        if x:
            ax.plot(x, y, "-", color=color[r.name], marker="o", ms=3, label=r.label)
    chance = None
    for r in runs:
        if r.config.get("num_classes"):
            chance = 1.0 / r.config["num_classes"]
            break
    if chance:
        ax.axhline(chance, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test clip accuracy (top-1)")
    ax.set_ylim(0, 1)
    ax.set_title("accuracy per epoch", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def write_report(paths: list[str | Path], out: str | Path, *, teacher: str | None = None) -> list[Path]:
    """Write ``table.md``, ``table.json`` and the PNG plots to ``out``; returns the written paths."""
    runs = find_runs(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(runs)
    written = []
    md = out / "table.md"
    md.write_text(markdown_table(rows))
    js = out / "table.json"
    js.write_text(json.dumps(rows, indent=2) + "\n")
    written += [md, js]
    import matplotlib

    matplotlib.use("Agg")
    written.append(plot_per_model(runs, out / "loss_per_model.png"))
    written.append(
        plot_loss(runs, out / "loss_all.png", title="all models: train (dotted) and test (solid) loss")
    )
    written.append(
        plot_loss(runs, out / "test_loss_all.png", splits=("test",), title="all models: test loss")
    )
    t_runs = [r for r in runs if (r.name == teacher if teacher else r.is_teacher and r.model == "c3d")][:1]
    sp_runs = [r for r in runs if r.model in ("sp", "sp_bn") and not r.is_teacher]
    if t_runs or sp_runs:
        written.append(
            plot_loss(
                t_runs + sp_runs,
                out / "test_loss_teacher_vs_sp.png",
                splits=("test",),
                title="teacher against the SP versions: test loss",
            )
        )
    written.append(plot_accuracy(runs, out / "accuracy.png"))
    return written
