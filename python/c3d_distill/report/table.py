"""The report's table: one row per run (model, parameters, GMACs, clips/s, accuracies, feature error), as
JSON rows and as markdown."""

from __future__ import annotations

import math
from typing import Any

from .runs import Run


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
