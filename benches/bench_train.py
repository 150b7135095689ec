"""Training throughput: which stage bounds a run.

For the teacher (cross-entropy) and for feature and logit distillation of each student, side by side in one
run, at the same batch size:

- ``loader``: the ClipLoader alone (decode, resize, crop, stack; background prefetch), clips/s;
- ``model``: the whole optimiser step (teacher forward for distillation, student forward, loss, backward,
  step) on batches already in memory, clips/s;
- ``run``: both together as a training run does them (loader prefetching in the background), clips/s,
  and its ratio to the slower of the two stages (1.0 = the prefetch hides the faster stage completely).

Then the teacher-output cache: feature distillation of each student with centre crops and the centre
sampler, whose second epoch finds every clip's teacher pool5 features and logits in the cache.

Every figure is the median of ``--reps`` repetitions of ``--steps`` timed steps (after ``--warmup``).
Writes ``benches/results/train.json`` and prints a markdown table.

    .venv/bin/python benches/bench_train.py                 # tiny preset (the CPU demo's sizes)
    .venv/bin/python benches/bench_train.py --preset full --device cuda
    .venv/bin/python benches/bench_train.py --preset full-cpu --students sp --steps 3 --reps 2 --no-cache
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
PRESETS = {
    "tiny": dict(width=0.125, frames=16, size=32, batch_size=16),
    "full": dict(width=1.0, frames=16, size=112, batch_size=32),
    # The real networks at the CPU batch of the model benchmark (bench_models.py --batch 8).
    "full-cpu": dict(width=1.0, frames=16, size=112, batch_size=8),
}
MEAN, STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)


def dataset(path: Path):
    from c3d_distill.datasets import load, make_synthetic

    root = make_synthetic(path, classes=10, videos_per_class=12, seed=0, progress=False)
    return load(f"synth:{root}", "train")


def make_loader(items, p, device, *, center=False, seed=0, threads=None, clips_per_video=1):
    from c3d_distill.clips import ClipLoader

    size = (round(p["size"] * 128 / 112), round(p["size"] * 171 / 112))
    kw = (
        dict(dtype="uint8")
        if device.type == "cuda"
        else dict(dtype="float32", mean=list(MEAN), std=list(STD))
    )
    return ClipLoader(
        items,
        clip_len=p["frames"],
        batch_size=p["batch_size"],
        clips_per_video=clips_per_video,
        shuffle=not center,
        drop_last=True,
        sampler="center" if center else "random",
        seed=seed,
        return_meta=True,
        threads=threads,
        size=size,
        crop=p["size"],
        crop_mode="center" if center else "random",
        flip=False if center else "random",
        **kw,
    )


def build(mode: str, student: str, p, device, teacher, cache=None):
    """(net, objective, optimizer) for ``mode`` in teacher | feature | kd."""
    from c3d_distill.models import create_model
    from c3d_distill.train.engine import build_optimizer
    from c3d_distill.train.objective import Objective, StudentNet

    torch.manual_seed(0)
    if mode == "teacher":
        model = create_model("c3d", 10, width=p["width"], frames=p["frames"], size=p["size"]).to(device)
        obj = Objective("ce", amp=device.type == "cuda")
    else:
        model = create_model(student, 10, width=p["width"], frames=p["frames"], size=p["size"]).to(device)
        if mode == "feature":
            for name in ("fc6", "fc7", "fc8"):
                for q in getattr(model, name).parameters():
                    q.requires_grad_(False)
        obj = Objective(mode, teacher=teacher, cache=cache, amp=device.type == "cuda")
    if device.type == "cuda":
        from c3d_distill.train.objective import to_channels_last

        to_channels_last(model)
    net = StudentNet(model, logits_grad=mode != "feature")
    opt = build_optimizer(model.parameters(), "sgd", 1e-3, 0.9, 5e-4)
    return net, obj, opt


def time_steps(step_fn, batches, warmup: int, steps: int) -> float:
    """clips/s of ``step_fn`` over ``steps`` batches after ``warmup``; batches is an iterator."""
    it = iter(batches)
    for _ in range(warmup):
        step_fn(next(it))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    n = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        b = next(it)
        step_fn(b)
        n += b[0].shape[0]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def endless(loader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=PRESETS, default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--students", default="mc4,sp,sp_bn")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, help="decode threads (default: all cores)")
    ap.add_argument("--data", type=Path, default=ROOT / "benches" / "results" / "tmp" / "synth_train",
                    help="where the synthetic set is made (once) and read")
    ap.add_argument("--dataset", metavar="SPEC",
                    help="read this data set instead (c3d_distill.datasets spec, e.g. synth:DIR or ucf101:DIR)")
    ap.add_argument("--clips-per-video", type=int, default=1,
                    help="clips per video per epoch (more: longer epochs, fewer epoch restarts)")
    ap.add_argument("--no-cache", action="store_true",
                    help="skip the teacher-output cache part (two whole epochs per student)")
    ap.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "train.json")
    ap.add_argument("--render", type=Path, metavar="JSON", help="only print the tables of an earlier run")
    args = ap.parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        for r in result["rows"]:
            r.setdefault("serial_bound", 1 / (1 / r["loader_median"] + 1 / r["model_only_median"]))
            r.setdefault("run_vs_serial", r["run_median"] / r["serial_bound"])
        print(markdown(result))
        return 0

    from c3d_distill.models import create_model
    from c3d_distill.train.engine import prepare_batch, train_step
    from c3d_distill.train.objective import TeacherCache

    device = torch.device(args.device)
    p = PRESETS[args.preset]
    if args.dataset:
        from c3d_distill.datasets import load

        items = load(args.dataset, "train").items
    else:
        items = dataset(args.data).items
    cpv = args.clips_per_video
    students = [s for s in args.students.split(",") if s]
    torch.manual_seed(0)
    teacher = create_model("c3d", 10, width=p["width"], frames=p["frames"], size=p["size"]).to(device).eval()

    def to_dev(b):
        return (
            prepare_batch(b[0], device, mean=MEAN, std=STD, channels_last=device.type == "cuda"),
            b[1].to(device),
            b[2],
        )

    def step_fn_for(net, obj, opt):
        def fn(b):
            x, y, meta = to_dev(b)
            train_step(net, obj, opt, x, y, meta, device=device, amp=device.type == "cuda")

        return fn

    # In-memory batches for the model-alone figure: read once, cycled.
    mem = [
        b
        for _, b in zip(range(args.warmup + args.steps), endless(make_loader(items, p, device, clips_per_video=cpv)),
                        strict=False)
    ]

    def cycle(bs):
        while True:
            yield from bs

    rows = []
    modes = [("teacher", "c3d")] + [(m, s) for s in students for m in ("feature", "kd")]
    for mode, name in modes:
        rec = {"mode": mode, "model": name, "loader": [], "model_only": [], "run": []}
        for rep in range(args.reps):
            loader = make_loader(items, p, device, seed=rep, threads=args.threads, clips_per_video=cpv)
            rec["loader"].append(time_steps(lambda b: None, endless(loader), args.warmup, args.steps))
            net, obj, opt = build(mode, name, p, device, teacher)
            rec["model_only"].append(
                time_steps(step_fn_for(net, obj, opt), cycle(mem), args.warmup, args.steps)
            )
            net, obj, opt = build(mode, name, p, device, teacher)
            loader = make_loader(items, p, device, seed=rep, threads=args.threads, clips_per_video=cpv)
            rec["run"].append(
                time_steps(step_fn_for(net, obj, opt), endless(loader), args.warmup, args.steps)
            )
        for k in ("loader", "model_only", "run"):
            rec[k + "_median"] = statistics.median(rec[k])
        slower = min(rec["loader_median"], rec["model_only_median"])
        rec["bound"] = "loader" if rec["loader_median"] < rec["model_only_median"] else "model"
        rec["run_vs_slower"] = rec["run_median"] / slower
        # Both stages one after the other on the same cores, no overlap: what a run reaches when the
        # loader and the step each need the whole machine (a CPU run), vs min() when they do not.
        rec["serial_bound"] = 1 / (1 / rec["loader_median"] + 1 / rec["model_only_median"])
        rec["run_vs_serial"] = rec["run_median"] / rec["serial_bound"]
        rows.append(rec)
        print(
            f"{mode:8s} {name:6s} loader {rec['loader_median']:7.1f}  model {rec['model_only_median']:7.1f}  "
            f"run {rec['run_median']:7.1f} clips/s ({rec['run_vs_slower']:.2f} of the slower stage)",
            flush=True,
        )

    # Teacher-output cache: epoch 1 fills it, epoch 2 (same clips: centre sampler and crop) only reads.
    cache_rows = []
    # (The centre sampler takes one clip per video.)
    n_batches = len(make_loader(items, p, device, center=True))
    for name in [] if args.no_cache else students:
        rec = {"model": name, "no_cache": [], "cache_epoch2": []}
        for _rep in range(args.reps):
            for use in (False, True):
                cache = TeacherCache(crop_key="center") if use else None
                net, obj, opt = build("feature", name, p, device, teacher, cache=cache)
                loader = make_loader(items, p, device, center=True, threads=args.threads)
                fn = step_fn_for(net, obj, opt)
                loader.set_epoch(0)
                for b in loader:  # epoch 1: fills the cache (or warms up)
                    fn(b)
                loader.set_epoch(1)
                t0 = time.perf_counter()
                n = 0
                for b in loader:
                    fn(b)
                    n += b[0].shape[0]
                rec["cache_epoch2" if use else "no_cache"].append(n / (time.perf_counter() - t0))
                if use:
                    rec["hits"], rec["misses"] = cache.hits, cache.misses
        rec["no_cache_median"] = statistics.median(rec["no_cache"])
        rec["cache_median"] = statistics.median(rec["cache_epoch2"])
        rec["speedup"] = rec["cache_median"] / rec["no_cache_median"]
        rec["batches_per_epoch"] = n_batches
        cache_rows.append(rec)
        print(
            f"cache    {name:6s} epoch 2 without {rec['no_cache_median']:7.1f}  with {rec['cache_median']:7.1f} clips/s "
            f"({rec['speedup']:.2f}×; hits {rec['hits']}, misses {rec['misses']})",
            flush=True,
        )

    result = {
        "preset": args.preset,
        "shape": p,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "steps": args.steps,
        "warmup": args.warmup,
        "reps": args.reps,
        "videos": len(items),
        "clips_per_video": cpv,
        "loader_threads": args.threads,
        "command": " ".join([Path(sys.executable).name, "benches/bench_train.py", *(argv or sys.argv[1:])]),
        "rows": rows,
        "cache": cache_rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from _common import write_json

    write_json(args.out, result, indent=2)
    print()
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = [
        f"Training step throughput, preset `{result['preset']}` ({result['shape']}), {result['device']}, "
        f"median of {result['reps']}×{result['steps']} steps, clips/s:",
        "",
        "| mode | model | loader alone | step alone | run | run / slower stage | bound by | serial bound | run / serial |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['mode']} | {r['model']} | {r['loader_median']:.1f} | {r['model_only_median']:.1f} "
            f"| {r['run_median']:.1f} | {r['run_vs_slower']:.2f} | {r['bound']} "
            f"| {r.get('serial_bound', float('nan')):.1f} | {r.get('run_vs_serial', float('nan')):.2f} |"
        )
    if not result["cache"]:
        return "\n".join(lines)
    lines += [
        "",
        "Teacher-output cache (feature distillation, centre clips; epoch 2 reads every teacher output "
        "from the cache), clips/s:",
        "",
        "| student | epoch 2 without cache | epoch 2 with cache | gain |",
        "|---|---:|---:|---:|",
    ]
    for r in result["cache"]:
        lines.append(
            f"| {r['model']} | {r['no_cache_median']:.1f} | {r['cache_median']:.1f} | {r['speedup']:.2f}× |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
