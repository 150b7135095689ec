"""Feature extraction end to end: ``c3d-distill extract`` against the pipeline users write today.

    .venv/bin/python benches/bench_extract.py            # default run (about 10 minutes on 2 cores)
    .venv/bin/python benches/bench_extract.py --quick    # smoke run (numbers not meaningful)

The job: every dense 16-frame clip (starts 0, 16, 32, …) of every video → resize 128×171 → centre crop 112
→ float32 normalised (Kinetics mean/std) → the network → pool5 features, one array per video.

Methods, side by side in every repetition (order rotated), on the same videos, network and clips:
  extract        c3d_distill.extract.extract(...): the source's clip pipeline, each video's clips decoded in one
                 pass by read_clips on a reader thread (2 decode threads), the network in batches of 16
  decord+DataLoader   a torch DataLoader with 2 worker processes, one item per video: decord.VideoReader
                 (128×171 in the decoder, 1 thread) get_batch of the video's clip frames, crop and normalise
                 (benches/_baselines.py), the same network in batches of 16
and the stages alone, to see which bounds each: "our loader" (the extractor's reading without the network),
"decord loader" (the DataLoader without the network) and "model" (the network on a ready batch of 16).

Workloads (benches/_baselines.py, encoded once into benches/results/tmp/loader_videos/): ``ucf`` MPEG-4 part 2
AVI 320×240, keyframe every 12 frames; ``gop250`` the same pictures as H.264 with B-frames and one keyframe
per 250 frames. Networks: c3d, mc4 and sp at full width and at width 1/8 (random weights: speed does not
depend on them), written as run checkpoints with the Kinetics preset so both pipelines make the same clips.

Writes benches/results/extract.json and prints a markdown table of medians (clips/s) and the ratios the
targets are about: extract / model alone, extract / decord pipeline, sp extract / c3d extract.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _baselines import VisitDataset, cat_visits, make_workload  # noqa: E402
from _common import native_module, write_json  # noqa: E402

RESULTS = Path(__file__).parent / "results"
VIDEOS = RESULTS / "tmp" / "loader_videos"
BATCH = 16
FRAMES = 16


def write_source(folder: Path, name: str, width: float) -> Path:
    """A run checkpoint of ``name`` at ``width`` (random weights) that reads clips the Kinetics way."""
    from c3d_distill.models import create_model
    from c3d_distill.runs.checkpoint import FORMAT, save_checkpoint

    torch.manual_seed(0)
    model = create_model(name, 101, width=width)
    meta = {"name": name, "num_classes": 101, "width": width, "frames": FRAMES, "size": 112, "dropout": 0.5}
    path = folder / f"{name}_{width:g}.pt"
    save_checkpoint({"format": FORMAT, "model": model.state_dict(), "model_meta": meta,
                     "config": {"stride": 1, "resize": [128, 171]}}, path)
    return path


def dense(num_frames: int) -> list[list[int]]:
    from c3d_distill.clips import dense_clips

    return dense_clips(num_frames, FRAMES, 1)


def time_extract(source: Path, videos: list[Path], out: Path) -> tuple[float, float]:
    """One whole ``extract`` call into an empty folder (removed after): clips/s of the whole call (the
    checkpoint read, planning, decoding, the network and the writes) and of its pipeline alone (from the
    first video's plan to the last array written: what a long data set sees)."""
    from c3d_distill.extract import extract

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    res = extract(source, [str(v) for v in videos], out, batch_size=BATCH, threads=2, progress=False)
    dt = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    assert res["ok"] == len(videos) and res["clips"] > 0, res
    return res["clips"] / dt, res["clips_per_s"]


def time_our_loader(source: Path, videos: list[Path]) -> float:
    """The extractor's reading alone: its plan, its read requests, its reader thread (the checkpoint read
    before the clock starts)."""
    from c3d_distill.extract.core import Video, _chunks, _reader, plan  # Video: re-exported from .output
    from c3d_distill.runs.source import open_source

    clip = open_source(source).clip()
    frames, stride = clip.pop("frames"), clip.pop("stride")
    t = time.perf_counter()

    def planner(v):
        plan(v, frames, stride, frames * stride, "repeat", None)

    n = 0
    todo = [Video(str(v), v.stem) for v in videos]
    for kind, item in _reader(_chunks(todo, BATCH, 4 * BATCH, planner), dict(clip, threads=2), prefetch=2):
        assert kind == "read", item
        n += len(item[1])
    return n / (time.perf_counter() - t)


def _decord_loader(videos: list[Path]):
    import decord

    visits = []
    for v in videos:
        visits.append((str(v), dense(len(decord.VideoReader(str(v), num_threads=1)))))
    ds = VisitDataset(visits, "decord")
    return torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, collate_fn=cat_visits,
                                       persistent_workers=False, prefetch_factor=2)


