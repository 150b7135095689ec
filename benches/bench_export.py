"""Export to ONNX and how fast ONNX Runtime runs the file on the CPU, against eager PyTorch.

For each model (full width, the 101-class head, 16×112×112 clips): ``export_model(..., "onnx")`` timed
(the export, then its check: the file loaded in ONNX Runtime and compared with the eager model at batch 1
and 3), then batch-1 latency of the same weights three ways, interleaved repetition by repetition (the
order reversed every other one): eager on the plain layers, eager on the fast path, and the exported file
in ONNX Runtime's CPU provider (default graph optimisations, ``--threads`` intra-op threads like torch's).
Medians of ``--reps`` after one warm-up call each.

    .venv/bin/python benches/bench_export.py                       # c3d, sp, mc4; about 3 minutes on 2 cores
    .venv/bin/python benches/bench_export.py --models sp --reps 3

Writes benches/results/export_cpu.json (or --out) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_models import _cpu_name
from c3d_distill.export import export_model
from c3d_distill.models import create_model

ROOT = Path(__file__).resolve().parent.parent
NUM_CLASSES = 101
INPUT = (3, 16, 112, 112)


def _ms(fn, x) -> float:
    t = time.perf_counter()
    fn(x)
    return (time.perf_counter() - t) * 1e3


def bench_model(name: str, reps: int, threads: int, tmp: Path) -> dict:
    import onnxruntime as ort

    torch.manual_seed(0)
    fast = create_model(name, NUM_CLASSES, fast=True).eval()
    plain = create_model(name, NUM_CLASSES, fast=False).eval()
    plain.load_state_dict(fast.state_dict())
    out = tmp / f"{name}.onnx"
    t = time.perf_counter()
    res = export_model(fast, "onnx", out)
    total = time.perf_counter() - t
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    ort_model = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])

    def onnx(x):
        return ort_model.run(None, {"clip": x.numpy()})[0]

    runners = {"eager plain": plain, "eager fast": fast, "onnxruntime": onnx}
    x = torch.randn(1, *INPUT)
    times: dict[str, list[float]] = {k: [] for k in runners}
    with torch.inference_mode():
        for fn in runners.values():
            fn(x)  # warm-up: oneDNN primitives, ORT's first-run allocations
        for r in range(reps):
            order = list(runners) if r % 2 == 0 else list(reversed(runners))
            for k in order:
                times[k].append(_ms(runners[k], x))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": name,
        "onnx_bytes": out.stat().st_size,
        "export_s": res.export_seconds,
        "check_s": res.check_seconds,
        "export_and_check_s": total,
        "check_rel_error": {c.batch: c.rel_error for c in res.checks},
        "opset": res.opset,
        "median_ms": med,
        "ms": times,
        "onnxruntime_vs_eager_fast": med["onnxruntime"] / med["eager fast"],
        "onnxruntime_vs_eager_plain": med["onnxruntime"] / med["eager plain"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="c3d,sp,mc4")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads (1)")
    ap.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "export_cpu.json")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows.append(bench_model(name, args.reps, args.threads, Path(tmp)))
            print(f"{name}: done", file=sys.stderr, flush=True)
    result = {
        "machine": {
            "cpu": _cpu_name(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "threads": args.threads,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "input": [1, *INPUT],
        "num_classes": NUM_CLASSES,
        "reps": args.reps,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    print(
        f"{m['cpu']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, {m['threads']} thread(s); load "
        f"average {m['loadavg_before'][0]:.1f} before, {m['loadavg_after'][0]:.1f} after; batch 1, "
        f"{'×'.join(map(str, INPUT))}, medians of {args.reps} reps"
    )
    print()
    print("| model | export + check (s) | ONNX MB | eager plain (ms) | eager fast (ms) | ONNX Runtime (ms) | ORT / fast |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        med = r["median_ms"]
        print(
            f"| {r['model']} | {r['export_s']:.1f} + {r['check_s']:.1f} | {r['onnx_bytes'] / 1e6:.0f} | "
            f"{med['eager plain']:.0f} | {med['eager fast']:.0f} | {med['onnxruntime']:.0f} | "
            f"{r['onnxruntime_vs_eager_fast']:.2f} |"
        )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
