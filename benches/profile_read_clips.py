"""A steady stream of ``read_clips`` calls on the "ucf" workload, for a profiler to look at.

Reads random 16-frame clips (the bench_loader workload: 128×171 resize, 112 centre crop, float32 NCTHW
normalised, batches of 16) after a warm-up, and prints CPU ms per clip. The share table in
docs/benchmarks.md (benches/results/profile_read_clips.txt) comes from:

    perf record -D 5000 -o perf.data .venv/bin/python benches/profile_read_clips.py --clips 1600
    perf report -i perf.data --no-children --sort dso

(``-D 5000`` skips the first 5 s: importing torch and the warm-up.) The workload videos are made by
``benches/bench_loader.py`` (once, into benches/results/tmp/loader_videos/).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import _baselines as B  # noqa: E402
from c3d_distill.clips import VideoReader, random_clip, read_clips  # noqa: E402

VIDEOS = Path(__file__).resolve().parent / "results" / "tmp" / "loader_videos" / "ucf"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=800)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    paths = B.make_workload("ucf", VIDEOS.parent, videos=40, seed=0)
    lengths = [VideoReader(p).num_frames for p in paths]
    rng = np.random.default_rng(args.seed)
    clips = []
    while len(clips) < args.clips:
        for i in rng.permutation(len(paths)):
            clips.append((str(paths[i]), random_clip(lengths[i], 16, rng=rng)))
    clips = clips[: args.clips]
    kw = dict(size=B.SIZE, crop=B.CROP, layout="NCTHW", dtype="float32", mean=B.MEAN, std=B.STD,
              threads=args.threads)
    read_clips(clips[:16], **kw)  # warm-up: index cache, thread pool, page cache
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(0, len(clips), 16):
        read_clips(clips[i : i + 16], **kw)
    n = len(clips)
    print(f"{n} clips, {args.threads} thread(s): {(time.process_time() - cpu) / n * 1e3:.2f} CPU ms/clip, "
          f"{(time.perf_counter() - wall) / n * 1e3:.2f} wall ms/clip")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
