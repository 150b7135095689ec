"""The report's plots (PNG, matplotlib): per-model train and test loss, all models' losses, the teacher
against the SP students, accuracy; one colour per run over all plots."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runs import Run

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


