"""Run every benchmark in turn (``make bench``); each writes its JSON to benches/results/ and prints its table.

    .venv/bin/python benches/run_all.py                  # all of them (about an hour on 2 quiet cores)
    .venv/bin/python benches/run_all.py loader models    # some of them
    .venv/bin/python benches/run_all.py --quick          # a few minutes: smaller settings everywhere

The GPU figures are not here: they need the device machine (benches/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name: (script, full arguments, quick arguments)
BENCHES = {
    "loader": ("bench_loader.py", [], ["--quick"]),
    "models": ("bench_models.py", [], ["--batch", "4", "--reps", "1", "--models", "c3d,sp,mc4"]),
    "train": ("bench_train.py", [], ["--reps", "1", "--steps", "2", "--warmup", "1"]),
    "transfer": ("bench_transfer.py", [], ["--width", "0.25", "--seeds", "1"]),
    "memory": ("bench_memory.py", [], ["--clips", "3000", "--warmup", "1000", "--repeats", "1"]),
    "fuzz": ("fuzz.py", [], ["--cases", "100"]),
    "fused_pool": ("bench_fused_pool.py", [], ["--batch", "2", "--reps", "1"]),
    "export": ("bench_export.py", [], ["--models", "sp", "--reps", "1"]),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHES)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="smaller settings: a smoke run, not figures to quote")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    failed = []
    for name in args.names or list(BENCHES):
        script, full, quick = BENCHES[name]
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        if args.quick:  # a smoke run must not overwrite the recorded figures in benches/results/
            cmd += ["--out", str(HERE / "results" / "tmp" / f"{name}_quick.json")]
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        t = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"=== {name}: exit {rc} after {time.perf_counter() - t:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
