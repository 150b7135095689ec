"""Memory of the clip pipeline: no growth over 20,000 clips, and what a loader with N threads holds.

1. Leak check: a ``ClipLoader`` (prefetch thread, ``read_clips`` in Rust) reads ``--clips`` clips (default
   20,000) from a dozen small videos (MPEG-4 AVI and H.264 MP4, 160×120), epoch after epoch, and the
   resident memory (RSS) of the process is recorded every 1,000 clips. After a warm-up of ``--warmup``
   clips (caches, allocator pools, thread pools), the growth must stay under ``--limit-mb`` (50 MB):
   judged on the medians of the first and last quarter of the samples and on the fitted slope, since
   RSS moves by tens of MB from one sample to the next.
2. Loader memory by thread count: for N in ``--threads`` (default 1 2), a fresh process reads C3D batches
   (16 clips × 16 frames, 320×240 video resized to 128×171, cropped to 112, float32, NCTHW) with
   ``ClipLoader(threads=N, prefetch=2)`` and records its RSS before the loader, its steady RSS and its
   peak (VmHWM). What one batch weighs is the tensor's ``nbytes``.

    python benches/bench_memory.py                  # about 3 minutes on 2 cores
    python benches/bench_memory.py --clips 4000     # quicker

Writes ``benches/results/memory.json`` and prints markdown tables. Exit status 1 when the growth after
warm-up exceeds the limit.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import videogen  # noqa: E402

sys.path.insert(0, str(HERE))
from _common import native_module, write_json  # noqa: E402

MB = 2**20


def proc_status() -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def make_videos(folder: Path, size: tuple[int, int], n: int, frames: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        codec, ext = ("mpeg4", "avi") if i % 2 == 0 else ("libx264", "mp4")
        p = folder / f"v{i:02d}_{size[0]}x{size[1]}.{ext}"
        if not p.exists() or p.stat().st_size == 0:
            extra = ["-q:v", "5"] if codec == "mpeg4" else None
            videogen.encode(p, codec=codec, size=size, frames=frames + 3 * i, gop=12, extra=extra,
                            source="testsrc2")
        out.append(p)
    return out


def leak_check(videos: list[Path], clips: int, warmup: int, every: int, threads: int) -> dict:
    """Read ``clips`` clips through ClipLoader; RSS every ``every`` clips."""
    from c3d_distill.clips import ClipLoader

    items = [(str(p), i % 5) for i, p in enumerate(videos)] * 10  # 120 videos an epoch
    loader = ClipLoader(items, clip_len=8, stride=2, batch_size=40, clips_per_video=1, size=(64, 86), crop=56,
                        crop_mode="random", flip="random", dtype="float32", mean=(0.43, 0.4, 0.37),
                        std=(0.23, 0.22, 0.22), threads=threads, prefetch=2, seed=0)
    samples = [{"clips": 0, "rss_mb": proc_status()["VmRSS"] / MB, "s": 0.0}]
    n, epoch, next_mark = 0, 0, every
    t0 = time.perf_counter()
    checksum = 0.0
    while n < clips:
        loader.set_epoch(epoch)
        for x, _ in loader:
            n += x.shape[0]
            checksum += float(x[:, 0, 0, 0, 0].sum())  # touch the data, as a model would
            if n >= next_mark:
                samples.append({"clips": n, "rss_mb": proc_status()["VmRSS"] / MB,
                                "s": round(time.perf_counter() - t0, 2)})
                next_mark += every
            if n >= clips:
                break
        epoch += 1
    base = next(s for s in samples if s["clips"] >= warmup)["rss_mb"]
    after = [s["rss_mb"] for s in samples if s["clips"] >= warmup]
    # RSS moves by tens of MB between samples (batches in flight, allocator arenas), so a leak is judged
    # on medians of the first and last quarter after warm-up, and on the least-squares slope
    q = max(1, len(after) // 4)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    xs = [s["clips"] for s in samples if s["clips"] >= warmup]
    mx, my = sum(xs) / len(xs), sum(after) / len(after)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, after, strict=True)) / max(1e-9, sum((x - mx) ** 2 for x in xs))
    return {
        "clips": n, "epochs": epoch, "warmup_clips": warmup, "every": every, "threads": threads,
        "clip": "8 frames (stride 2) of 160x120 video -> 64x86 -> random crop 56, flip, float32 normalised",
        "batch_size": 40, "seconds": round(time.perf_counter() - t0, 1),
        "rss_at_warmup_mb": round(base, 1), "rss_final_mb": round(after[-1], 1),
        "growth_after_warmup_mb": round(after[-1] - base, 1),
        "max_growth_after_warmup_mb": round(max(after) - base, 1),
        "median_growth_mb": round(med(after[-q:]) - med(after[:q]), 1),
        "slope_mb_per_10k_clips": round(slope * 10_000, 2),
        "rss_range_after_warmup_mb": [round(min(after), 1), round(max(after), 1)],
        "samples": [{**s, "rss_mb": round(s["rss_mb"], 1)} for s in samples],
    }


def loader_memory(videos: list[Path], threads: int, batches: int) -> dict:
    """RSS of a process reading C3D batches with a ClipLoader of ``threads`` threads (run in a fresh process)."""
    import torch  # noqa: F401  (imported before the baseline: it is there in any training process)
    from c3d_distill.clips import ClipLoader

    before = proc_status()
    items = [(str(p), i % 5) for i, p in enumerate(videos)] * 20
    loader = ClipLoader(items, clip_len=16, batch_size=16, size=(128, 171), crop=112, crop_mode="random",
                        flip="random", dtype="float32", threads=threads, prefetch=2, seed=0)
    steady, n, batch_bytes, t0, epoch = [], 0, 0, time.perf_counter(), 0
    while n < batches:
        loader.set_epoch(epoch)
        for x, _ in loader:
            if x.numel() * x.element_size() > batch_bytes:  # a full batch, not an epoch's last, partial one
                batch_bytes, shape = x.numel() * x.element_size(), list(x.shape)
            n += 1
            if n > 3:
                steady.append(proc_status()["VmRSS"])
            if n >= batches:
                break
        epoch += 1
    seconds = time.perf_counter() - t0
    after = proc_status()
    return {
        "threads": threads, "batches": n, "batch_shape": shape, "batch_dtype": "float32",
        "batch_mb": round(batch_bytes / MB, 2), "prefetch": 2,
        "rss_before_loader_mb": round(before["VmRSS"] / MB, 1),
        "rss_steady_median_mb": round(sorted(steady)[len(steady) // 2] / MB, 1),
        "rss_peak_mb": round(after["VmHWM"] / MB, 1),
        "loader_steady_mb": round((sorted(steady)[len(steady) // 2] - before["VmRSS"]) / MB, 1),
        "loader_peak_mb": round((after["VmHWM"] - before["VmRSS"]) / MB, 1),
        "clips_per_s": round(n * 16 / seconds, 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=20_000)
    ap.add_argument("--warmup", type=int, default=2_000)
    ap.add_argument("--every", type=int, default=1_000)
    ap.add_argument("--leak-threads", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, default=24, help="C3D batches read per thread count")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per thread count (median)")
    ap.add_argument("--limit-mb", type=float, default=50.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "memory.json")
    ap.add_argument("--work", type=Path, default=HERE / "results" / "tmp" / "memory")
    ap.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    c3d_videos = make_videos(args.work, (320, 240), 6, 40)
    if args.child_threads is not None:
        print(json.dumps(loader_memory(c3d_videos, args.child_threads, args.batches)))
        return 0

    small = make_videos(args.work, (160, 120), 12, 30)
    leak = leak_check(small, args.clips, args.warmup, args.every, args.leak_threads)

    by_threads = []
    for n in args.threads:
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, __file__, "--child-threads", str(n), "--batches", str(args.batches),
                                  "--work", str(args.work)], check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        med = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in
               ("rss_before_loader_mb", "rss_steady_median_mb", "rss_peak_mb", "loader_steady_mb", "loader_peak_mb",
                "clips_per_s")}
        by_threads.append({**runs[0], **med, "repeats": len(runs), "runs": runs})

    import c3d_distill

    result = {
        "command": "python benches/bench_memory.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "version": c3d_distill.__version__, "limit_mb": args.limit_mb,
        "native_module": native_module(),
        "leak": leak, "leak_ok": leak["median_growth_mb"] < args.limit_mb
        and leak["slope_mb_per_10k_clips"] * (leak["clips"] - leak["warmup_clips"]) / 10_000 < args.limit_mb, "by_threads": by_threads,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)

    print(f"### RSS over {leak['clips']} clips (ClipLoader, threads={leak['threads']}, {leak['seconds']} s)\n")
    print("| clips read | RSS (MB) |\n|---:|---:|")
    for s in leak["samples"]:
        print(f"| {s['clips']} | {s['rss_mb']:.1f} |")
    print(f"\nafter {leak['warmup_clips']} warm-up clips: median of the last quarter minus median of the first "
          f"{leak['median_growth_mb']} MB, slope {leak['slope_mb_per_10k_clips']} MB per 10,000 clips, RSS within "
          f"{leak['rss_range_after_warmup_mb']} MB (limit {args.limit_mb} MB)\n")
    print("### Loader memory, C3D batches (16 x 3 x 16 x 112 x 112 float32), prefetch 2, "
          f"median of {args.repeats} processes\n")
    print("| threads | batch (MB) | RSS before loader (MB) | loader steady (MB) | loader peak (MB) | clips/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in by_threads:
        print(f"| {r['threads']} | {r['batch_mb']} | {r['rss_before_loader_mb']} | {r['loader_steady_mb']} | "
              f"{r['loader_peak_mb']} | {r['clips_per_s']} |")
    return 0 if result["leak_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
