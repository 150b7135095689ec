"""GPU figures: the run as it would go on a real accelerator.

Measured side by side in one process on one card, written to ``benches/results/gpu/gpu.json`` (and a
markdown table to ``gpu.md``):

1. inference clips/s of every model at batch 32, 16×112×112, bf16 autocast: plain layers vs the fast
   paths, channels-last, with and without ``torch.compile``;
2. training-step clips/s (forward, loss, backward, SGD step) for the teacher and for feature
   distillation of mc4 and sp (frozen teacher in the same step);
3. ``read_clips`` clips/s with 4, 8 and 16 threads on the "ucf" workload, against what one training
   step consumes: how many cores keep one GPU fed;
4. a short full-size distillation of mc4 from a randomly initialised teacher on the synthetic set,
   fed by ClipLoader, to show the full-size path runs end to end on CUDA.

``--smoke`` runs every section on the CPU at a tiny width with one iteration, to check the script
before spending device time. Every section records its own error instead of ending the run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from c3d_distill.models import count_macs, create_model

MODELS = ["c3d", "sp", "sp_bn", "mc3", "mc4", "mc5"]


class Clock:
    """Wall-clock budget for the whole run: sections that would overrun are skipped, and say so."""

    def __init__(self, budget_s: float):
        self.t0 = time.perf_counter()
        self.budget = budget_s

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, *, warmup: int, iters: int, repeats: int) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` runs of ``iters`` calls, after ``warmup``."""
    for _ in range(warmup):
        fn()
    sync(device)
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        sync(device)
        runs.append((time.perf_counter() - t) / iters)
    return statistics.median(runs)


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def to_format(model: torch.nn.Module, x: torch.Tensor, channels_last: bool):
    """channels-last weights (3-D and 2-D: MC models hold both) and input, as the training engine does."""
    if channels_last:
        from c3d_distill.train.objective import to_channels_last

        model = to_channels_last(model)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return model, x


EAGER_VARIANTS = [  # (label, fast path, channels-last, torch.compile)
    ("plain", False, False, False),
    ("plain+cl", False, True, False),
    ("fast", True, False, False),
    ("fast+cl", True, True, False),
]
COMPILE_VARIANTS = [("fast+compile", True, False, True), ("plain+cl+compile", False, True, True)]


def bench_inference(args, device, clock, rows, errors, variants):
    shape = (args.batch, 3, args.frames, args.size, args.size)
    x0 = torch.randn(shape, device=device)
    for name in args.models:
        for label, fast, cl, compile_ in variants:
            if clock.left() < (60 if compile_ else 10):
                rows.append({"section": "inference", "model": name, "variant": label, "skipped": "time budget"})
                continue
            try:
                model = create_model(name, width=args.width, frames=args.frames, size=args.size, fast=fast)
                model = model.to(device).eval()
                model, x = to_format(model, x0, cl)
                if compile_:
                    # Every model shares VideoNet.forward: without a reset, dynamo's per-function
                    # recompile limit is reached after a few models and the rest silently run eager.
                    torch._dynamo.reset()
                fn_model = torch.compile(model) if compile_ else model
                t_compile = time.perf_counter()

                def step(fn_model=fn_model, x=x):
                    with torch.inference_mode(), autocast(device):
                        fn_model(x)

                step()
                sync(device)
                t_compile = time.perf_counter() - t_compile
                s = timed(step, device, warmup=args.warmup, iters=args.iters, repeats=args.repeats)
                macs = count_macs(model, (1, *shape[1:]))
                rows.append({
                    "section": "inference", "model": name, "variant": label, "batch": args.batch,
                    "clips_per_s": args.batch / s, "ms_per_batch": s * 1e3,
                    "tflops": 2 * macs * args.batch / s / 1e12, "gmacs_per_clip": macs / 1e9,
                    "first_call_s": t_compile,
                })
                print(f"inference {name:6s} {label:13s} {args.batch / s:9.1f} clips/s", flush=True)
                del model, fn_model
            except Exception as exc:  # record and go on: one failure must not cost the other figures
                errors.append({"section": "inference", "model": name, "variant": label, "error": repr(exc),
                               "trace": traceback.format_exc()[-2000:]})
                print(f"inference {name} {label} FAILED: {exc!r}", flush=True)
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()


