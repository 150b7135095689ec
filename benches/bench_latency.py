"""CPU latency of every model at batch 1 (deployment), and how far sp is from what its MACs allow.

Side by side in one run, interleaved repetition by repetition (the order reversed every other one):

1. batch 1, full width and width 0.125: every model (with the 101-class head) on the plain layers, on
   the fast path, and on the fast path with the conv weights stored channels-last (``fast+clw``: same
   values; the fast path otherwise leaves oneDNN to re-lay every weight out on every call, which at
   batch 1 is not small), one clip per call, inference mode; median milliseconds, each conv stage's time;
2. batch 8, full width: every model on the fast path (``--b8-extra`` models also plain and fast+clw)
   and the reference convolutions of bench_models.py (the measured peak), clips/s, sp/c3d and mc4/c3d
   per repetition, each model's MAC bound (count_macs of c3d over the model's) and its share of it;
3. sp's remaining gap to its MAC bound, stage by stage: the time each sp stage would take at c3d's
   efficiency on the matching c3d stage (c3d's stage time × sp's MACs / c3d's) against what it takes.
   A stage's time runs from the end of the previous stage to the end of its own conv, so it holds the
   pool before it; the fast path fuses sp's pool1 and pool2 into conv1 and conv2 instead, so compare
   conv1–conv3a together (the "conv1-conv3a" row) rather than one by one;
4. a torch.profiler pass of sp and c3d at batch 1 (fast, fast+clw): the operators that take the time,
   and how much of it is copying weights rather than activations.

    .venv/bin/python benches/bench_latency.py                      # about 4 minutes on 2 cores
    .venv/bin/python benches/bench_latency.py --reps 3 --b8-reps 2 --models c3d,sp,mc4

Writes benches/results/latency_cpu.json (or --out) and prints markdown tables. The CPU is shared: only
ratios measured in the same repetition are fair; the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from bench_models import StageClock, _cpu_name, peak_candidates
from c3d_distill.models import count_macs, create_model, list_models

ROOT = Path(__file__).resolve().parent.parent
NUM_CLASSES = 101
INPUT = (3, 16, 112, 112)
WIDTHS = (1.0, 0.125)
EARLY = ("conv1", "conv2", "conv3a")
B1_PATHS = ("plain", "fast", "fast+clw")  # the stages whose pools the fast path of sp moves around


def _native() -> dict | None:
    try:
        from _common import native_module

        return native_module()
    except Exception as exc:  # the build record is optional; the measurements are not
        return {"unavailable": repr(exc)}


def stage_macs(model) -> dict[str, int]:
    """MACs per clip of each conv stage, from the model's plan (both SP convs in one stage)."""
    out = {}
    for st in model.plan:
        h, w = st.hw
        if st.kind == "3d":
            out[st.name] = st.cout * st.t_out * h * w * st.cin * 27
        elif st.kind == "sp":
            out[st.name] = st.t_out * h * w * st.cout * (st.cin * 9 + st.cout * 3)
        else:
            out[st.name] = st.cout * h * w * st.cin * 9
    return out


def run_once(model, x, fast: bool) -> tuple[float, dict[str, float]]:
    """One forward (features and head) on the given path: seconds, and each stage's seconds."""
    model.set_fast(fast)
    clock = StageClock(lambda: None)
    t0 = time.perf_counter()
    model.head(model._run(x, clock))
    total = time.perf_counter() - t0
    return total, clock.durations()


def channels_last_weights(model):
    """The conv weights of the stages the fast path runs channels-last, stored channels-last (same
    values): otherwise oneDNN re-lays each of them out on every call. Those are the SP stages and the
    3-D stages at 28² and up (below that the fast path runs NCDHW)."""
    for st in model.plan:
        if st.kind == "sp" or (st.kind == "3d" and min(st.hw) >= 28):
            for p in getattr(model, st.name).parameters():
                if p.dim() == 5:
                    p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
    return model


def build(names, width, paths) -> dict:
    """(name, path) → (model, fast flag); ``fast+clw`` gets its own copy with channels-last weights."""
    torch.manual_seed(0)
    entries = {}
    for n in names:
        m = create_model(n, NUM_CLASSES, width=width).eval()
        for path in paths[n]:
            if path == "fast+clw":
                entries[(n, path)] = (channels_last_weights(copy.deepcopy(m)), True)
            else:
                entries[(n, path)] = (m, path == "fast")
    return entries


