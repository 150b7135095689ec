"""Render the benchmark tables of the docs from the JSON results in benches/results/.

Each table sits in a markdown file between marker comments::

    <!-- table:NAME -->
    | … the rendered table … |
    <!-- /table:NAME -->

and NAME picks its renderer below (the JSON file it reads is in RENDERERS). Without arguments the
tables of README.md and docs/*.md are rewritten in place; with ``--check`` nothing is written and the
exit status is 1 when any table differs from what its JSON gives (or names no known table).

    python tools/render_tables.py            # after a benchmark run: refresh the docs
    python tools/render_tables.py --check    # in the tests: docs and results agree

Only the standard library: the check runs without torch or the native module.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benches" / "results"
MARKER = re.compile(r"(<!-- table:([\w-]+) -->\n)(.*?)(<!-- /table:\2 -->)", re.S)


def _load(results: Path, name: str):
    return json.loads((results / name).read_text())


def _table(header: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _x(v: float) -> str:
    return f"{v:.2f}×"


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


# --- one function per table: (results folder) -> markdown ------------------------------------------


def models_cpu(results: Path) -> str:
    d = _load(results, "models_cpu.json")
    b = d["batches"]["8"]
    rows = []
    for m in b["models"]:
        comp = m.get("compiled", {}).get("clips_s")
        rows.append([m["model"], f"{m['gmacs_per_clip']:.2f}", f"{m['plain']['clips_s']:.2f}",
                     f"{m['fast']['clips_s']:.2f}", f"{comp:.2f}" if comp else "–", m["best_path"],
                     _x(m["best_vs_c3d"]), _x(m["bound_vs_c3d"]), _pct(m["best"]["clips_s"] / m["bound_clips_s"])])
    head = ["model", "GMACs/clip", "plain clips/s", "fast clips/s", "compiled clips/s", "best",
            "best vs c3d", "MAC bound vs c3d", "best % of peak"]
    mach = d["machine"]
    note = (f"\nBatch 8, {d['input'][1]}×{d['input'][2]}×{d['input'][3]}, medians of {d['reps']} repetitions; "
            f"{mach['cpu']}, torch {mach['torch']}, {mach['torch_threads']} threads; measured conv peak "
            f"{b['peak_gflops']:.0f} GFLOP/s.\n")
    return _table(head, rows, "lrrrrlrrr") + note


def _loader_rows(d: dict) -> list[list]:
    rows = []
    for r in d["rows"]:
        for method, cps in r["clips_per_s_cpu"].items():
            rows.append([r["workload"], r["clips_per_visit"], method, f"{r['cpu_ms_per_clip'][method]:.1f}",
                         f"{cps:.0f}", _x(r["vs_decord_cpu"][method]), _pct(r["vs_ffmpeg_limit_cpu"][method]),
                         f"{r['clips_per_s'][method]:.0f}"])
    return rows


_LOADER_HEAD = ["workload", "clips/visit", "method", "CPU ms/clip", "clips/s by CPU", "× decord (CPU)",
                "% of FFmpeg limit (CPU)", "clips/s (wall)"]


def loader(results: Path) -> str:
    d = _load(results, "loader.json")
    return _table(_LOADER_HEAD, _loader_rows(d), "lrlrrrrr") + f"\nMedians of {d['params']['reps']} repetitions.\n"


def loader_ucf(results: Path) -> str:
    d = _load(results, "loader_ucf.json")
    return _table(_LOADER_HEAD, _loader_rows(d), "lrlrrrrr") + f"\nMedians of {d['params']['reps']} repetitions.\n"


def _train_rows(d: dict) -> list[list]:
    return [[r["mode"], r["model"], f"{r['loader_median']:.1f}", f"{r['model_only_median']:.1f}",
             f"{r['run_median']:.1f}", f"{r['run_vs_slower']:.2f}", r["bound"]] for r in d["rows"]]


_TRAIN_HEAD = ["mode", "model", "loader alone", "step alone", "run", "run / slower stage", "bound by"]


def train(results: Path) -> str:
    d = _load(results, "train.json")
    rows = []
    for r, row in zip(d["rows"], _train_rows(d), strict=True):
        serial = 1 / (1 / r["loader_median"] + 1 / r["model_only_median"])
        rows.append(row + [f"{serial:.1f}", f"{r['run_median'] / serial:.2f}"])
    return _table(_TRAIN_HEAD + ["serial bound", "run / serial"], rows, "llrrrrlrr")


def train_cache(results: Path) -> str:
    d = _load(results, "train.json")
    rows = [[c["model"], f"{c['no_cache_median']:.1f}", f"{c['cache_median']:.1f}", _x(c["speedup"])]
            for c in d["cache"]]
    return _table(["student", "epoch 2 without cache", "epoch 2 with cache", "gain"], rows)


def train_full_cpu(results: Path) -> str:
    return _table(_TRAIN_HEAD, _train_rows(_load(results, "train_full_cpu.json")), "llrrrrl")


def train_cuda(results: Path) -> str:
    rows, seen = [], set()
    for name in ("gpu/rerun/train_cuda_mc4.json", "gpu/rerun/train_cuda_sp_sp_bn.json"):
        for r in _train_rows(_load(results, name)):
            if (r[0], r[1]) not in seen:  # the teacher is measured in both runs: the first is shown
                seen.add((r[0], r[1]))
                rows.append(r)
    return _table(_TRAIN_HEAD, rows, "llrrrrl")


def _transfer(results: Path, teacher_prefix: str) -> str:
    d = _load(results, "transfer.json")
    by = {}
    for r in d["summary"]:
        if r["teacher"].startswith(teacher_prefix):
            by.setdefault(r["student"], {})[r["mode"]] = r
    rows = []
    for student, modes in by.items():
        c, f = modes["closed form"], modes["default"]
        rows.append([student, f"{c['feature_rel_err']:.3f} / {c['feature_cosine']:.3f}",
                     f"{f['feature_rel_err']:.3f} / {f['feature_cosine']:.3f}",
                     f"{f['random_feature_rel_err']:.3f} / {f['random_feature_cosine']:.3f}", _x(f["ratio"])])
    return _table(["student", "closed form: rel_err / cosine", "default: rel_err / cosine",
                   "random init: rel_err / cosine", "random ÷ default"], rows)


def transfer_random(results: Path) -> str:
    return _transfer(results, "random")


def transfer_trained(results: Path) -> str:
    return _transfer(results, "trained")


def memory(results: Path) -> str:
    d = _load(results, "memory.json")
    rows = [[r["threads"], f"{r['batch_mb']:.2f} MB", f"{r['loader_steady_mb']:.1f} MB", f"{r['loader_peak_mb']:.1f} MB"]
            for r in d["by_threads"]]
    leak = d["leak"]
    note = (f"\nNo leak: {leak['clips']:,} clips over {leak['epochs']} epochs, RSS after a "
            f"{leak['warmup_clips']:,}-clip warm-up grew {leak['growth_after_warmup_mb']:.1f} MB "
            f"(slope {leak['slope_mb_per_10k_clips']:.2f} MB per 10,000 clips; limit {d['limit_mb']:.0f} MB).\n")
    return _table(["threads", "one batch", "loader, steady", "loader, peak"], rows) + note


def fuzz(results: Path) -> str:
    d = _load(results, "fuzz.json")

    def cell(c: dict) -> str:
        return f"{c.get('ok', 0)} / {c.get('VideoDecodeError', 0)}"

    rows = []
    for mut, apis in d["by_mutation"].items():
        n = sum(apis["read_clips_skip"].values())
        rows.append([mut, n, cell(apis["probe"]), cell(apis["get_frames"]), cell(apis["read_clips"]),
                     apis["read_clips_skip"].get("ok", 0)])
    out = d["outcomes"]
    note = (f"\n{d['cases']:,} cases, {d['calls']:,} calls: {out.get('ok', 0):,} results, "
            f"{out.get('VideoDecodeError', 0):,} `VideoDecodeError`, {d['failures']} failures (crash, hang, "
            f"memory spike or other exception); slowest call {d['seconds_per_call']['max']:.2f} s, largest "
            f"peak RSS growth of one call {d['peak_growth_mb']['max']:.1f} MB.\n")
    head = ["mutation", "cases", "probe ok / VDE", "get_frames ok / VDE", "read_clips ok / VDE", "skip mode returned"]
    return _table(head, rows) + note


def fused_pool(results: Path) -> str:
    d = _load(results, "fused_pool.json")
    rows = [[name.replace(": fused speed-up", ": fused ÷ unfused"), _x(r["median"]), f"{_x(r['min'])}–{_x(r['max'])}"]
            for name, r in d["ratios"].items()]
    return (_table(["ratio", "median", "range over repetitions"], rows)
            + f"\nBatch {d['batch']}, {d['reps']} repetitions, side by side in one process.\n")


def latency_b1(results: Path) -> str:
    d = _load(results, "latency_cpu.json")
    full = next(e for e in d["latency_b1"] if e["width"] == 1.0)
    c3d_ms = min(full["models"]["c3d"][p]["ms"] for p in full["paths"])
    rows = []
    for name, m in full["models"].items():
        best = min(m[p]["ms"] for p in full["paths"])
        rows.append([name, f"{m['gmacs_per_clip']:.2f}"] + [f"{m[p]['ms']:.0f}" for p in full["paths"]]
                    + [_x(c3d_ms / best)])
    head = ["model", "GMACs/clip"] + [f"{p} ms" for p in full["paths"]] + ["best vs c3d"]
    return (_table(head, rows) + f"\nOne clip (batch 1), full width, medians of {full['reps']} repetitions; "
            f"{d['machine']['cpu']}, {d['machine']['torch_threads']} threads.\n")


def gpu_inference(results: Path) -> str:
    variants = ["plain", "plain+cl", "fast", "fast+cl", "fast+compile", "plain+cl+compile"]
    table: dict[str, dict] = {}
    for name in ("gpu/rerun/gpu_c3d_mc4_mc5_read.json", "gpu/rerun/gpu_sp_sp_bn_mc3.json"):
        for r in _load(results, name)["rows"]:
            if r["section"] == "inference":
                table.setdefault(r["model"], {})[r["variant"]] = r
    order = [m for m in ("c3d", "sp", "sp_bn", "mc3", "mc4", "mc5") if m in table]
    rows = [[m] + [f"{table[m][v]['clips_per_s']:.0f}" for v in variants]
            + [f"{max(r['tflops'] for r in table[m].values()):.0f}"] for m in order]
    return _table(["model"] + variants + ["best TFLOP/s"], rows)


def gpu_read(results: Path) -> str:
    rows = [[r["threads"], f"{r['clips_per_s']:.0f}", f"{r['clips_per_s_per_thread']:.1f}"]
            for r in _load(results, "gpu/rerun/gpu_c3d_mc4_mc5_read.json")["rows"] if r["section"] == "read_clips"]
    return _table(["read_clips threads", "clips/s", "clips/s per thread"], rows)


def extract_table(d: dict) -> str:
    """The extraction table of a ``bench_extract.py`` result (the benchmark prints the same)."""
    rows = []
    for r in d["rows"]:
        m = r["clips_per_s"]
        rows.append([r["workload"], r["model"], f"{r['width']:g}", r["clips"], f"{m['extract']:.2f}",
                     f"{m['extract_pipeline']:.2f}", f"{m['decord_pipeline']:.2f}", f"{m['our_loader']:.0f}",
                     f"{m['decord_loader']:.0f}", f"{m['model']:.2f}", f"{r['pipeline_over_model']:.2f}",
                     f"{m['extract_pipeline'] / r['two_stage_bound']:.2f}", _x(r["extract_over_decord"]),
                     _x(r["extract_over_c3d_extract"])])
    head = ["workload", "model", "width", "clips", "extract", "extract pipeline", "decord + DataLoader",
            "our loader", "decord loader", "model alone", "pipeline ÷ model", "pipeline ÷ 2-stage bound",
            "extract ÷ decord", "extract ÷ c3d's"]
    return (_table(head, rows, "lllr" + "r" * 10) + f"\nclips/s, medians of {d['reps']} repetitions side by side "
            f"(order rotated), batch {d['batch']}, {d['machine']['cpus']} CPUs.\n")


def extract(results: Path) -> str:
    return extract_table(_load(results, "extract.json"))


def export(results: Path) -> str:
    d = _load(results, "export_cpu.json")
    rows = [[r["model"], f"{r['export_and_check_s']:.1f}", f"{max(r['check_rel_error'].values()):.1e}",
             f"{r['median_ms']['eager plain']:.0f}", f"{r['median_ms']['eager fast']:.0f}",
             f"{r['median_ms']['onnxruntime']:.0f}", _x(r["onnxruntime_vs_eager_fast"])] for r in d["rows"]]
    head = ["model", "export + check s", "max rel. error", "eager plain ms", "eager fast ms", "ONNX Runtime ms",
            "ORT ÷ fast (time)"]
    return _table(head, rows) + f"\nBatch 1, full width, medians of {d['reps']} repetitions.\n"


def recipes(results: Path) -> str:
    """Every candidate of benches/bench_recipes.py, then the acceptance runs with no optimisation flag."""
    d = _load(results, "recipes.json")

    def f(v) -> str:
        return "–" if v is None else f"{v:.3f}"

    def loss(r: dict) -> str:
        return r["loss"] + ("" if "--loss" in r["command"].split() or r["loss"] == "ce" else " (default)")

    def row(stage: str, name: str, r: dict) -> list:
        return [stage, name, loss(r), f(r.get("val_clip_acc")), f(r.get("test_clip_acc")),
                f(r.get("test_video_acc")), f"{r['seconds']:.0f}" if r.get("seconds") is not None else "–"]

    rows = [row("train c3d (30 epochs)", n, r) for n, r in d.get("fresh", {}).items()]
    for student, cands in d.get("distill", {}).items():
        rows += [row(f"distill {student} (10 epochs)", n, r) for n, r in cands.items()]
    names = {"train_c3d": "train c3d", "distill_mc4": "distill mc4", "distill_sp": "distill sp"}
    rows += [row("no flags (the recipes)", names.get(n, n), r) for n, r in d.get("defaults", {}).items()]
    return _table(["stage", "candidate", "loss", "val clip", "test clip", "test video", "s"], rows, "lllrrrr")


def headline(results: Path) -> str:
    """The README's table: one line per part, each figure from its JSON."""
    m = {r["model"]: r for r in _load(results, "models_cpu.json")["batches"]["8"]["models"]}
    lu = _load(results, "loader_ucf.json")["rows"][0]
    tr = {(r["student"], r["mode"]): r for r in _load(results, "transfer.json")["summary"] if r["teacher"].startswith("random")}
    fz = _load(results, "fuzz.json")
    mem = _load(results, "memory.json")["leak"]
    cuda = [r["run_vs_slower"] for f in ("gpu/rerun/train_cuda_mc4.json", "gpu/rerun/train_cuda_sp_sp_bn.json")
            for r in _load(results, f)["rows"]]
    rows = [
        ["clip loading, UCF101-like MPEG-4 (CPU time)",
         f"`read_clips` {_x(lu['vs_decord_cpu']['read_clips'])} decord, `ClipLoader` {_x(lu['vs_decord_cpu']['ClipLoader'])}",
         "[loader](docs/benchmarks.md#clip-loading)"],
        ["inference, 2-core CPU, batch 8, each at its fastest",
         f"sp {_x(m['sp']['best_vs_c3d'])} c3d, mc4 {_x(m['mc4']['best_vs_c3d'])} c3d; c3d at "
         f"{_pct(m['c3d']['best']['clips_s'] / m['c3d']['bound_clips_s'])} of the measured conv peak",
         "[models](docs/benchmarks.md#models-on-the-cpu)"],
        ["weight transfer, pool5 error vs random init (full width)",
         f"mc4 {_x(tr[('mc4', 'default')]['ratio'])}, sp {_x(tr[('sp', 'default')]['ratio'])} closer",
         "[transfer](docs/benchmarks.md#weight-transfer)"],
        ["training run on one H100, run ÷ slower stage", f"{min(cuda):.2f}–{max(cuda):.2f}",
         "[training](docs/benchmarks.md#training-throughput)"],
        ["fuzzed damaged videos", f"{fz['calls']:,} calls, {fz['failures']} crashes, hangs or spikes",
         "[robustness](docs/benchmarks.md#robustness-and-memory)"],
        ["loader memory over 20,000 clips", f"{mem['growth_after_warmup_mb']:+.1f} MB",
         "[robustness](docs/benchmarks.md#robustness-and-memory)"],
    ]
    return _table(["what", "measured", "details"], rows, "lll")


