"""What the fused Rust temporal-conv + ReLU + pool kernel (rust/conv.rs) gains, side by side in one run.

Every repetition times, alternating which goes first: c3d's fast path, then sp (and sp_bn) on the fast
path with the kernel (``c3d_distill.models.fast.FUSE_POOL = True``) and without it (oneDNN's
(3,1,1) conv, then ``max_pool3d``), one forward of one batch each, inference mode; and the two fused
stages alone (conv1 + pool1, conv2 + pool2) and their temporal conv + pool alone, both ways. Reported: medians, the per-repetition ratio
(fused / unfused, and each against c3d of the same repetition, the pair seconds apart) with its range.

    .venv/bin/python benches/bench_fused_pool.py                    # batch 8, 9 repetitions
    .venv/bin/python benches/bench_fused_pool.py --reps 15 --models sp

Writes benches/results/fused_pool.json (or --out) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import native_module, write_json
from c3d_distill.models import create_model
from c3d_distill.models import fast as fast_mod

ROOT = Path(__file__).resolve().parent.parent


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def stage_fn(model, name: str, x: torch.Tensor):
    """One SP stage and the pool after it, on the fast path, from a channels-last-3d input."""
    st = next(s for s in model.plan if s.name == name)
    mod = getattr(model, name)

    def run():
        y, pooled = fast_mod.sp_stage(x, mod, st.pool)
        if not pooled:
            k, s, p = st.pool
            y = F.max_pool3d(y, k, s, p)
        return y

    return run


def temporal_fn(mod, y: torch.Tensor, pool):
    """An SP stage's temporal conv + ReLU + pool alone: fused when ``FUSE_POOL``, else oneDNN + pool."""
    k, s, p = pool

    def run():
        pt = fast_mod._can_fuse_pool(y, mod.temporal.weight, pool)
        if pt is not None:
            return fast_mod.temporal_conv_pool(y, mod.temporal.weight, mod.temporal.bias, pt)
        return F.max_pool3d(fast_mod.conv_relu(y, mod.temporal.weight, mod.temporal.bias, (1, 0, 0)), k, s, p)

    return run


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(args) -> dict:
    torch.manual_seed(0)
    names = [n for n in args.models.split(",") if n]
    x = torch.randn(args.batch, 3, 16, 112, 112)
    models = {n: create_model(n, 101).eval() for n in ["c3d", *names]}
    # Inputs of conv1 and conv2 as the fast path has them (channels-last-3d), from sp's own layers.
    sp = models[names[0]]
    with torch.inference_mode():
        stages = sp.forward_stages(x)
    x1 = x.contiguous(memory_format=torch.channels_last_3d)
    x2 = F.max_pool3d(stages["conv1"], (1, 2, 2), (1, 2, 2)).contiguous(memory_format=torch.channels_last_3d)
    parts = {"conv1+pool1": stage_fn(sp, "conv1", x1), "conv2+pool2": stage_fn(sp, "conv2", x2)}
    # The fused op alone: each temporal conv + ReLU + pool on its real input (the spatial conv's output).
    for name, xin in (("conv1", x1), ("conv2", x2)):
        st = next(s for s in sp.plan if s.name == name)
        mod = getattr(sp, name)
        frames = fast_mod.frames_view(xin)
        w, b = mod.spatial.weight[:, :, 0], mod.spatial.bias
        with torch.inference_mode():
            y = fast_mod.from_frames(fast_mod.conv_relu(frames, w, b, (1, 1)), xin.shape[0])
        parts[f"{name} temporal+pool only"] = temporal_fn(mod, y, st.pool)
    times: dict[str, list[float]] = {}

    def record(key, fn):
        times.setdefault(key, []).append(timed(fn))

    with torch.inference_mode():
        for fused in (True, False):  # warm-up both ways, and check they agree
            fast_mod.FUSE_POOL = fused
            outs = [m(x) for m in models.values()]
            if fused:
                ref = outs
            else:
                for a, b in zip(ref, outs, strict=True):
                    err = ((a - b).norm() / b.norm()).item()
                    if not err < 1e-5:
                        raise SystemExit(f"fused and unfused paths differ: relative error {err:.1e}")
            for fn in parts.values():
                fn()
        for rep in range(args.reps):
            order = (True, False) if rep % 2 == 0 else (False, True)
            record("c3d", lambda: models["c3d"](x))
            for fused in order:
                fast_mod.FUSE_POOL = fused
                tag = "fused" if fused else "unfused"
                for n in names:
                    record(f"{n} {tag}", lambda n=n: models[n](x))
                for part, fn in parts.items():
                    record(f"{part} {tag}", fn)
            print(f"  rep {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    fast_mod.FUSE_POOL = True
    rows = {}
    for key, ts in times.items():
        rows[key] = {"ms": summary([1e3 * t for t in ts])}
        if not key.startswith("conv"):
            rows[key]["clips_s"] = args.batch / statistics.median(ts)
    ratios = {}
    for n in [*names, *parts]:
        f, u = times[f"{n} fused"], times[f"{n} unfused"]
        ratios[f"{n}: fused speed-up"] = summary([b / a for a, b in zip(f, u, strict=True)])
    for n in names:
        for tag in ("fused", "unfused"):
            ratios[f"{n} {tag} vs c3d"] = summary(
                [c / t for c, t in zip(times["c3d"], times[f"{n} {tag}"], strict=True)]
            )
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "native_module": native_module(),
        "batch": args.batch,
        "reps": args.reps,
        "torch_threads": torch.get_num_threads(),
        "loadavg": os.getloadavg(),
        "rows": rows,
        "ratios": ratios,
    }


def table(result: dict) -> str:
    out = [
        f"batch {result['batch']}, {result['reps']} repetitions, {result['torch_threads']} threads, "
        f"load average {result['loadavg'][0]:.1f} at the end",
        "",
        "| run | median ms | range ms | clips/s |",
        "|---|---:|---:|---:|",
    ]
    for key, r in result["rows"].items():
        ms = r["ms"]
        cps = f"{r['clips_s']:.2f}" if "clips_s" in r else ""
        out.append(f"| {key} | {ms['median']:.0f} | {ms['min']:.0f}–{ms['max']:.0f} | {cps} |")
    out += ["", "| per-repetition ratio | median | range |", "|---|---:|---:|"]
    for key, r in result["ratios"].items():
        out.append(f"| {key} | {r['median']:.2f}× | {r['min']:.2f}–{r['max']:.2f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--models", default="sp,sp_bn", help="SP models to time (the first one's stages too)")
    p.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "fused_pool.json")
    args = p.parse_args(argv)
    if not fast_mod.fused_pool_available():
        print("skipped: the fused kernel needs AVX-512F, which this CPU does not have")
        return 0
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    print(table(result))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
