"""Which optimisation defaults learn: the candidates behind ``c3d_distill.runs.recipes``.

Small temporal synthetic sets (5 classes x 32 videos, 160x120 at 8 fps, 2-4 s, seed 11: a 16-frame
clip spans 2 s of the motion) at width 1/8, 112x112 crops,
batch 8 — the shape a new user tries first on a CPU. Every candidate is chosen on a VALIDATION set that
is held out from both training and test: a second synthetic set made with another seed (new scenes,
new videos; ``list:`` over all of its videos). The test split of the first set is evaluated afterwards,
for the record only (``c3d-distill eval RUN --data synth:A``).

Stages (``--stage``):

- ``fresh``: ``c3d-distill train --model c3d`` with each candidate's flags (the old defaults first);
- ``distill``: ``c3d-distill distill --student S --init transfer`` from the best fresh teacher
  (by validation accuracy) with each candidate's flags;
- ``defaults``: the acceptance runs: ``train`` and ``distill`` (mc4, sp) with no optimisation flag at all
  (the recipes), on a set that is not the demo's (here: set A, 5 classes, seed 11, 160x120).

Runs live in ``--work`` (default /tmp/c3d-bench-recipes); a candidate whose run folder already holds
``eval.json`` and ``test.json`` is read back, not redone. Writes ``benches/results/recipes.json``
(candidates, flags, commands, validation and test clip/video accuracy, seconds) and prints a table.

    OMP_NUM_THREADS=1 .venv/bin/python benches/bench_recipes.py --stage fresh
    OMP_NUM_THREADS=1 .venv/bin/python benches/bench_recipes.py --stage distill
    OMP_NUM_THREADS=1 .venv/bin/python benches/bench_recipes.py --stage defaults
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _common import write_json

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "recipes.json"
CLI = [sys.executable, "-m", "c3d_distill"]

SET_A = {"classes": 5, "videos_per_class": 32, "seed": 11, "size": "160x120", "fps": 8, "duration": (2.0, 4.0)}
SET_V = {**SET_A, "videos_per_class": 8, "seed": 12}  # validation: other scenes, other videos
SHAPE = ["--width", "0.125", "--batch-size", "8", "--final-eval-clips", "3", "--threads", "1"]
OLD = ["--optimizer", "sgd", "--lr", "0.01", "--schedule", "cosine", "--dropout", "0.5",
       "--warmup-epochs", "0", "--weight-decay", "5e-4"]  # the defaults before the recipes (no clipping)

FRESH = {  # 30 epochs each
    "old defaults (sgd 0.01, dropout 0.5)": OLD,
    "adamw 1e-3, warm-up 1, no dropout, clip 5": [
        "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "1e-4", "--warmup-epochs", "1",
        "--dropout", "0", "--clip-grad", "5", "--schedule", "cosine"],
    "adamw 3e-3, warm-up 1, no dropout, clip 5": [
        "--optimizer", "adamw", "--lr", "3e-3", "--weight-decay", "1e-4", "--warmup-epochs", "1",
        "--dropout", "0", "--clip-grad", "5", "--schedule", "cosine"],
    "sgd 0.01, warm-up 1, no dropout, clip 5": [
        "--optimizer", "sgd", "--lr", "0.01", "--weight-decay", "5e-4", "--warmup-epochs", "1",
        "--dropout", "0", "--clip-grad", "5", "--schedule", "cosine"],
}


def student_flags(loss: str, optimizer: str, lr: str) -> list[str]:
    """A distill candidate: half a warm-up epoch, no dropout, the norm clipped to 5, cosine."""
    wd = "1e-4" if optimizer == "adamw" else "5e-4"
    return ["--loss", loss, "--optimizer", optimizer, "--lr", lr, "--weight-decay", wd, "--warmup-epochs", "0.5",
            "--dropout", "0", "--clip-grad", "5", "--schedule", "cosine"]


DISTILL = {  # 10 epochs each, transferred student; the loss is part of each candidate
    "old defaults (sgd 0.01, dropout 0.5)": ["--loss", "feature", *OLD],
    "sgd 3e-3, warm-up 0.5, no dropout, clip 5": student_flags("feature", "sgd", "3e-3"),
    "adamw 3e-4, warm-up 0.5, no dropout, clip 5": student_flags("feature", "adamw", "3e-4"),
    "sgd 0.01, warm-up 0.5, no dropout, clip 5": student_flags("feature", "sgd", "0.01"),
    # feature+kd: the head also learns from the teacher's logits (the teacher has a head for the classes)
    "feature+kd, sgd 0.01, warm-up 0.5, no dropout, clip 5": student_flags("feature+kd", "sgd", "0.01"),
    "feature+kd, adamw 1e-3, warm-up 0.5, no dropout, clip 5": student_flags("feature+kd", "adamw", "1e-3"),
}
STUDENTS = ("mc4", "sp")


def make_sets(work: Path) -> tuple[str, str]:
    """Set A (train/test) and the validation list over all of set V's videos."""
    from c3d_distill.datasets import load_ucf101, make_synthetic

    def mk(name: str, p: dict) -> Path:
        w, h = (int(v) for v in p["size"].split("x"))
        return make_synthetic(work / name, classes=p["classes"], videos_per_class=p["videos_per_class"],
                              seed=p["seed"], width=w, height=h, fps=p["fps"], duration=p["duration"], workers=1,
                              progress=False)

    a, v = mk("synthA", SET_A), mk("synthV", SET_V)
    classes = load_ucf101(a, split="train").classes
    (v / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    lines = []
    for split in ("train", "test"):
        vl = load_ucf101(v, split=split)
        lines += [f"{Path(p).relative_to(v)} {vl.classes[y]}\n" for p, y in vl.items]
    (v / "val.txt").write_text("".join(sorted(lines)))
    return f"synth:{a}", f"list:{v / 'val.txt'}"


def run_one(cmd: list[str], run_dir: Path, data: str) -> dict:
    """Train/distil (validation = the run's test data), then evaluate on set A's test split. A finished
    run in ``run_dir`` is reused only when it was made by the same command (the teacher's path is part
    of a distill command: a run distilled from another teacher is run again, not reported as this one)."""
    test_json, bench_json = run_dir / "test.json", run_dir / "bench.json"
    done = (run_dir / "eval.json").exists() and test_json.exists() and bench_json.exists()
    if not (done and json.loads(bench_json.read_text()).get("command") == shlex.join(cmd)):
        t0 = time.perf_counter()
        p = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True)
        secs = time.perf_counter() - t0
        log = (p.stdout + p.stderr).strip().splitlines()
        if p.returncode != 0:
            return {"command": shlex.join(cmd), "failed": log[-1] if log else f"rc {p.returncode}",
                    "seconds": round(secs, 1), "warnings": [x for x in log if "warning" in x.lower()]}
        subprocess.run(CLI + ["eval", str(run_dir), "--data", data, "--clips", "3", "--threads", "1",
                              "--no-progress", "--json", str(test_json)], check=True, capture_output=True)
        bench_json.write_text(json.dumps({"command": shlex.join(cmd), "seconds": secs, "log": log[-30:]}) + "\n")
    ev = json.loads((run_dir / "eval.json").read_text())
    te = json.loads(test_json.read_text())
    bench = json.loads(bench_json.read_text())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    train_rows = [r for r in rows if r["split"] == "train"]
    conf = json.loads((run_dir / "config.json").read_text())
    return {
        "command": shlex.join(cmd),
        "loss": conf["loss"],  # as the run recorded it (with no --loss: the default it chose)
        "val_clip_acc": ev["final_top1"],
        "val_video_acc": ev["final_video_acc"],
        "test_clip_acc": te.get("top1"),
        "test_video_acc": te.get("video_acc"),
        "final_train_loss": train_rows[-1]["loss"] if train_rows else None,
        "final_train_acc": train_rows[-1].get("top1") if train_rows else None,
        "seconds": round(bench["seconds"], 1),
        "warnings": [x for x in bench["log"] if "warning" in x.lower()],
    }