def measure(entries: dict, x: torch.Tensor, reps: int, label: str, extra=None) -> dict:
    """Interleaved repetitions of every (model, path) entry (model by model, the order of models and
    of paths reversed every other repetition); ``extra`` (name → callable) is timed in each repetition
    too. Returns (model, path) → {"s": [...], "stages": {stage: [...]}} and extra name → [...]."""
    res: dict = {}
    names = list(dict.fromkeys(n for n, _ in entries))
    with torch.inference_mode():
        for m, fast in entries.values():  # warm-up: oneDNN primitives, allocator, the fused kernel
            run_once(m, x, fast)
        for fn in (extra or {}).values():
            fn()
        for rep in range(reps):
            for k, fn in (extra or {}).items():
                t0 = time.perf_counter()
                fn()
                res.setdefault(k, []).append(time.perf_counter() - t0)
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                keys = [k for k in entries if k[0] == name]
                for key in keys if rep % 2 == 0 else keys[::-1]:
                    m, fast = entries[key]
                    total, stages = run_once(m, x, fast)
                    r = res.setdefault(key, {"s": [], "stages": {}})
                    r["s"].append(total)
                    for st, d in stages.items():
                        r["stages"].setdefault(st, []).append(d)
            print(f"  {label}: rep {rep + 1}/{reps} done (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return res


def med_ms(v: list[float]) -> float:
    return 1e3 * statistics.median(v)


def tail_ms(r: dict) -> float:
    """Median over repetitions of what follows the last conv stage (pool5, flatten, head): per
    repetition, since medians of the parts need not add up to the median of the whole."""
    per_rep = [t - sum(v[i] for v in r["stages"].values()) for i, t in enumerate(r["s"])]
    return med_ms(per_rep)


def paired(a: list[float], b: list[float]) -> dict:
    """Per-repetition ratio b/a of two time series (a faster → ratio > 1 means a is that many times faster)."""
    q = [y / x for x, y in zip(a, b, strict=True)]
    return {"median": statistics.median(q), "min": min(q), "max": max(q)}


def latency_section(names, width, reps) -> dict:
    paths = {n: B1_PATHS for n in names}
    entries = build(names, width, paths)
    x = torch.randn(1, *INPUT)
    res = measure(entries, x, reps, f"batch 1 width {width}")
    models = {n: entries[(n, "plain")][0] for n in names}
    out = {"width": width, "batch": 1, "reps": reps, "paths": list(B1_PATHS), "models": {},
           "stage_macs_per_clip": {n: stage_macs(m) for n, m in models.items()}}
    for n, m in models.items():
        row = {"gmacs_per_clip": count_macs(m, (1, *INPUT)) / 1e9}
        for path in B1_PATHS:
            r = res[(n, path)]
            row[path] = {"ms": med_ms(r["s"]), "ms_reps": [1e3 * s for s in r["s"]],
                         "clips_s": 1 / statistics.median(r["s"]),
                         "stages": {st: {"ms": med_ms(v)} for st, v in r["stages"].items()},
                         "tail_ms": tail_ms(r)}
        row["fast_over_plain"] = row["plain"]["ms"] / row["fast"]["ms"]
        row["clw_over_fast"] = paired(res[(n, "fast+clw")]["s"], res[(n, "fast")]["s"])
        out["models"][n] = row
    if "c3d" in models:
        c3d = out["models"]["c3d"]
        for n, row in out["models"].items():
            row["mac_bound_vs_c3d"] = c3d["gmacs_per_clip"] / row["gmacs_per_clip"]
            for path in B1_PATHS:
                row[path]["vs_c3d"] = paired(res[(n, path)]["s"], res[("c3d", path)]["s"])
            row["fast_share_of_mac_bound"] = row["fast"]["vs_c3d"]["median"] / row["mac_bound_vs_c3d"]
    return out


def throughput_section(names, batch, reps, extra_models) -> dict:
    paths = {n: ("plain", "fast", "fast+clw") if n in extra_models else ("fast",) for n in names}
    entries = build(names, 1.0, paths)
    models = {n: entries[(n, "fast")][0] for n in names}
    x = torch.randn(batch, *INPUT)
    peaks = peak_candidates(batch, "cpu")
    res = measure(entries, x, reps, f"batch {batch}", {k: fn for k, (fn, _) in peaks.items()})
    peak_by = {k: peaks[k][1] / statistics.median(res[k]) / 1e9 for k in peaks}
    peak = max(peak_by.values())
    out = {"batch": batch, "reps": reps, "peak_gflops": peak, "peak_candidates_gflops": peak_by, "models": {}}
    macs = {n: count_macs(m, (1, *INPUT)) for n, m in models.items()}
    for n, m in models.items():
        sm = stage_macs(m)
        row = {"gmacs_per_clip": macs[n] / 1e9}
        for path in paths[n]:
            r = res[(n, path)]
            s = statistics.median(r["s"])
            row[path] = {
                "clips_s": batch / s, "clips_s_reps": [batch / t for t in r["s"]],
                "gflops": 2 * macs[n] * batch / s / 1e9, "peak_share": 2 * macs[n] * batch / s / 1e9 / peak,
                "stages": {st: {"ms": med_ms(v), "gflops": 2 * sm[st] * batch / statistics.median(v) / 1e9,
                                "peak_share": 2 * sm[st] * batch / statistics.median(v) / 1e9 / peak}
                           for st, v in r["stages"].items()},
                "tail_ms": tail_ms(r),
            }
        out["models"][n] = row
    if "c3d" in models:
        for n, row in out["models"].items():
            row["mac_bound_vs_c3d"] = macs["c3d"] / macs[n]
            for path in paths[n]:
                if path in paths["c3d"]:
                    row[path]["vs_c3d"] = paired(res[(n, path)]["s"], res[("c3d", path)]["s"])
            row["fast_share_of_mac_bound"] = row["fast"]["vs_c3d"]["median"] / row["mac_bound_vs_c3d"]
        out["stage_macs_per_clip"] = {n: stage_macs(m) for n, m in models.items()}
    return out


def sp_gap(section: dict, student: str = "sp", path: str = "fast") -> dict | None:
    """Where sp's time goes beyond its MAC bound, against c3d on the same path in the same run."""
    ms = section["models"]
    if student not in ms or "c3d" not in ms or path not in ms[student] or path not in ms["c3d"]:
        return None
    macs = section["stage_macs_per_clip"]
    s_st, c_st = ms[student][path]["stages"], ms["c3d"][path]["stages"]
    rows = {}
    for st in s_st:
        bound = c_st[st]["ms"] * macs[student][st] / macs["c3d"][st]
        rows[st] = {"ms": s_st[st]["ms"], "c3d_ms": c_st[st]["ms"], "mac_ratio_vs_c3d": macs[student][st] / macs["c3d"][st],
                    "bound_ms": bound, "excess_ms": s_st[st]["ms"] - bound}
    early = {k: sum(rows[st][k] for st in EARLY) for k in ("ms", "c3d_ms", "bound_ms", "excess_ms")}
    early["mac_ratio_vs_c3d"] = sum(macs[student][st] for st in EARLY) / sum(macs["c3d"][st] for st in EARLY)
    total_s = 1e3 * section["batch"] / ms[student][path]["clips_s"]
    total_c = 1e3 * section["batch"] / ms["c3d"][path]["clips_s"]
    bound_total = total_c / ms[student]["mac_bound_vs_c3d"]
    return {
        "student": student, "path": path, "batch": section["batch"],
        "ms_per_batch": total_s, "c3d_ms_per_batch": total_c, "bound_ms_per_batch": bound_total,
        "vs_c3d": ms[student][path]["vs_c3d"]["median"], "mac_bound_vs_c3d": ms[student]["mac_bound_vs_c3d"],
        # How many times faster sp would have to get to run at c3d's efficiency (1.0 = at its bound).
        "remaining_factor": ms[student]["mac_bound_vs_c3d"] / ms[student][path]["vs_c3d"]["median"],
        "stages": rows, "conv1-conv3a": early,
        "tail_ms": {"student": ms[student][path]["tail_ms"], "c3d": ms["c3d"][path]["tail_ms"]},
    }


def weight_shapes(model) -> set[tuple[int, ...]]:
    """Shapes of the conv weights as the fast path hands them to oneDNN (SP spatial ones squeezed)."""
    out = set()
    for p in model.parameters():
        if p.dim() >= 4:
            out.add(tuple(p.shape))
        if p.dim() == 5 and p.shape[2] == 1:
            out.add((p.shape[0], p.shape[1], p.shape[3], p.shape[4]))
    return out


def op_profile(names, reps: int = 2) -> dict:
    """Self CPU time per operator at batch 1, full width, on the fast path and with channels-last
    weights (after a warm-up call), and how much of it is copies of weights (oneDNN re-laying a
    weight out to match a channels-last activation, every call) rather than of activations."""
    from torch.profiler import ProfilerActivity, profile

    out = {}
    x = torch.randn(1, *INPUT)
    entries = build(names, 1.0, {n: ("fast", "fast+clw") for n in names})
    for (n, path), (m, _) in entries.items():
        wshapes = weight_shapes(m)
        with torch.inference_mode():
            m.set_fast(True)
            m(x)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                for _ in range(reps):
                    m(x)
        rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in rows) or 1.0
        copies = {"weights": 0.0, "activations": 0.0}
        for e in prof.events():
            if e.name == "aten::copy_" and e.input_shapes:
                kind = "weights" if tuple(e.input_shapes[0]) in wshapes else "activations"
                copies[kind] += e.self_cpu_time_total
        out[f"{n} {path}"] = {
            "calls": reps, "ms_per_call": total / reps / 1e3,
            "copy_ms_per_call": {k: v / reps / 1e3 for k, v in copies.items()},
            "copy_share": {k: v / total for k, v in copies.items()},
            "top_ops": [{"op": e.key, "ms": e.self_cpu_time_total / reps / 1e3,
                         "share": e.self_cpu_time_total / total, "count": e.count // reps} for e in rows[:10]],
        }
    return out


def render(r: dict) -> str:
    m = r["machine"]
    out = [f"{m['cpu']}, torch {m['torch']}, {m['torch_threads']} threads; load {m['loadavg_before'][0]:.1f} before, "
           f"{m['loadavg_after'][0]:.1f} after; medians; ratios are per repetition (median)"]
    for sec in r["latency_b1"]:
        out += ["", f"### Batch 1, width {sec['width']} ({sec['reps']} reps): ms per clip", "",
                "| model | GMACs | plain ms | fast ms | fast+clw ms | fast/plain | clw gain | fast vs c3d | plain vs c3d "
                "| MAC bound vs c3d | % of bound |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n, row in sec["models"].items():
            out.append(f"| {n} | {row['gmacs_per_clip']:.2f} | {row['plain']['ms']:.1f} | {row['fast']['ms']:.1f} | "
                       f"{row['fast+clw']['ms']:.1f} | {row['fast_over_plain']:.2f}x | {row['clw_over_fast']['median']:.2f}x | "
                       f"{row['fast'].get('vs_c3d', {}).get('median', float('nan')):.2f}x | "
                       f"{row['plain'].get('vs_c3d', {}).get('median', float('nan')):.2f}x | "
                       f"{row.get('mac_bound_vs_c3d', float('nan')):.2f}x | {100 * row.get('fast_share_of_mac_bound', float('nan')):.0f}% |")
    t = r.get("throughput")
    if t:
        out += ["", f"### Batch {t['batch']} ({t['reps']} reps), fast path: peak {t['peak_gflops']:.0f} GFLOP/s", "",
                "| model | clips/s | GFLOP/s | % of peak | vs c3d (range) | MAC bound vs c3d | % of bound | plain clips/s |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for n, row in t["models"].items():
            v = row["fast"].get("vs_c3d", {})
            plain = f"{row['plain']['clips_s']:.2f}" if "plain" in row else "-"
            out.append(f"| {n} | {row['fast']['clips_s']:.2f} | {row['fast']['gflops']:.0f} | "
                       f"{100 * row['fast']['peak_share']:.0f}% | {v.get('median', float('nan')):.2f}x "
                       f"({v.get('min', float('nan')):.2f}-{v.get('max', float('nan')):.2f}) | "
                       f"{row.get('mac_bound_vs_c3d', float('nan')):.2f}x | "
                       f"{100 * row.get('fast_share_of_mac_bound', float('nan')):.0f}% | {plain} |")
    for key, g in r.get("profile", {}).get("sp_gap", {}).items():
        if not g:
            continue
        out += ["", f"### {g['student']} against its MAC bound ({key}): {g['ms_per_batch']:.0f} ms per batch vs "
                f"{g['bound_ms_per_batch']:.0f} ms at c3d's efficiency ({g['vs_c3d']:.2f}x c3d of "
                f"{g['mac_bound_vs_c3d']:.2f}x possible: {g['remaining_factor']:.2f}x left)", "",
                "| stage | sp ms | c3d ms | sp MACs / c3d | bound ms | excess ms |", "|---|---:|---:|---:|---:|---:|"]
        for st, row in [*g["stages"].items(), ("conv1-conv3a", g["conv1-conv3a"])]:
            out.append(f"| {st} | {row['ms']:.1f} | {row['c3d_ms']:.1f} | {row['mac_ratio_vs_c3d']:.2f} | "
                       f"{row['bound_ms']:.1f} | {row['excess_ms']:+.1f} |")
        out.append(f"| tail (pool5, head) | {g['tail_ms']['student']:.1f} | {g['tail_ms']['c3d']:.1f} | | | |")
    ops_b1 = r.get("profile", {}).get("ops_b1", {})
    if ops_b1:
        out += ["", "### Batch 1, full width: operator time (torch.profiler)", "",
                "| model, path | operator ms | weight copies | activation copies | top operators |",
                "|---|---:|---:|---:|---|"]
        for n, p in ops_b1.items():
            ops = ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in p["top_ops"][:4])
            c, cs = p["copy_ms_per_call"], p["copy_share"]
            out.append(f"| {n} | {p['ms_per_call']:.0f} | {c['weights']:.1f} ms ({100 * cs['weights']:.0f}%) | "
                       f"{c['activations']:.1f} ms ({100 * cs['activations']:.0f}%) | {ops} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="default: every registered model")
    p.add_argument("--reps", type=int, default=5, help="repetitions at batch 1, full width")
    p.add_argument("--tiny-reps", type=int, default=15, help="repetitions at batch 1, width 0.125")
    p.add_argument("--b8-reps", type=int, default=3, help="repetitions at batch 8 (0: skip)")
    p.add_argument("--b8-extra", default="c3d,sp",
                   help="models also timed on the plain layers and as fast+clw at batch 8")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "latency_cpu.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in (args.models.split(",") if args.models else list_models()) if n]
    t0 = time.perf_counter()
    result: dict = {
        "command": " ".join(["python", Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpu": _cpu_name(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "loadavg_before": os.getloadavg()},
        "native": _native(),
        "input": list(INPUT), "num_classes": NUM_CLASSES,
        "latency_b1": [],
    }
    for width in WIDTHS:
        result["latency_b1"].append(latency_section(names, width, args.reps if width == 1.0 else args.tiny_reps))
    b1 = result["latency_b1"][0]
    profile: dict = {"stages_b1_full_width_ms": {n: {q: {st: v["ms"] for st, v in row[q]["stages"].items()}
                                                     for q in ("plain", "fast")}
                                                 for n, row in b1["models"].items()},
                     "sp_gap": {f"batch 1, {q}": sp_gap(b1, path=q) for q in ("fast", "fast+clw", "plain")}}
    if args.b8_reps > 0:
        extra = {n for n in args.b8_extra.split(",") if n}
        result["throughput"] = throughput_section(names, 8, args.b8_reps, extra)
        for q in ("fast", "fast+clw", "plain"):
            profile["sp_gap"][f"batch 8, {q}"] = sp_gap(result["throughput"], path=q)
    profile["ops_b1"] = op_profile([n for n in ("c3d", "sp") if n in names])
    result["profile"] = profile
    result["machine"]["loadavg_after"] = os.getloadavg()
    result["elapsed_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from _common import write_json

    write_json(args.out, result)
    print(render(result))
    print(f"\nwrote {args.out} in {result['elapsed_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
