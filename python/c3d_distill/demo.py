"""``c3d-distill demo``: the whole study on the embedded synthetic set.

1. the synthetic action set (cached in ``OUT/data/synth``),
2. a C3D teacher trained from random initialisation (``OUT/runs/teacher_c3d``),
3. each student (mc4, sp, sp_bn) distilled from the teacher twice: initialised by weight transfer, and from
   random init with the same loss and budget (``OUT/runs/<student>_<init>``),
4. evaluation (clip and video accuracy, feature error) and the report (``OUT/report``).

Finished runs are reused (their ``eval.json`` exists and their settings match), so an interrupted demo
continues where it stopped; ``--fresh`` redoes them. Presets: ``tiny`` fits a 2-core CPU in minutes;
``full`` is the paper-sized models (16×112×112, width 1) for a GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from .datasets import SPEC_HELP as DATA_HELP
from .runs.config import RunConfig

# Why these settings (tiny): the synthetic classes are motions spread over the whole 2-4 s video, so a
# clip samples every 4th frame (16 frames ≈ 2.6 s); frames are scaled to 32×43 and cropped to 32×32, which
# keeps the moving objects in view; a random RGB order per clip stops the model from keying on colours
# (appearance is random per video by design). The teacher: the normalisation-free C3D sits near the
# constant solution for its first ~8-10 epochs whatever the recipe, so the budget goes to epochs. In
# in-memory trials on these clips (30 epochs, test clip accuracy, chance 0.10): SGD 0.01 with dropout 0.3
# reached 0.33, SGD 0.003 without dropout 0.50, SGD 0.01 without dropout 0.57, AdamW 1e-3 (weight decay
# 1e-4) without dropout 0.68 — dropout in a head this narrow (hidden 512) mostly slows the escape.
# The students: chosen on a validation set (the same generator with seed 1, its own teacher trained with
# the teacher settings below; validation teacher 0.465 test clip accuracy), 8 epochs each (the demo gives
# them 12). Pool5 MSE alone with the teacher's head frozen (SGD 0.003 or 0.01) left mc4 at 0.42 and sp at
# 0.31; feature+kd (the head learns too, from the teacher's logits) with SGD 0.01 gave 0.44 / 0.48, with
# AdamW 1e-3 0.50 / 0.50.
# sp_bn with the same settings reached 0.37: in train mode each batch's own statistics replace the ones the
# transfer set, so it no longer computes what the transfer built; with its BatchNorm frozen (running
# statistics kept, scale and shift learnt) 0.47.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "synth": {"classes": 10, "videos_per_class": 40, "seed": 0},
        "shape": {"width": 0.125, "frames": 16, "size": 32, "resize": (32, 43), "stride": 4},
        "common": {
            "batch_size": 16,
            "optimizer": "sgd",
            "weight_decay": 5e-4,
            "schedule": "cosine",
            "clip_grad": 5.0,
            "eval_clips": 1,
            "final_eval_clips": 5,
            "dropout": 0.0,
            "color_permute": True,
        },
        "teacher": {
            "epochs": 36,
            "optimizer": "adamw",
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "warmup_epochs": 1.0,
        },
        "student": {"epochs": 12, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 0.5,
                    "loss": "feature+kd"},
        "per_student": {"sp_bn": {"freeze_bn": True}},
    },
    "full": {
        "synth": {"classes": 10, "videos_per_class": 40, "seed": 0},
        "shape": {"width": 1.0, "frames": 16, "size": 112, "stride": 4},
        "common": {
            "batch_size": 32,
            "optimizer": "sgd",
            "weight_decay": 5e-4,
            "schedule": "cosine",
            "clip_grad": 5.0,
            "eval_clips": 2,
            "final_eval_clips": 10,
            "dropout": 0.5,
            "color_permute": True,
            "amp": True,
        },
        "teacher": {"epochs": 30, "lr": 0.01, "warmup_epochs": 1.0},
        "student": {"epochs": 10, "lr": 0.003, "warmup_epochs": 0.5, "loss": "feature"},
    },
}
STUDENTS = ("mc4", "sp", "sp_bn")
INITS = ("transfer", "random")


def _finished(run_dir: Path, cfg: RunConfig) -> bool:
    ev, conf = run_dir / "eval.json", run_dir / "config.json"
    if not (ev.exists() and conf.exists()):
        return False
    old = RunConfig.load(conf).to_dict()
    new = cfg.to_dict()
    # preprocess: the name and values of resize/mean/std/channels, which are compared themselves
    ignore = {"device", "progress", "threads", "prefetch", "extra", "width", "frames", "size", "num_classes",
              "preprocess"}
    return all(old.get(k) == v for k, v in new.items() if k not in ignore)


def check_students(students) -> list[str]:
    """Student names, stripped and checked against the model registry (before anything runs)."""
    from .models import list_models

    names = [str(s).strip() for s in students]
    names = [n for n in names if n]
    if not names:
        raise ValueError("--students: no student named (e.g. --students mc4,sp)")
    known = [m for m in list_models() if m != "c3d"]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--students: {', '.join(map(repr, unknown))} not a student model (one of: "
                         f"{', '.join(known)})")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--students: {', '.join(twice)} named twice")
    return names


def demo_configs(
    out: Path,
    data: str,
    preset: str,
    *,
    device: str,
    students=STUDENTS,
    teacher_epochs: int | None = None,
    student_epochs: int | None = None,
    progress: bool = True,
    test_data: str | None = None,
) -> tuple[RunConfig, list[RunConfig]]:
    """The teacher's and the students' run configs for ``preset``."""
    if preset not in PRESETS:
        raise ValueError(f"--preset: {preset!r} is not one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    runs = out / "runs"
    common = dict(data=data, test_data=test_data, device=device, progress=progress, **p["shape"], **p["common"])
    if device == "cpu":
        common.pop("amp", None)
    t = dict(p["teacher"])
    if teacher_epochs is not None:
        t["epochs"] = teacher_epochs
    # The teacher's and students' own settings override the common ones.
    teacher = RunConfig(mode="train", model="c3d", out=str(runs / "teacher_c3d"), **{**common, **t})
    s = dict(p["student"])
    if student_epochs is not None:
        s["epochs"] = student_epochs
    studs = [
        RunConfig(
            mode="distill",
            model=name,
            init=init,
            teacher=teacher.out,
            out=str(runs / f"{name}_{init}"),
            **{**common, **s, **p.get("per_student", {}).get(name, {})},
        )
        for name in students
        for init in INITS
    ]
    return teacher, studs


def run_demo(
    out: str | Path = "runs/demo",
    *,
    device: str = "cpu",
    preset: str = "tiny",
    data: str | None = None,
    students: list[str] | None = None,
    teacher_epochs: int | None = None,
    student_epochs: int | None = None,
    fresh: bool = False,
    progress: bool = True,
    test_data: str | None = None,
) -> dict[str, Any]:
    """Run the demo; returns ``{"rows": table rows, "times": seconds per step, "report": folder}``.

    ``data`` replaces the synthetic set (``test_data``: its test videos, needed for a ``list:`` spec).
    Every setting is checked before the set is made or the teacher trains."""
    from .report.report import find_runs, markdown_table, table_rows, write_report
    from .train.run import run

    students = check_students(STUDENTS if students is None else students)
    # The same configs as below with a stand-in data set: a bad setting fails now, not after the teacher.
    t0_cfg, s0_cfgs = demo_configs(Path(out), data or "synth:-", preset, device=device, students=students,
                                   teacher_epochs=teacher_epochs, student_epochs=student_epochs,
                                   test_data=test_data)
    for c in (t0_cfg, *s0_cfgs):
        c.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    times: dict[str, float] = {}
    if data is None:
        from .datasets import make_synthetic

        t0 = time.perf_counter()
        # force: the folder is this demo's cache; a set made by an older generator or preset is redone.
        synth = make_synthetic(out / "data" / "synth", progress=progress, force=True, **PRESETS[preset]["synth"])
        times["data"] = time.perf_counter() - t0
        data = f"synth:{synth}"
    teacher, studs = demo_configs(
        out,
        data,
        preset,
        device=device,
        students=students,
        teacher_epochs=teacher_epochs,
        student_epochs=student_epochs,
        progress=progress,
        test_data=test_data,
    )
    for cfg in [teacher, *studs]:
        run_dir = Path(cfg.out)
        name = run_dir.name
        if fresh and run_dir.exists() and cfg is teacher:
            # A new teacher makes every student stale too.
            shutil.rmtree(out / "runs")
        elif fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        if _finished(run_dir, cfg):
            print(f"{name}: finished earlier, reusing {run_dir}")
            continue
        if (
            run_dir.exists()
            and (run_dir / "config.json").exists()
            and not (run_dir / "checkpoint.pt").exists()
        ):
            shutil.rmtree(run_dir)
        t0 = time.perf_counter()
        print(
            f"{name}: {cfg.mode} {cfg.model}"
            + (f" ({cfg.init}, {cfg.loss})" if cfg.mode == "distill" else ""),
            flush=True,
        )
        try:
            res = run(cfg, resume=True)
        except ValueError as exc:
            if "--resume" not in str(exc):
                raise
            # A leftover run made with other settings (an older preset): start it again.
            shutil.rmtree(run_dir)
            res = run(cfg, resume=True)
        times[name] = time.perf_counter() - t0
        print(
            f"{name}: clip acc {res.get('final_top1', float('nan')):.3f}, video acc "
            f"{res.get('final_video_acc', float('nan')):.3f} ({times[name]:.0f} s)",
            flush=True,
        )
    report_dir = out / "report"
    write_report([out / "runs"], report_dir)
    rows = table_rows(find_runs([out / "runs"]))
    times["total"] = time.perf_counter() - t_all
    summary = {
        "preset": preset,
        "device": device,
        "data": data,
        "times_s": times,
        "rows": rows,
        "report": str(report_dir),
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(markdown_table(rows))
    print(f"report: {report_dir} (table.md, table.json, *.png); total {times['total']:.0f} s")
    return summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole study on a synthetic set: teacher, students, report",
        description="Generate the synthetic set (cached), train a tiny C3D teacher, transfer and "
        "distil mc4, sp and sp_bn (and the same students from random init), evaluate, report.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", choices=("tiny", "full"), default="tiny")
    p.add_argument("--data", help="use this data set spec instead of the synthetic set (" + DATA_HELP + ")")
    p.add_argument("--test-data", metavar="SPEC", help="its test videos, when not from --data (needed with list:)")
    p.add_argument(
        "--students", help="comma-separated students (default mc4,sp,sp_bn; any of sp, sp_bn, mc1-mc5)"
    )
    p.add_argument("--teacher-epochs", type=int, help="override the preset")
    p.add_argument("--student-epochs", type=int, help="override the preset")
    p.add_argument("--fresh", action="store_true", help="redo finished runs instead of reusing them")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    students = args.students.split(",") if args.students is not None else None
    run_demo(
        args.out,
        device=args.device,
        preset=args.preset,
        data=args.data,
        students=students,
        teacher_epochs=args.teacher_epochs,
        student_epochs=args.student_epochs,
        fresh=args.fresh,
        progress=args.progress,
        test_data=args.test_data,
    )
    return 0
