"""How close each transferred student starts to the teacher: pool5 feature error and cosine.

For each student (default mc3, mc4, mc5, sp, sp_bn) at the teacher's width (full width for the random
teacher), two ways of filling its weights, side by side on the same teacher and probe clips:

- ``closed form``: the weights computed from the teacher's kernels alone — an MC "a" conv gets the
  block-banded expansion ``W2[o·T+t', i·T+t] = W3[o, i, t−t'+1]`` (exact), a "b" conv the mean of the band
  rows of each frame pair (its max pool over time becomes a mean), an SP stage the rank-Cout SVD of the
  3×3×3 kernel as a (Cout·3)×(Cin·9) matrix (``calibrate=False, sp_mode="svd"``);
- ``default``: what ``transfer()`` does by default — plus the per-channel calibration of the approximate
  stages and, for SP, the choice of signed pairs where they do better (``calibrate=True, sp_mode="auto"``);

and, as the anchor, a randomly initialised student of the same kind. Errors are measured on held-out
probe clips (the second half of the probe batch). Teachers: a randomly initialised ``c3d`` (one per seed;
medians over seeds), and with ``--teacher CKPT`` a trained one (a c3d-distill run / checkpoint or a public
C3D state dict). Results for (teacher, student) pairs not measured in this run are kept from the
existing JSON, so ``--teacher runs/demo/teacher --no-random`` adds the trained column later.

    .venv/bin/python benches/bench_transfer.py                         # random teacher, full width
    .venv/bin/python benches/bench_transfer.py --teacher RUN --no-random --probe-data synth:DIR

Writes benches/results/transfer.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from c3d_distill.models import create_model
from c3d_distill.transfer import make_probe, transfer
from c3d_distill.transfer.cli import load_teacher, probe_from_data

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "transfer.json"
MODES = {"closed form": dict(calibrate=False, sp_mode="svd"), "default": dict(calibrate=True, sp_mode="auto")}


def measure(teacher, students, probes, seed_label, seed0=0):
    rows = []
    for name in students:
        for mode, kw in MODES.items():
            for i, probe in enumerate(probes):
                t0 = time.perf_counter()
                _, rep = transfer(teacher, name, probe=probe, seed=seed0 + i, **kw)
                dt = time.perf_counter() - t0
                rows.append(dict(teacher=seed_label(i), student=name, mode=mode,
                                 feature_rel_err=rep.feature_rel_err, feature_cosine=rep.feature_cosine,
                                 random_feature_rel_err=rep.random_feature_rel_err,
                                 random_feature_cosine=rep.random_feature_cosine, seconds=dt,
                                 layers=[{k: r[k] for k in ("layer", "kind", "method", "weight_rel_err",
                                                            "act_rel_err")} for r in rep.rows]))
                print(f"  {seed_label(i)} {name:6s} {mode:12s} rel_err {rep.feature_rel_err:.4f} cos "
                      f"{rep.feature_cosine:.4f} (random {rep.random_feature_rel_err:.4f}) {dt:.1f}s",
                      file=sys.stderr, flush=True)
    return rows


def summarise(rows):
    """Median over seeds per (teacher kind, student, mode)."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["teacher"].split("#")[0], r["student"], r["mode"]), []).append(r)
    out = []
    for (tk, st, mode), rs in groups.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("feature_rel_err", "feature_cosine",
                                                                   "random_feature_rel_err", "random_feature_cosine")}
        out.append(dict(teacher=tk, student=st, mode=mode, n=len(rs), **med,
                        ratio=med["random_feature_rel_err"] / max(med["feature_rel_err"], 1e-12)))
    modes = list(MODES)
    return sorted(out, key=lambda s: (not s["teacher"].startswith("random"), s["teacher"], s["student"],
                                      modes.index(s["mode"])))


def table(summary):
    lines = ["| teacher | student | weights | pool5 rel_err | cosine | random init rel_err | random init cosine | "
             "ratio | n |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        lines.append(f"| {s['teacher']} | {s['student']} | {s['mode']} | {s['feature_rel_err']:.3f} | "
                     f"{s['feature_cosine']:.3f} | {s['random_feature_rel_err']:.3f} | "
                     f"{s['random_feature_cosine']:.3f} | {s['ratio']:.1f}× | {s['n']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", default="mc3,mc4,mc5,sp,sp_bn")
    ap.add_argument("--width", type=float, default=1.0, help="random teacher's width (1.0 = full)")
    ap.add_argument("--size", type=int, default=112, help="random teacher's input size (112)")
    ap.add_argument("--seeds", type=int, default=2, help="random teachers (and probe batches) to take the median over")
    ap.add_argument("--probe-clips", type=int, default=4, help="clips per probe batch: half fit, half measure (4)")
    ap.add_argument("--teacher", default=None, help="a trained teacher checkpoint / run folder")
    ap.add_argument("--probe-data", default=None, metavar="SPEC",
                    help="probe clips from a data set for the trained teacher (default: synthetic smooth noise)")
    ap.add_argument("--no-random", action="store_true", help="skip the random teacher (keep its stored results)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    students = [s for s in args.students.split(",") if s]
    rows, config = [], {"modes": {k: v for k, v in MODES.items()},
                        "probe_clips": args.probe_clips, "threads": torch.get_num_threads()}
    if not args.no_random:
        config["random"] = dict(width=args.width, size=args.size, frames=16, seeds=args.seeds)
        for seed in range(args.seeds):
            torch.manual_seed(1000 + seed)
            teacher = create_model("c3d", width=args.width, size=args.size).eval()
            probe = make_probe(args.probe_clips, 16, args.size, seed=seed)
            rows += measure(teacher, students, [probe], lambda i, s=seed: f"random c3d#{s}", seed0=seed)
    if args.teacher:
        teacher, meta = load_teacher(args.teacher)
        if args.probe_data:
            probe = probe_from_data(args.probe_data, args.probe_clips, meta["frames"], meta["size"])
        else:
            probe = make_probe(args.probe_clips, meta["frames"], meta["size"], seed=0)
        label = f"trained ({Path(args.teacher).name}, width {meta['width']:g})"
        config["trained"] = dict(path=str(args.teacher), meta=meta, probe_data=args.probe_data)
        rows += measure(teacher, students, [probe], lambda i: label)
    out = Path(args.out)
    old = json.loads(out.read_text()) if out.exists() else {}
    measured = {(r["teacher"].split("#")[0], r["student"]) for r in rows}
    kept = [r for r in old.get("rows", []) if (r["teacher"].split("#")[0], r["student"]) not in measured]
    rows = kept + rows
    for k in ("random", "trained"):
        if k not in config and k in old.get("config", {}):
            config[k] = old["config"][k]
    config["students"] = list(dict.fromkeys(r["student"] for r in rows))
    summary = summarise(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    from _common import write_json

    write_json(out, {"config": config, "summary": summary, "rows": rows}, indent=2)
    print(table(summary))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