RENDERERS = {f.__name__: f for f in (models_cpu, loader, loader_ucf, train, train_cache, train_full_cpu, train_cuda,
                                     transfer_random, transfer_trained, memory, fuzz, fused_pool, latency_b1,
                                     gpu_inference, gpu_read, extract, export, recipes, headline)}


def render(text: str, results: Path = RESULTS) -> tuple[str, list[str]]:
    """``text`` with every marked table re-rendered, and the problems found (unknown names)."""
    problems: list[str] = []

    def one(m: re.Match) -> str:
        name = m.group(2)
        if name not in RENDERERS:
            problems.append(f"unknown table {name!r}")
            return m.group(0)
        return m.group(1) + RENDERERS[name](results) + m.group(4)

    return MARKER.sub(one, text), problems


def markdown_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a table differs from its JSON")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default benches/results)")
    ap.add_argument("files", nargs="*", type=Path, help="markdown files (default README.md and docs/*.md)")
    args = ap.parse_args(argv)
    bad = 0
    for path in args.files or markdown_files():
        if not path.exists():
            continue
        text = path.read_text()
        new, problems = render(text, args.results)
        for p in problems:
            print(f"{path}: {p}", file=sys.stderr)
            bad += 1
        if new != text:
            if args.check:
                pairs = zip(MARKER.finditer(text), MARKER.finditer(new), strict=True)
                changed = [m.group(2) for m, n in pairs if m.group(0) != n.group(0)]
                print(f"{path}: tables differ from their JSON: {', '.join(changed)} "
                      f"(run python tools/render_tables.py)", file=sys.stderr)
                bad += 1
            else:
                path.write_text(new)
                print(f"rendered {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
