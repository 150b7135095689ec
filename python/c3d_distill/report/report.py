"""``c3d-distill report``: the table and the plots from finished run folders.

Reads each run's ``config.json``, ``metrics.jsonl`` and ``eval.json``. Cross-model plots use the test
cross-entropy, which every run has (a feature-distilled student is scored through the teacher's head);
the per-model plot shows the loss each run minimised (CE for the teacher, the distillation loss for a
student), train against test.
"""


from __future__ import annotations

import json
from pathlib import Path

from .plots import plot_accuracy, plot_loss, plot_per_model, run_styles
from .runs import Run, find_runs
from .table import markdown_table, table_rows


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