def bench_train_steps(args, device, clock, rows, errors):
    """The real optimiser step of the training engine (``train.engine.train_step``): teacher under
    no_grad for distillation, student forward, loss, backward, SGD step; bf16 autocast and channels-last
    on CUDA, as ``c3d-distill train/distill --amp`` run them."""
    from c3d_distill.train.engine import train_step
    from c3d_distill.train.objective import Objective, StudentNet, to_channels_last

    shape = (args.train_batch, 3, args.frames, args.size, args.size)
    amp = device.type == "cuda"
    x = torch.randn(shape, device=device)
    if amp:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, args.classes, (args.train_batch,), device=device)
    cases = [("c3d", "ce"), ("mc4", "feature"), ("sp", "feature"), ("mc4", "kd")]
    for student_name, mode in cases:
        label = "train c3d (ce)" if mode == "ce" else f"distill {student_name} ({mode})"
        if clock.left() < 20:
            rows.append({"section": "train_step", "case": label, "skipped": "time budget"})
            continue
        try:
            kw = dict(width=args.width, frames=args.frames, size=args.size)
            student = create_model(student_name, args.classes, **kw).to(device).train()
            teacher = None
            if mode != "ce":
                teacher = create_model("c3d", args.classes, **kw).to(device)
            if amp:
                to_channels_last(student)
                if teacher is not None:
                    to_channels_last(teacher)
            objective = Objective(mode, teacher=teacher, amp=amp)
            net = StudentNet(student, logits_grad=mode != "feature")
            # The same batch over and over with random weights: a small lr and clipping keep the timed
            # steps finite (the engine stops on a non-finite loss, as it should in a real run).
            opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

            def step(net=net, objective=objective, opt=opt):
                train_step(net, objective, opt, x, y, device=device, amp=amp, clip_grad=1.0)

            s = timed(step, device, warmup=args.warmup, iters=args.iters, repeats=args.repeats)
            rows.append({"section": "train_step", "case": label, "batch": args.train_batch,
                         "clips_per_s": args.train_batch / s, "ms_per_step": s * 1e3})
            print(f"train step {label:24s} {args.train_batch / s:9.1f} clips/s", flush=True)
            del student, teacher, opt, net, objective
        except Exception as exc:
            errors.append({"section": "train_step", "case": label, "error": repr(exc),
                           "trace": traceback.format_exc()[-2000:]})
            print(f"train step {label} FAILED: {exc!r}", flush=True)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()


def bench_read_clips(args, clock, rows, errors):
    from c3d_distill.clips import probe, random_clip, read_clips

    # The "ucf" videos plus the synthetic set's (also 320x240 25 fps MPEG-4 AVI, keyframe every 12):
    # clips of one video decode on one thread, so 16 threads need at least 16 different videos.
    videos = sorted(glob.glob(os.path.join(args.ucf_dir, "*.avi")))
    videos += sorted(glob.glob(os.path.join(args.synth_dir, "**", "*.avi"), recursive=True))
    if not videos:
        errors.append({"section": "read_clips", "error": f"no .avi files in {args.ucf_dir}"})
        return
    lengths = {v: probe(v)["num_frames"] for v in videos}
    import random

    rng = random.Random(0)
    clip_sets = [
        [(v, random_clip(lengths[v], 16, seed=rng.randrange(2**31))) for v in rng.sample(videos, k=args.read_batch)]
        for _ in range(args.read_batches)
    ]
    kw = dict(size=(128, 171), crop=112, layout="NCTHW", dtype="float32",
              mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989))
    cores = os.cpu_count() or 1
    for threads in args.threads:
        if threads > cores:
            rows.append({"section": "read_clips", "threads": threads, "skipped": f"only {cores} cores"})
            continue
        if clock.left() < 15:
            rows.append({"section": "read_clips", "threads": threads, "skipped": "time budget"})
            continue
        try:
            read_clips(clip_sets[0], threads=threads, **kw)  # warm the index cache and the pool
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                for clips in clip_sets:
                    read_clips(clips, threads=threads, **kw)
                times.append(time.perf_counter() - t)
            s = statistics.median(times)
            n = args.read_batch * len(clip_sets)
            rows.append({"section": "read_clips", "threads": threads, "clips_per_s": n / s,
                         "clips_per_s_per_thread": n / s / threads})
            print(f"read_clips threads={threads:2d} {n / s:9.1f} clips/s", flush=True)
        except Exception as exc:
            errors.append({"section": "read_clips", "threads": threads, "error": repr(exc),
                           "trace": traceback.format_exc()[-2000:]})
            print(f"read_clips threads={threads} FAILED: {exc!r}", flush=True)


