"""Clip loading speed: read_clips / ClipLoader against decord, PyAV and torchcodec, and the FFmpeg limit.

    .venv/bin/python benches/bench_loader.py            # default run, a few minutes on 2 cores
    .venv/bin/python benches/bench_loader.py --quick    # smoke run (seconds; numbers not meaningful)

Workloads (encoded once with the ``ffmpeg`` command into benches/results/tmp/loader_videos/):
  ucf     320×240 25 fps MPEG-4 part 2 AVI, keyframe every 12 frames, 5–7 s videos
  gop250  the same pictures as H.264 MP4 (B-frames) with a keyframe every 250 frames (so: one per video)
The job: random 16-frame clips → resize 128×171 → centre crop 112 → float32 normalised (B, 3, 16, 112, 112)
(NCTHW), batches of 16 clips. "clips/visit" K: each video visit takes K random clips of one video.

Methods, all run side by side in every repetition (order rotated), on the same clip list:
  read_clips   c3d_distill.clips.read_clips(batch, threads=2) in this process
  ClipLoader   c3d_distill.clips.ClipLoader(threads=2, prefetch=2): same sampling distribution, its own draws
  decord / pyav / torchcodec   a torch DataLoader with 2 worker processes, 1 decoder thread each
                 (benches/_baselines.py: each library's fastest exact route)
  FFmpeg limit  Σ over visits of the decode time of the packets the visit forces (keyframe at or before its
                first frame → last needed packet, decode order), from ``ffmpeg -threads 1 -benchmark_all``
                decoding each visited video once, measured in every repetition next to the others;
                clips/s = 2 cores × clips / that time. Opening files and converting pixels are not in it.

Every method is timed two ways: wall-clock clips/s (what a user sees, but on this shared 2-core machine it
depends on what else runs), and CPU ms per clip (user + sys of this process, its threads and its DataLoader
workers; for the limit, of ffmpeg's decode calls), turned into "clips/s by CPU" = 2 cores / CPU time per clip:
the rate with both cores to itself and no idle time. The second is what other people's load cannot skew.

Writes benches/results/loader.json and prints a markdown table (medians; ratios vs decord and vs the limit),
then checks that every method returns the same frames (frame identity against the ``ffmpeg`` command's
own decode, and pixel differences between methods).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _baselines as B  # noqa: E402
from c3d_distill.clips import ClipLoader, VideoReader, random_clip, read_clips  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "loader.json"
VIDEO_CACHE = ROOT / "results" / "tmp" / "loader_videos"
CLIP_LEN = 16
BATCH = 16
CORES = 2
READ_KW = dict(size=B.SIZE, crop=B.CROP, layout="NCTHW", dtype="float32", mean=B.MEAN, std=B.STD)
BASELINES = ("decord", "pyav", "torchcodec")
# With several clips per visit, also decord called once per clip (how most training code uses it);
# the "decord" row merges a visit's clips into one call, as read_clips does.
PER_CLIP = "decord 1 call/clip"
DEFAULT_CLIPS = {"ucf": 160, "gop250": 64}  # gop250 clips cost ~5x more to decode; keeps the run to minutes
PROFILE_CLIPS = 16


def make_visits(paths, num_frames, n_clips, k, seed):
    """``n_clips / k`` visits (path, [k clips]) over the videos in shuffled passes, clips drawn with
    ``random_clip`` (the ClipLoader's sampler)."""
    rng = np.random.default_rng(seed)
    visits = []
    while len(visits) * k < n_clips:
        for v in rng.permutation(len(paths)):
            clips = [random_clip(num_frames[v], CLIP_LEN, rng=rng) for _ in range(k)]
            visits.append((str(paths[v]), clips))
            if len(visits) * k >= n_clips:
                break
    return visits


def batches_of(visits, k):
    per = BATCH // k
    return [visits[i : i + per] for i in range(0, len(visits), per)]


class ListBatches:
    """A batch sampler whose batches can be swapped between epochs (warm-up, then the timed pass) while
    persistent workers stay up: batch sampling happens in the main process."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def baseline_loader(name, visits, k):
    ds = B.VisitDataset(visits, name)
    per = BATCH // k
    all_batches = [list(range(i, min(i + per, len(visits)))) for i in range(0, len(visits), per)]
    sampler = ListBatches(all_batches[:2])
    dl = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=CORES, collate_fn=B.cat_visits,
                                     persistent_workers=True, prefetch_factor=2)
    for _ in dl:  # start the workers, import the library, warm the caches
        pass
    sampler.batches = all_batches
    return dl


def cpu_seconds() -> float:
    """CPU time (user + sys) of this process (all threads) and its live children (DataLoader workers)."""
    total = time.process_time()
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def timed(fn):
    """Run ``fn() -> clips``; return (clips, wall seconds, CPU seconds of this process and its workers)."""
    c, t = cpu_seconds(), time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t, cpu_seconds() - c


def run_dataloader(dl):
    return timed(lambda: sum(x.shape[0] for x in dl))


def run_read_clips(batches):
    def go():
        n = 0
        for b in batches:
            x = torch.from_numpy(read_clips([(p, c) for p, clips in b for c in clips], threads=CORES, **READ_KW))
            n += x.shape[0]
        return n

    return timed(go)


def run_clip_loader(loader, n_clips):
    def go():
        n, epoch = 0, 1
        while n < n_clips:
            loader.set_epoch(epoch)
            for x, _ in loader:
                n += x.shape[0]
            epoch += 1
        return n

    return timed(go)


def forced_ms_per_clip(costs, visits, *, cpu=False):
    """Mean decode ms (wall, or CPU) per clip of the packets the visits force, from ``costs``
    (path -> PacketCosts)."""
    total_us = sum(costs[p].forced_us(np.concatenate(clips), cpu=cpu) for p, clips in visits)
    return total_us * 1e-3 / sum(len(c) for _, c in visits)


def run_ffmpeg(visits, costs_out):
    """The FFmpeg limit, measured now (so it sees the same machine load as the loaders next to it):
    decode each visited video once with the ffmpeg command, sum the forced packets' times, and count
    them as spread over ``CORES`` cores. Returns (clips, wall seconds, CPU seconds) like the others."""
    costs = {p: B.ffmpeg_packet_costs(p) for p in sorted({p for p, _ in visits})}
    costs_out.update(costs)
    n = sum(len(c) for _, c in visits)
    return n, forced_ms_per_clip(costs, visits) * 1e-3 * n / CORES, forced_ms_per_clip(costs, visits, cpu=True) * 1e-3 * n


# ---------------------------------------------------------------------------------------------------
# Correctness: same frames from every method.


def ffmpeg_reference(path):
    """All frames of ``path`` scaled to 128×171 by the ``ffmpeg`` command and centre-cropped: (N,112,112,3)."""
    h, w = B.SIZE
    raw = subprocess.run([B.FFMPEG, "-v", "error", "-threads", "1", "-i", path, "-vf", f"scale={w}:{h}",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    full = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    return full[:, B.TOP : B.TOP + B.CROP, B.LEFT : B.LEFT + B.CROP].astype(np.float32)


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """float32 normalised (K, 3, T, 112, 112) → 0–255 float (K, T, 112, 112, 3)."""
    mean = torch.tensor(B.MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(B.STD).view(1, 3, 1, 1, 1)
    return ((x * std + mean) * 255).permute(0, 2, 3, 4, 1).numpy()


def check_frames(visits):
    """For a few visits: every method's output frame must be closest to the ffmpeg frame it asked for
    (among all frames of the video), and the methods' pixels must agree closely."""
    report = {"clips": 0, "frames": 0, "wrong_frames": {}, "mean_abs_diff_vs_ffmpeg": {}, "margin_min": {}}
    methods = {"read_clips": lambda p, c: torch.from_numpy(read_clips([(p, x) for x in c], threads=1, **READ_KW))}
    methods.update({m: (lambda p, c, m=m: B.finish(B.READERS[m](p, c))) for m in (*BASELINES, PER_CLIP)})
    for name in methods:
        report["wrong_frames"][name] = 0
        report["mean_abs_diff_vs_ffmpeg"][name] = []
        report["margin_min"][name] = float("inf")
    for path, clips in visits:
        ref = ffmpeg_reference(path)
        want = np.asarray(clips)
        report["clips"] += len(clips)
        report["frames"] += want.size
        for name, fn in methods.items():
            px = to_pixels(fn(path, clips))  # (K, T, 112, 112, 3)
            for kk in range(want.shape[0]):
                for t in range(want.shape[1]):
                    d = np.abs(ref - px[kk, t]).mean(axis=(1, 2, 3))  # distance to every ffmpeg frame
                    best = int(np.argmin(d))
                    if best != want[kk, t] and d[want[kk, t]] > d[best]:
                        report["wrong_frames"][name] += 1
                    others = np.delete(d, want[kk, t])
                    report["margin_min"][name] = min(report["margin_min"][name],
                                                     float(others.min() - d[want[kk, t]]))
                    report["mean_abs_diff_vs_ffmpeg"][name].append(float(d[want[kk, t]]))
    for name in methods:
        v = report["mean_abs_diff_vs_ffmpeg"][name]
        report["mean_abs_diff_vs_ffmpeg"][name] = {"mean": float(np.mean(v)), "max": float(np.max(v))}
    report["ok"] = all(n == 0 for n in report["wrong_frames"].values())
    return report


# ---------------------------------------------------------------------------------------------------
# Where our time goes: the same visits through the pipeline's stages, one thread, per clip.


def profile_ours(visits, reps):
    """CPU ms per clip of each stage (one thread, in this process)."""
    def per_clip(fn):
        ts = []
        for _ in range(reps):
            t = time.process_time()
            for p, clips in visits:
                fn(p, clips)
            ts.append(time.process_time() - t)
        return float(np.median(ts)) * 1e3 / sum(len(c) for _, c in visits)

    def frames(p, clips):
        return sorted({f for c in clips for f in c})

    stages = {
        "VideoReader() (index; cached per process)": lambda p, c: VideoReader(p),
        "open + 1 frame (get_frames [first])": lambda p, c: VideoReader(p).get_frames(frames(p, c)[:1]),
        "open + decode + rgb24 (get_frames)": lambda p, c: VideoReader(p).get_frames(frames(p, c)),
        "+ resize 128x171 (get_frames size=)": lambda p, c: VideoReader(p).get_frames(frames(p, c), size=B.SIZE),
        "read_clips uint8 NTHWC crop 112": lambda p, c: read_clips(
            [(p, x) for x in c], size=B.SIZE, crop=B.CROP, layout="NTHWC", dtype="uint8", threads=1),
        "read_clips float32 NCTHW normalised": lambda p, c: read_clips([(p, x) for x in c], threads=1, **READ_KW),
    }
    stages.update({f"{m} in-process (decode+resize+finish)": (lambda p, c, m=m: B.finish(B.READERS[m](p, c)))
                   for m in BASELINES})
    return {name: per_clip(fn) for name, fn in stages.items()}


# ---------------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=40, help="videos per workload (default 40)")
    ap.add_argument("--clips", type=int, default=None,
                    help="clips per method per repetition (default: 160 for ucf, 64 for gop250)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3; medians reported)")
    ap.add_argument("--workloads", default="ucf:1,gop250:1,gop250:4",
                    help="workload:clips_per_visit list (default ucf:1,gop250:1,gop250:4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run: 8 videos, 32 clips, 1 repetition")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-stage profile")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--render", type=Path, metavar="JSON", help="only print the tables of an earlier run")
    args = ap.parse_args(argv)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return
    if args.quick:
        args.videos, args.clips, args.reps = 8, 32, 1
    clips_for = (lambda w: args.clips) if args.clips else (lambda w: DEFAULT_CLIPS[w])
    t_start = time.perf_counter()
    torch.set_num_threads(1)  # the main process only receives batches; the work is in workers / Rust threads

    specs = [(w, int(k)) for w, k in (s.split(":") for s in args.workloads.split(","))]
    result = {
        "bench": "loader",
        "command": "python benches/bench_loader.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "loadavg_start": os.getloadavg()},
        "params": {"videos": args.videos, "clips": {w: clips_for(w) for w, _ in specs}, "reps": args.reps, "clip_len": CLIP_LEN,
                   "batch": BATCH, "size": B.SIZE, "crop": B.CROP, "cores": CORES},
        "versions": {},
        "rows": [],
    }
    import av
    import decord
    import torchcodec
    result["versions"] = {"av": av.__version__, "decord": decord.__version__, "torchcodec": torchcodec.__version__,
                          "ffmpeg": subprocess.run([B.FFMPEG, "-version"], capture_output=True,
                                                   text=True).stdout.split("\n")[0]}

    workloads = {}
    for w in sorted({w for w, _ in specs}):
        t = time.perf_counter()
        paths = B.make_workload(w, VIDEO_CACHE, videos=args.videos, seed=args.seed)
        workloads[w] = (paths, [VideoReader(p).num_frames for p in paths])
        print(f"[{w}] {len(paths)} videos ready ({time.perf_counter() - t:.1f} s)", flush=True)

    costs = {}  # path -> PacketCosts of the latest ffmpeg run
    for w, k in specs:
        paths, nf = workloads[w]
        visits = make_visits(paths, nf, clips_for(w), k, args.seed + 1)
        batches = batches_of(visits, k)
        n_clips = sum(len(c) for _, c in visits)
        loader = ClipLoader([(str(p), 0) for p in paths], clip_len=CLIP_LEN, clips_per_video=k, batch_size=BATCH,
                            seed=args.seed, threads=CORES, prefetch=2, num_frames=nf, **READ_KW)
        run_clip_loader(loader, BATCH)  # warm-up (imports, page cache)
        run_read_clips(batches[:1])
        dls = {m: baseline_loader(m, visits, k) for m in BASELINES + ((PER_CLIP,) if k > 1 else ())}
        runners = {"read_clips": lambda b=batches: run_read_clips(b),
                   "ClipLoader": lambda ld=loader, n=n_clips: run_clip_loader(ld, n)}
        runners.update({m: (lambda dl=dl: run_dataloader(dl)) for m, dl in dls.items()})
        runners["FFmpeg limit"] = lambda v=visits: run_ffmpeg(v, costs)
        times = {m: [] for m in runners}
        cpu_ms = {m: [] for m in runners}
        names = list(runners)
        for r in range(args.reps):
            for m in names[r % len(names):] + names[: r % len(names)]:  # rotate: load drifts hit all alike
                n, dt, cpu = runners[m]()
                times[m].append(n / dt)
                cpu_ms[m].append(cpu * 1e3 / n)
            print(f"[{w} K={k}] rep {r + 1}: " + ", ".join(
                f"{m} {times[m][-1]:.0f}/s {cpu_ms[m][-1]:.1f} cpu-ms" for m in names), flush=True)
        del dls
        med = {m: float(np.median(v)) for m, v in times.items()}
        med_cpu = {m: float(np.median(v)) for m, v in cpu_ms.items()}
        by_cpu = {m: CORES * 1e3 / v for m, v in med_cpu.items()}  # clips/s if the 2 cores were all ours
        row = {"workload": w, "clips_per_visit": k, "visits": len(visits), "clips": n_clips,
               "ffmpeg_forced_ms_per_clip": forced_ms_per_clip(costs, visits),
               "clips_per_s": med, "clips_per_s_all": times,
               "vs_decord": {m: med[m] / med["decord"] for m in med},
               "vs_ffmpeg_limit": {m: med[m] / med["FFmpeg limit"] for m in med},
               "cpu_ms_per_clip": med_cpu, "cpu_ms_per_clip_all": cpu_ms,
               "clips_per_s_cpu": by_cpu,
               "vs_decord_cpu": {m: by_cpu[m] / by_cpu["decord"] for m in by_cpu},
               "vs_ffmpeg_limit_cpu": {m: by_cpu[m] / by_cpu["FFmpeg limit"] for m in by_cpu}}
        result["rows"].append(row)

    print("\nchecking frames ...", flush=True)
    checks = {}
    for w in sorted({w for w, _ in specs}):
        paths, nf = workloads[w]
        checks[w] = check_frames(make_visits(paths[:3], nf[:3], 6, 2, args.seed + 7))
    result["frame_check"] = checks

    if not args.no_profile:
        print("profiling ...", flush=True)
        result["profile_ms_per_clip"] = {}
        for w, k in specs:
            paths, nf = workloads[w]
            visits = make_visits(paths, nf, PROFILE_CLIPS, k, args.seed + 3)
            prof = profile_ours(visits, 1)
            prof["ffmpeg forced decode (the limit's cost)"] = forced_ms_per_clip(costs, visits, cpu=True)
            result["profile_ms_per_clip"][f"{w}:{k}"] = prof

    result["machine"]["loadavg_end"] = os.getloadavg()
    result["seconds"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from _common import write_json

    write_json(args.out, result)
    print()
    print(render(result))
    print(f"\nwrote {args.out} in {result['seconds']:.0f} s")


def render(result) -> str:
    order = ["read_clips", "ClipLoader", *BASELINES, PER_CLIP, "FFmpeg limit"]
    lines = ["| workload | clips/visit | method | clips/s (wall) | × decord | % of limit "
             "| CPU ms/clip | clips/s by CPU | × decord | % of limit |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        tag = f"| {row['workload']} | {row['clips_per_visit']} |"
        for m in (m for m in order if m in row["clips_per_s"]):
            lines.append(f"{tag} {m} | {row['clips_per_s'][m]:.0f} | {row['vs_decord'][m]:.2f} "
                         f"| {100 * row['vs_ffmpeg_limit'][m]:.0f}% | {row['cpu_ms_per_clip'][m]:.1f} "
                         f"| {row['clips_per_s_cpu'][m]:.0f} | {row['vs_decord_cpu'][m]:.2f} "
                         f"| {100 * row['vs_ffmpeg_limit_cpu'][m]:.0f}% |")
    if "frame_check" in result:
        lines.append("")
        for w, c in result["frame_check"].items():
            wrong = ", ".join(f"{m} {n}" for m, n in c["wrong_frames"].items())
            mad = ", ".join(f"{m} {v['mean']:.2f}" for m, v in c["mean_abs_diff_vs_ffmpeg"].items())
            lines.append(f"frames [{w}]: {c['frames']} checked; wrong frames: {wrong}; "
                         f"mean |diff| vs ffmpeg (0-255): {mad}")
    if "profile_ms_per_clip" in result:
        lines.append("")
        keys = list(result["profile_ms_per_clip"])
        lines.append("| CPU ms per clip, 1 thread | " + " | ".join(keys) + " |")
        lines.append("|---|" + "---|" * len(keys))
        for stage in result["profile_ms_per_clip"][keys[0]]:
            lines.append(f"| {stage} | " + " | ".join(f"{result['profile_ms_per_clip'][k][stage]:.2f}"
                                                     for k in keys) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