def base_cmd(mode: str, data: str, val: str, out: Path, epochs: int | None, extra: list[str]) -> list[str]:
    cmd = CLI + [mode, "--data", data, "--test-data", val, "--out", str(out), "--no-progress", *SHAPE]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    return cmd + extra


def load_results() -> dict:
    return json.loads(OUT.read_text()) if OUT.exists() else {}


def save(res: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_json(OUT, res, indent=2)  # paths under the temp folder are written as $TMPDIR/...


def fresh_dir(work: Path, name: str) -> Path:
    return work / "runs" / f"fresh_{slug(name)}"


def best_teacher(res: dict, work: Path) -> tuple[str, Path]:
    """The teacher of the distill stage, in this ``--work`` folder (the recorded ``run`` is portable, not a
    path to open): the one the recorded distill runs used (``distill_teacher_candidate``), else the fresh
    run with the best validation accuracy. Delete ``distill`` from the JSON to choose again."""
    ok = {k: v for k, v in res.get("fresh", {}).items() if "val_clip_acc" in v}
    if not ok:
        raise SystemExit("no finished fresh run: run --stage fresh first")
    name = res.get("distill_teacher_candidate") if res.get("distill") else None
    name = name or max(ok, key=lambda k: ok[k]["val_clip_acc"])
    path = fresh_dir(work, name)
    if not (path / "checkpoint.pt").exists():
        raise SystemExit(f"{path}: the teacher's fresh run ({name!r}) is not in --work {work}: run --stage fresh there")
    return name, path


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")[:48]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=("fresh", "distill", "defaults"), required=True)
    ap.add_argument("--work", default="/tmp/c3d-bench-recipes")
    ap.add_argument("--only", help="candidate numbers, comma-separated, 1-based in the stage's order (default all)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(args.work)
    data, val = make_sets(work)
    res = load_results()
    res["setup"] = {
        "set_a": SET_A, "set_v_validation": SET_V, "shape_flags": SHAPE,
        "selection": "validation clip accuracy (set V, held out from training and test); test = set A's "
                     "test split, recorded, not used to choose",
        "threads": "OMP_NUM_THREADS=1, loader --threads 1 (2 shared CPU cores)",
    }
    only = {int(x) for x in args.only.split(",")} if args.only else None
    if args.stage == "fresh":
        for i, (name, flags) in enumerate(FRESH.items(), start=1):
            if only and i not in only:
                continue
            out = fresh_dir(work, name)
            r = run_one(base_cmd("train", data, val, out, 30, ["--model", "c3d", *flags]), out, data)
            res.setdefault("fresh", {})[name] = {"run": str(out), "epochs": 30, **r}
            save(res)
            print(name, {k: r.get(k) for k in ("val_clip_acc", "test_clip_acc", "seconds", "failed")}, flush=True)
    elif args.stage == "distill":
        tname, teacher = best_teacher(res, work)
        res["distill_teacher"], res["distill_teacher_candidate"] = str(teacher), tname
        for student in STUDENTS:
            for i, (name, flags) in enumerate(DISTILL.items(), start=1):
                if only and i not in only:
                    continue
                out = work / "runs" / f"distill_{student}_{slug(name)}"
                cmd = base_cmd("distill", data, val, out, 10,
                               ["--teacher", str(teacher), "--student", student, "--init", "transfer", *flags])
                r = run_one(cmd, out, data)
                res.setdefault("distill", {}).setdefault(student, {})[name] = {"run": str(out), "epochs": 10, **r}
                save(res)
                print(student, name, {k: r.get(k) for k in ("val_clip_acc", "test_clip_acc", "seconds", "failed")},
                      flush=True)
    else:
        out = work / "runs" / "defaults_train_c3d"
        t = run_one(CLI + ["train", "--model", "c3d", "--data", data, "--test-data", val, "--out", str(out),
                           "--no-progress", *SHAPE], out, data)
        res["defaults"] = {"train_c3d": {"run": str(out), **t}}
        save(res)
        print("train c3d", {k: t.get(k) for k in ("val_clip_acc", "test_clip_acc", "seconds", "failed")}, flush=True)
        for student in STUDENTS:
            sout = work / "runs" / f"defaults_distill_{student}"
            cmd = CLI + ["distill", "--teacher", str(out), "--student", student, "--data", data, "--test-data",
                         val, "--out", str(sout), "--no-progress", *SHAPE]
            r = run_one(cmd, sout, data)
            if "test_clip_acc" in r and t.get("test_clip_acc"):
                r["kept_of_teacher_test"] = r["test_clip_acc"] / t["test_clip_acc"]
            res["defaults"][f"distill_{student}"] = {"run": str(sout), **r}
            save(res)
            print("distill", student, {k: r.get(k) for k in ("val_clip_acc", "test_clip_acc", "kept_of_teacher_test",
                                                               "seconds", "failed")}, flush=True)
    table(res)


def table(res: dict) -> None:
    print("\n| stage | candidate | val clip | test clip | test video | s |\n|---|---|---|---|---|---|")

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    for name, r in res.get("fresh", {}).items():
        print(f"| fresh c3d | {name} | {f(r.get('val_clip_acc'))} | {f(r.get('test_clip_acc'))} | "
              f"{f(r.get('test_video_acc'))} | {r.get('seconds')} {r.get('failed', '')} |")
    for student, cands in res.get("distill", {}).items():
        for name, r in cands.items():
            print(f"| distill {student} | {name} | {f(r.get('val_clip_acc'))} | {f(r.get('test_clip_acc'))} | "
                  f"{f(r.get('test_video_acc'))} | {r.get('seconds')} {r.get('failed', '')} |")
    for name, r in res.get("defaults", {}).items():
        print(f"| defaults | {name} | {f(r.get('val_clip_acc'))} | {f(r.get('test_clip_acc'))} | "
              f"{f(r.get('test_video_acc'))} | {r.get('seconds')} {r.get('failed', '')} |")


if __name__ == "__main__":
    main()