def run_distill(args, device, clock, rows, errors, out_dir: Path):
    """A short full-size distillation through the real command line (``c3d-distill distill``): a randomly
    initialised c3d teacher saved as a run checkpoint, mc4 initialised by transfer, feature loss, fed by
    ClipLoader over the carried synthetic set."""
    if clock.left() < 60:
        rows.append({"section": "distill_run", "skipped": "time budget"})
        return
    try:
        from c3d_distill.cli import main as cli_main
        from c3d_distill.datasets import load
        from c3d_distill.runs.checkpoint import FORMAT, save_checkpoint

        classes = len(load(f"synth:{args.synth_dir}", "train").classes)

        # Checkpoints of full-size models are hundreds of MB: keep them off the results folder.
        work = Path(tempfile.mkdtemp(prefix="c3d_gpu_distill_"))
        run_dir = work / "distill_mc4"
        teacher_ckpt = work / "random_teacher.pt"
        meta = dict(name="c3d", num_classes=classes, width=args.width, frames=args.frames,
                    size=args.size, dropout=0.5)
        torch.manual_seed(0)
        teacher = create_model("c3d", classes, width=args.width, frames=args.frames, size=args.size)
        save_checkpoint({"format": FORMAT, "model_meta": meta, "model": teacher.state_dict()}, teacher_ckpt)
        argv = ["distill", "--teacher", str(teacher_ckpt), "--student", "mc4", "--init", "transfer",
                "--loss", "feature", "--data", f"synth:{args.synth_dir}", "--out", str(run_dir),
                "--epochs", str(args.distill_epochs), "--batch-size", str(args.train_batch),
                "--clips-per-video", str(args.distill_clips_per_video), "--device", device.type,
                "--no-progress"]
        if device.type == "cuda":
            argv += ["--amp", "--threads", str(min(16, os.cpu_count() or 1))]
        t = time.perf_counter()
        rc = cli_main(argv)
        wall = time.perf_counter() - t
        metrics = []
        mpath = run_dir / "metrics.jsonl"
        if mpath.exists():
            metrics = [json.loads(line) for line in mpath.read_text().splitlines() if line.strip()]
        for name in ("metrics.jsonl", "config.json"):
            if (run_dir / name).exists():
                from _common import portable

                # the run's own files, with its temporary paths written portably
                lines = (run_dir / name).read_text().splitlines()
                (out_dir / f"distill_mc4_{name}").write_text("\n".join(
                    json.dumps(portable(json.loads(x))) for x in lines if x.strip()) + "\n")
        rows.append({"section": "distill_run", "rc": rc, "wall_s": wall, "argv": argv, "metrics": metrics})
        print(f"distill run rc={rc} in {wall:.0f} s; {len(metrics)} metric rows", flush=True)
    except BaseException as exc:  # SystemExit from argparse included: record it, keep the other figures
        errors.append({"section": "distill_run", "error": repr(exc), "trace": traceback.format_exc()[-3000:]})
        print(f"distill run FAILED: {exc!r}", flush=True)


