"""Inference speed of every model, plain layers against the fast paths, side by side in one run.

For each batch size, every repetition times, interleaved: the reference convolutions (the measured
peak), then each model on the plain path and on the fast path (one forward of one batch of
(B, 3, 16, 112, 112) clips, inference mode). Reported: medians over repetitions, clips/s, ratios, the
per-stage time of the fast path with its GFLOP/s as a share of the peak, and a count_macs-based bound
(peak FLOP/s ÷ 2·MACs per clip) next to the measurement.

    .venv/bin/python benches/bench_models.py                 # batch 4 and 8, 3 repetitions
    .venv/bin/python benches/bench_models.py --batch 8 --reps 5 --models c3d,sp,mc4
    .venv/bin/python benches/bench_models.py --batch 8 --compile   # + torch.compile of the fast path

With ``--compile`` each model's fast path is also run through ``torch.compile`` (inductor, with
``freezing``: weights folded in and pre-packed for oneDNN), checked against the plain path (relative
error < 1e-5), timed in the same repetitions (whole forward only), and the targets are judged on each
model's best path ("every model at its fastest").

Writes benches/results/models_cpu.json (or --out) and prints markdown tables. The CPU is shared: the
load average before and after is recorded, and only ratios measured in the same repetition are fair.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from c3d_distill.memory import reusing_freed_memory
from c3d_distill.models import count_macs, create_model, layer_macs
from c3d_distill.models.fast import conv_relu

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_MODELS = "c3d,sp,sp_bn,mc3,mc4,mc5"
TARGET_PEAK_SHARE = 0.60
TARGETS_VS_C3D = {"sp": 1.5, "mc4": 1.1}
MAX_REL_ERR = 1e-5
PATHS = ("plain", "fast", "compiled")


class StageClock(dict):
    """Passed as ``stages`` to VideoNet._run: records when each conv stage finishes, keeps no tensors
    (so the fast path may still fuse a stage with its pool: that stage's time then includes the pool,
    which otherwise counts in the next stage's time)."""

    keeps_tensors = False

    def __init__(self, sync):
        super().__init__()
        self.sync = sync
        self.marks = [("start", time.perf_counter())]

    def __setitem__(self, key, value):
        self.sync()
        self.marks.append((key, time.perf_counter()))

    def durations(self) -> dict[str, float]:
        return {b: t1 - t0 for (_, t0), (b, t1) in zip(self.marks, self.marks[1:], strict=False)}


def peak_candidates(batch: int, device: str):
    """Large convolutions of the shapes these models run, each as fast as the fast path runs it.
    Returns name → (callable, FLOPs per call)."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device)

    cands = {}
    x = rnd(batch, 256, 8, 28, 28).contiguous(memory_format=torch.channels_last_3d)
    w, b = rnd(256, 256, 3, 3, 3) * 0.01, rnd(256)
    cands["conv3d 256→256 3³ @8×28² (NDHWC)"] = (
        lambda: conv_relu(x, w, b, (1, 1, 1)),
        2 * batch * 256 * 256 * 27 * 8 * 784,
    )
    x2 = rnd(batch, 1024, 14, 14)
    w2, b2 = rnd(2048, 1024, 3, 3) * 0.01, rnd(2048)
    cands["conv2d 1024→2048 3² @14² (NCHW)"] = (
        lambda: conv_relu(x2, w2, b2, (1, 1)),
        2 * batch * 2048 * 1024 * 9 * 196,
    )
    x3 = rnd(batch * 16, 64, 56, 56).contiguous(memory_format=torch.channels_last)
    w3, b3 = rnd(128, 64, 3, 3) * 0.01, rnd(128)
    cands["conv2d 64→128 3² @56² (NHWC)"] = (
        lambda: conv_relu(x3, w3, b3, (1, 1)),
        2 * batch * 16 * 128 * 64 * 9 * 3136,
    )
    return cands


def stage_flops(model, batch: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in layer_macs(model, (batch, 3, model.frames, *model.input_hw)):
        stage = row["layer"].split(".")[0]
        if stage.startswith("conv"):
            out[stage] = out.get(stage, 0) + 2 * row["macs"]
    return out


def run(args) -> dict:
    device = args.device
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.models.split(",") if n]
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpu": _cpu_name(),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "loadavg_before": os.getloadavg(),
        },
        "input": [3, 16, 112, 112],
        "reps": args.reps,
        "batches": {},
    }
    torch.manual_seed(0)
    for batch in args.batch:
        x = torch.randn(batch, 3, 16, 112, 112, device=device)
        models = {n: create_model(n, 101).to(device).eval() for n in names}
        peaks = peak_candidates(batch, device)
        times: dict[tuple[str, str], list[float]] = {}
        stage_times: dict[tuple[str, str], dict[str, list[float]]] = {}
        peak_times: dict[str, list[float]] = {k: [] for k in peaks}
        compiled = {}
        with torch.inference_mode():
            for fn, _ in peaks.values():  # warm-up: oneDNN primitive creation, allocator
                fn()
            for m in models.values():
                for fast in (False, True):
                    m.set_fast(fast)
                    m(x)
            if args.compile:
                compiled = compile_models(models, x)
            for rep in range(args.reps):
                for k, (fn, _) in peaks.items():
                    sync()
                    t0 = time.perf_counter()
                    fn()
                    sync()
                    peak_times[k].append(time.perf_counter() - t0)
                order = list(models.items())
                if rep % 2:  # alternate the order so neither path always runs first
                    order.reverse()
                for name, m in order:
                    for path in ("plain", "fast") if rep % 2 == 0 else ("fast", "plain"):
                        m.set_fast(path == "fast")
                        clock = StageClock(sync)
                        sync()
                        t0 = time.perf_counter()
                        m.head(m._run(x, clock))
                        sync()
                        times.setdefault((name, path), []).append(time.perf_counter() - t0)
                        for st, d in clock.durations().items():
                            stage_times.setdefault((name, path), {}).setdefault(st, []).append(d)
                    if name in compiled:
                        sync()
                        t0 = time.perf_counter()
                        compiled[name][0](x)
                        sync()
                        times.setdefault((name, "compiled"), []).append(time.perf_counter() - t0)
                print(f"  batch {batch} rep {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
        peak_rows = {k: peaks[k][1] / statistics.median(v) / 1e9 for k, v in peak_times.items()}
        peak = max(peak_rows.values())
        rows = []
        for name, m in models.items():
            macs = count_macs(m, (1, 3, 16, 112, 112))
            flops = stage_flops(m, batch)
            row = {"model": name, "gmacs_per_clip": macs / 1e9}

            for path in ("plain", "fast"):
                row[path] = {
                    **speed(times[(name, path)], batch, macs, peak),
                    "stages": {
                        st: {
                            "ms": 1e3 * statistics.median(v),
                            "gflops": flops[st] / statistics.median(v) / 1e9,
                            "peak_share": flops[st] / statistics.median(v) / 1e9 / peak,
                        }
                        for st, v in stage_times[(name, path)].items()
                    },
                }
            if name in compiled:
                row["compiled"] = {
                    **speed(times[(name, "compiled")], batch, macs, peak),
                    "max_rel_err_vs_plain": compiled[name][1],
                    "compile_s": compiled[name][2],
                }
            row["best_path"] = max(PATHS[1:], key=lambda p: row[p]["clips_s"] if p in row else 0.0)
            row["best"] = row[row["best_path"]]
            row["fast_over_plain"] = row["fast"]["clips_s"] / row["plain"]["clips_s"]
            row["bound_clips_s"] = peak * 1e9 / (2 * macs)
            row["bound_share_fast"] = row["fast"]["clips_s"] / row["bound_clips_s"]
            rows.append(row)
        by = {r["model"]: r for r in rows}
        if "c3d" in by:
            for r in rows:
                for path in PATHS:
                    if path in r:
                        r[path]["vs_c3d"] = r[path]["clips_s"] / by["c3d"][path]["clips_s"]
                # At its fastest, against c3d at its fastest.
                r["best_vs_c3d"] = r["best"]["clips_s"] / by["c3d"]["best"]["clips_s"]
                # The same ratio per repetition (the two ran seconds apart), whose median and range
                # show how much of a difference is the shared machine's drifting load.
                pairs = [
                    a / c
                    for a, c in zip(
                        r["best"]["clips_s_reps"], by["c3d"]["best"]["clips_s_reps"], strict=True
                    )
                ]
                r["best_vs_c3d_paired"] = {
                    "median": statistics.median(pairs),
                    "min": min(pairs),
                    "max": max(pairs),
                }
                r["bound_vs_c3d"] = by["c3d"]["gmacs_per_clip"] / r["gmacs_per_clip"]
        targets = {}
        for r in rows:
            targets[f"{r['model']} at its fastest ≥ {TARGET_PEAK_SHARE:.0%} of peak"] = (
                r["best"]["peak_share"] >= TARGET_PEAK_SHARE
            )
        for n, want in TARGETS_VS_C3D.items():
            if n in by and "c3d" in by:
                targets[f"{n} ≥ {want}× c3d, each at its fastest"] = by[n]["best_vs_c3d"] >= want
        result["batches"][str(batch)] = {
            "peak_gflops": peak,
            "peak_candidates_gflops": peak_rows,
            "models": rows,
            "targets": targets,
        }
    result["machine"]["loadavg_after"] = os.getloadavg()
    # Set by create_model (c3d_distill.memory); C3D_DISTILL_MALLOC=system measures without it.
    result["malloc"] = "reuse freed large blocks" if reusing_freed_memory() else "glibc default (mmap)"
    return result


def speed(ts: list[float], batch: int, macs: int, peak: float) -> dict:
    """clips/s (median and per repetition), GFLOP/s and share of the peak, from the times of a batch."""
    med = statistics.median(ts)
    gflops = 2 * macs * batch / med / 1e9
    return {"clips_s": batch / med, "clips_s_reps": [batch / t for t in ts], "gflops": gflops,
            "peak_share": gflops / peak}


def compile_models(models: dict, x: torch.Tensor) -> dict[str, tuple]:
    """``torch.compile`` of each model's fast path (a copy with the same weights), compiled on ``x``
    and checked against the plain path. Returns name → (compiled module, max relative error, compile
    seconds)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # fold the (inference) weights in and pre-pack them for oneDNN
    out = {}
    for name, m in models.items():
        twin = create_model(name, 101).to(x.device).eval()
        twin.load_state_dict(m.state_dict())
        twin.set_fast(True)
        t0 = time.perf_counter()
        cm = torch.compile(twin, dynamic=False)
        got = cm(x)
        seconds = time.perf_counter() - t0
        m.set_fast(False)
        want = m(x)
        err = ((got - want).abs().max() / want.abs().max()).item()
        if not err < MAX_REL_ERR:
            raise SystemExit(f"{name}: torch.compile output differs from the plain path (relative error {err:.2e})")
        print(f"  {name}: compiled in {seconds:.0f} s, relative error vs plain {err:.1e}", file=sys.stderr, flush=True)
        out[name] = (cm, err, seconds)
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return platform.processor() or "unknown"


def render(result: dict) -> str:
    out = []
    m = result["machine"]
    out.append(
        f"{m['device']} / {m['cpu']}, torch {m['torch']}, {m['torch_threads']} threads; load average "
        f"{m['loadavg_before'][0]:.1f} before, {m['loadavg_after'][0]:.1f} after; medians of {result['reps']} reps; "
        f"malloc: {result.get('malloc')}"
    )
    for batch, b in result["batches"].items():
        out.append("")
        cands = ", ".join(f"{k}: {v:.0f}" for k, v in b["peak_candidates_gflops"].items())
        out.append(f"### Batch {batch}: peak {b['peak_gflops']:.0f} GFLOP/s (best of {cands})")
        out.append("")
        out.append(
            "| model | GMACs/clip | plain clips/s | fast clips/s | fast/plain | fast vs c3d | "
            "bound vs c3d (MACs) | fast GFLOP/s | % of peak | bound clips/s | % of bound |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in b["models"]:
            out.append(
                f"| {r['model']} | {r['gmacs_per_clip']:.2f} | {r['plain']['clips_s']:.2f} | "
                f"{r['fast']['clips_s']:.2f} | {r['fast_over_plain']:.2f}× | {r['fast'].get('vs_c3d', float('nan')):.2f}× | "
                f"{r.get('bound_vs_c3d', float('nan')):.2f}× | {r['fast']['gflops']:.0f} | "
                f"{100 * r['fast']['peak_share']:.0f}% | {r['bound_clips_s']:.2f} | {100 * r['bound_share_fast']:.0f}% |"
            )
        out.append("")
        out.append("Per stage (fast path; plain in brackets): ms per batch, GFLOP/s as % of peak")
        out.append("")
        stages = list(b["models"][0]["fast"]["stages"])
        out.append("| model | " + " | ".join(stages) + " |")
        out.append("|---|" + "---:|" * len(stages))
        for r in b["models"]:
            cells = []
            for st in stages:
                f, p = r["fast"]["stages"][st], r["plain"]["stages"][st]
                cells.append(f"{f['ms']:.0f} ms {100 * f['peak_share']:.0f}% ({100 * p['peak_share']:.0f}%)")
            out.append(f"| {r['model']} | " + " | ".join(cells) + " |")
        if any("compiled" in r for r in b["models"]):
            out.append("")
            out.append("torch.compile (inductor, freezing) of the fast path, same repetitions:")
            out.append("")
            out.append(
                "| model | fast clips/s | compiled clips/s | compiled/fast | best | best vs c3d best | "
                "best % of peak | compile s | rel. error vs plain |"
            )
            out.append("|---|---:|---:|---:|---|---:|---:|---:|---:|")
            for r in b["models"]:
                c = r.get("compiled")
                if c is None:
                    continue
                out.append(
                    f"| {r['model']} | {r['fast']['clips_s']:.2f} | {c['clips_s']:.2f} | "
                    f"{c['clips_s'] / r['fast']['clips_s']:.2f}× | {r['best_path']} | "
                    f"{r.get('best_vs_c3d', float('nan')):.2f}× | {100 * r['best']['peak_share']:.0f}% | "
                    f"{c['compile_s']:.0f} | {c['max_rel_err_vs_plain']:.1e} |"
                )
        out.append("")
        paired = [
            f"{r['model']} {q['median']:.2f}× ({q['min']:.2f}–{q['max']:.2f})"
            for r in b["models"]
            if r["model"] != "c3d" and (q := r.get("best_vs_c3d_paired"))
        ]
        if paired:
            out.append("")
            out.append(
                "At its fastest vs c3d at its fastest, per repetition (median, range): " + ", ".join(paired)
            )
        out.append("")
        out.append(
            "Targets: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in b["targets"].items())
        )
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[4, 8])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the fast path")
    p.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "models_cpu.json")
    args = p.parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from _common import write_json

    write_json(args.out, result)
    print(render(result))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