def time_decord(model, videos: list[Path], *, with_model: bool) -> float:
    """decord + DataLoader, optionally feeding the network in batches of 16 (one array per video kept)."""
    t = time.perf_counter()
    n = 0
    with torch.inference_mode():
        for x in _decord_loader(videos):
            n += len(x)
            if with_model:
                feats = [model.features(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
                np.save(os.devnull, torch.cat(feats).numpy())
    return n / (time.perf_counter() - t)


def time_model(model, reps: int) -> float:
    x = torch.randn(BATCH, 3, FRAMES, 112, 112)
    with torch.inference_mode():
        model.features(x[:2])  # warm-up (allocations, the fast path's plans)
        t = time.perf_counter()
        for _ in range(reps):
            model.features(x)
    return reps * BATCH / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 small videos, 1 repetition")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--videos-small", type=int, default=8, help="videos per workload at width 1/8")
    ap.add_argument("--videos-full", type=int, default=3, help="videos per workload at full width")
    ap.add_argument("--models", default="c3d,mc4,sp")
    ap.add_argument("--widths", default="0.125,1")
    ap.add_argument("--workloads", default="ucf,gop250")
    ap.add_argument("--out", default=str(RESULTS / "extract.json"))
    args = ap.parse_args()
    if args.quick:
        args.reps, args.videos_small, args.videos_full = 1, 2, 1
    torch.set_num_threads(2)
    from c3d_distill.clips import VideoReader
    from c3d_distill.runs.source import open_source

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for workload in args.workloads.split(","):
            n_max = max(args.videos_small, args.videos_full)
            all_videos = make_workload(workload, VIDEOS, videos=n_max)
            for width in (float(w) for w in args.widths.split(",")):
                videos = all_videos[: args.videos_small if width < 1 else args.videos_full]
                for name in args.models.split(","):
                    src = write_source(tmp, name, width)
                    model = open_source(src).model
                    runs: dict[str, list[float]] = {k: [] for k in
                                                    ("extract", "extract_pipeline", "decord_pipeline",
                                                     "our_loader", "decord_loader", "model")}

                    def run_extract(s=src, v=videos, runs=runs) -> float:
                        whole, pipeline = time_extract(s, v, tmp / "feat")
                        runs["extract_pipeline"].append(pipeline)
                        return whole

                    for rep in range(args.reps):
                        jobs = [
                            ("extract", run_extract),
                            ("decord_pipeline", lambda m=model, v=videos: time_decord(m, v, with_model=True)),
                            ("our_loader", lambda s=src, v=videos: time_our_loader(s, v)),
                            ("decord_loader", lambda m=model, v=videos: time_decord(m, v, with_model=False)),
                            ("model", lambda m=model, r=(2 if width >= 1 else 6): time_model(m, r)),
                        ]
                        k = rep % len(jobs)
                        for key, job in jobs[k:] + jobs[:k]:  # order rotated per repetition
                            runs[key].append(job())
                    clips = sum(len(dense(VideoReader(str(v)).num_frames)) for v in videos)
                    med = {k: median(v) for k, v in runs.items()}
                    row = {"workload": workload, "model": name, "width": width, "videos": len(videos),
                           "clips": clips, "clips_per_s": med, "runs": runs,
                           "extract_over_model": med["extract"] / med["model"],
                           "extract_over_decord": med["extract"] / med["decord_pipeline"],
                           "pipeline_over_model": med["extract_pipeline"] / med["model"],
                           # both stages on the same cores: the rate if they shared them without idle time
                           "two_stage_bound": 1 / (1 / med["model"] + 1 / med["our_loader"])}
                    rows.append(row)
                    print(f"{workload} {name} w={width:g}: " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()),
                          flush=True)
    by = {(r["workload"], r["model"], r["width"]): r for r in rows}
    for r in rows:
        c3d = by.get((r["workload"], "c3d", r["width"]))
        if c3d is not None:
            r["extract_over_c3d_extract"] = r["clips_per_s"]["extract"] / c3d["clips_per_s"]["extract"]
    result = {
        "benchmark": "extract",
        "command": "python benches/bench_extract.py" + (" --quick" if args.quick else ""),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "native": native_module(),
        "batch": BATCH,
        "reps": args.reps,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(table(result))
    print(f"wrote {out}")
    return 0


def table(result: dict) -> str:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from render_tables import extract_table  # the docs render the same table from the JSON

    return extract_table(result)


if __name__ == "__main__":
    sys.exit(main())