def table(rows) -> str:
    out = []
    inf = [r for r in rows if r["section"] == "inference" and "clips_per_s" in r]
    if inf:
        variants = list(dict.fromkeys(r["variant"] for r in inf))
        out += ["| model | " + " | ".join(variants) + " | best TFLOP/s |", "|---" * (len(variants) + 2) + "|"]
        for m in MODELS:
            by = {r["variant"]: r for r in inf if r["model"] == m}
            if not by:
                continue
            cells = [f"{by[v]['clips_per_s']:.0f}" if v in by else "–" for v in variants]
            best = max(r["tflops"] for r in by.values())
            out.append(f"| {m} | " + " | ".join(cells) + f" | {best:.0f} |")
        out.append("")
    tr = [r for r in rows if r["section"] == "train_step" and "clips_per_s" in r]
    if tr:
        out += ["| training step | clips/s | ms/step |", "|---|---|---|"]
        out += [f"| {r['case']} | {r['clips_per_s']:.0f} | {r['ms_per_step']:.1f} |" for r in tr]
        out.append("")
    rc = [r for r in rows if r["section"] == "read_clips" and "clips_per_s" in r]
    if rc:
        out += ["| read_clips threads | clips/s | clips/s per thread |", "|---|---|---|"]
        out += [f"| {r['threads']} | {r['clips_per_s']:.0f} | {r['clips_per_s_per_thread']:.1f} |" for r in rc]
        out.append("")
        if tr:
            # Cores that keep one GPU fed: the step's appetite over what one decode thread delivers
            # (per-thread rate at the largest thread count measured: the conservative one).
            per_thread = rc[-1]["clips_per_s_per_thread"]
            out += ["| training step | clips/s it consumes | decode cores to keep it fed |", "|---|---|---|"]
            out += [f"| {r['case']} | {r['clips_per_s']:.0f} | {r['clips_per_s'] / per_thread:.1f} |" for r in tr]
            out.append("")
    dr = [r for r in rows if r["section"] == "distill_run" and "metrics" in r]
    for r in dr:
        train = [m for m in r["metrics"] if m.get("split") == "train"]
        final = [m for m in r["metrics"] if m.get("split") in ("final", "test")]
        line = f"End-to-end `c3d-distill {' '.join(r['argv'][:1])} --student mc4`: rc={r['rc']}, {r['wall_s']:.0f} s"
        if train:
            line += (f", {len(train)} epochs, feature loss {train[0].get('feature', float('nan')):.4f} → "
                     f"{train[-1].get('feature', float('nan')):.4f}, train {train[-1].get('clips_per_s', 0):.0f} clips/s")
        if final:
            f = final[-1]
            line += f"; final feature error vs teacher {f.get('feature_err', float('nan')):.3f}"
        out += [line, ""]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benches/results/gpu")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run to check the script")
    p.add_argument("--budget", type=float, default=420, help="seconds for the whole run")
    p.add_argument("--ucf-dir", default="gpu_bundle/ucf")
    p.add_argument("--synth-dir", default="gpu_bundle/synth")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--sections", default="inference,train,read,distill")
    p.add_argument("--distill-epochs", type=int, help="epochs of the end-to-end distillation (default 8)")
    p.add_argument("--models", default=",".join(MODELS), help="models of the inference section")
    args = p.parse_args(argv)
    requested_epochs = args.distill_epochs
    args.models = [m for m in args.models.split(",") if m]

    args.width, args.frames, args.size, args.classes = 1.0, 16, 112, 10
    args.batch, args.train_batch = 32, 32
    args.warmup, args.iters, args.repeats = 3, 10, 3
    args.threads, args.read_batches, args.distill_epochs = [2, 4, 8, 16], 8, 8
    args.distill_clips_per_video = 8
    args.read_batch = 32
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        device = torch.device("cpu")
        args.width, args.batch, args.train_batch = 1 / 16, 2, 2
        args.warmup, args.iters, args.repeats = 1, 1, 1
        args.threads, args.read_batches, args.distill_epochs = [1, 2], 1, 1
        args.distill_clips_per_video = 1
        args.read_batch = 4
        args.no_compile = True
    if requested_epochs is not None:
        args.distill_epochs = requested_epochs
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    clock = Clock(args.budget)
    rows: list[dict] = []
    errors: list[dict] = []
    sections = set(args.sections.split(","))
    def save() -> str:
        env = {
            "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(), "smoke": args.smoke, "dtype": "bf16 autocast" if device.type == "cuda" else "fp32",
            "input": [3, args.frames, args.size, args.size], "width": args.width,
        }
        from _common import write_json

        write_json(out_dir / "gpu.json", {"env": env, "rows": rows, "errors": errors})
        md = f"Card: {env['device']}, torch {env['torch']} (CUDA {env['cuda']}), {env['dtype']}\n\n" + table(rows)
        (out_dir / "gpu.md").write_text(md)
        return md

    # Compilation last: it is the slowest to measure, and what the time budget may have to skip.
    if "inference" in sections:
        bench_inference(args, device, clock, rows, errors, EAGER_VARIANTS)
        save()
    if "train" in sections:
        bench_train_steps(args, device, clock, rows, errors)
        save()
    if "read" in sections:
        bench_read_clips(args, clock, rows, errors)
        save()
    if "distill" in sections:
        run_distill(args, device, clock, rows, errors, out_dir)
        save()
    if "inference" in sections and not args.no_compile:
        bench_inference(args, device, clock, rows, errors, COMPILE_VARIANTS)
    print(save())

    if errors:
        print(f"{len(errors)} section(s) failed; see gpu.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
