"""Features of every clip of every video: dense clips, one decoding pass per video, the model in batches.

The output folder holds one array per video (``.npy``; with several layers one per layer,
``NAME.LAYER.npy``) or, with ``fmt="h5"``, one ``features.h5`` with a data set per video and layer, and
``manifest.jsonl``: a header line (the source, its SHA-256 and every setting) and one line per video
(``video``, ``frames``, ``fps``, ``starts``, ``times``, ``layer``, ``shape``, ``status``).

Resuming is by the manifest: every array is written under a temporary name and renamed, and its
manifest line appended only after the rename, so a process killed at any moment leaves finished videos
finished and no torn array; a rerun with the same source and settings skips the videos it finished.
Under torchrun each rank takes every ``world_size``-th video and appends to its own manifest part; rank 0
merges the parts when all ranks are done.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..log import notice, warn
from ..progress import progress_bar
from .output import LAYERS, ExtractError, Output, Video, read_manifest  # noqa: F401  (read_manifest: public here)

FORMATS = ("npy", "h5")
DTYPES = ("float32", "float16")


def relative_names(paths: Sequence[str], root: str | None) -> list[str]:
    """Each video's path relative to ``root`` (a data set's) or to the common folder of ``paths``,
    extension removed: where its arrays go under the output folder."""
    absp = [os.path.abspath(p) for p in paths]
    base = os.path.abspath(root) if root else os.path.commonpath([os.path.dirname(p) for p in absp])
    out = []
    for p in absp:
        rel = os.path.relpath(p, base)
        if rel.startswith(".."):
            rel = os.path.basename(p)
        out.append(os.path.splitext(rel)[0])
    seen: dict[str, str] = {}
    for p, r in zip(paths, out, strict=True):
        if r in seen:
            raise ExtractError(f"{p} and {seen[r]} would write the same output {r!r} (same name, other extension)")
        seen[r] = p
    return out


def layer_outputs(model: torch.nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """The asked layers for a batch: pool5 (``model.features``), fc6 and fc7 after their ReLU (what
    Caffe's in-place ReLU leaves in those blobs), and the logits (fc8), dropout off."""
    feats = model.features(x)
    out = {"pool5": feats}
    if any(name != "pool5" for name in layers):
        h6 = F.relu(model.fc6(feats))
        h7 = F.relu(model.fc7(h6))
        out.update(fc6=h6, fc7=h7, logits=model.fc8(h7))
    return {k: out[k].flatten(1) for k in layers}


def check_layers(model: torch.nn.Module, layers: Sequence[str]) -> list[str]:
    layers = list(dict.fromkeys(layers))
    bad = [name for name in layers if name not in LAYERS]
    if bad:
        raise ExtractError(f"--layer: unknown {', '.join(bad)}; choose from {', '.join(LAYERS)}")
    if any(name != "pool5" for name in layers) and getattr(model, "num_classes", None) is None:
        raise ExtractError(f"--layer {','.join(layers)}: the network has no fc6/fc7/fc8 (pool5 features only)")
    return layers


def plan(video: Video, clip_len: int, frame_step: int, step: int, short: str, stream: int | None) -> Video:
    """Dense clip starts ``0, step, 2·step, …`` while a whole clip fits (one clip by ``short`` for a
    video shorter than a clip) and the time of each start."""
    from ..clips import VideoReader, dense_clips

    reader = VideoReader(video.path, stream=stream)
    video.frames, video.fps = reader.num_frames, float(reader.fps)
    video.clips = dense_clips(reader.num_frames, clip_len, frame_step, step, short=short)
    video.starts = [c[0] for c in video.clips]
    pts = reader.pts
    video.times = [round(float(pts[s]), 6) for s in video.starts]
    return video


# --------------------------------------------------------------------------------------------------
# the pipeline


def _chunks(videos, min_clips: int, max_clips: int, planner) -> Iterator[tuple[str, Any]]:
    """Plan each video when its turn comes (``planner(video)``; an error yields ``("failed", (video,
    message, exception))``) and group whole videos into read requests of at least ``min_clips`` clips; only
    a video of more than ``max_clips`` clips is cut, into pieces of ``max_clips`` (each piece seeks anew,
    which on a long-GOP file means decoding from the keyframe again, so videos are kept whole otherwise)."""
    group: list[tuple[Video, int, int]] = []
    n = 0
    for v in videos:
        try:
            planner(v)
        except (OSError, ValueError, RuntimeError) as exc:
            yield "failed", (v, str(exc) if str(v.path) in str(exc) else f"{v.path}: {exc}", exc)
            continue
        for a in range(0, len(v.clips), max_clips):
            b = min(len(v.clips), a + max_clips)
            group.append((v, a, b))
            n += b - a
            if n >= min_clips:
                yield "read", group
                group, n = [], 0
    if group:
        yield "read", group


def _reader(items, read_kw: dict[str, Any], prefetch: int):
    """Plan and decode the next requests on a thread while the model runs (read_clips releases the GIL)."""
    from ..clips import read_clips

    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for kind, item in items:
                if kind == "read":
                    clips = [(v.path, v.clips[i]) for v, a, b in item for i in range(a, b)]
                    arr, report = read_clips(clips, on_error="skip", **read_kw)
                    item = (item, arr, report)
                if not put((kind, item)):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))
            return
        put(None)

    t = threading.Thread(target=work, name="extract-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if item[0] == "error":
                raise item[1]
            yield item
    finally:
        stop.set()


def extract(
    source: str | os.PathLike,
    videos: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    root: str | None = None,
    layers: Sequence[str] = ("pool5",),
    clip_len: int | None = None,
    step: int | None = None,
    fmt: str = "npy",
    dtype: str = "float32",
    batch_size: int = 16,
    device: str = "cpu",
    amp: bool = False,
    threads: int | None = None,
    on_error: str = "raise",
    short: str = "repeat",
    stream: int | None = None,
    preprocess: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Extract ``layers`` of every dense clip of ``videos`` with the network of ``source`` (a run folder,
    run checkpoint or public C3D state dict, read the way it was trained). ``step``: frames between clip
    starts (default: one clip length, no overlap); ``clip_len`` must be the network's. Returns counts and
    throughput. See the module docstring for the output folder."""
    from ..checks import integer
    from ..runs.source import open_source

    if fmt not in FORMATS:
        raise ExtractError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise ExtractError(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    if on_error not in ("raise", "skip"):
        raise ExtractError(f"--on-error: {on_error!r} is not raise or skip")
    if short not in ("repeat", "loop", "error"):
        raise ExtractError(f"--short: {short!r} is not repeat, loop or error")
    batch_size = integer(batch_size, "--batch-size", minimum=1)
    if not videos:
        raise ExtractError("no videos to extract (--videos or --data gave none)")
    dinfo = distributed.setup(device)
    src = open_source(source, option="SOURCE", preprocess=preprocess)
    model = src.model.to(dinfo.device).eval()
    layers = check_layers(model, layers)
    clip = src.clip()
    frames, frame_step = clip.pop("frames"), clip.pop("stride")
    if clip_len is not None and int(clip_len) != frames:
        raise ExtractError(f"--clip-len {clip_len}: the network takes clips of {frames} frames")
    step = frames * frame_step if step is None else integer(step, "--stride", minimum=1)
    if dinfo.device.type == "cuda":
        clip.update(dtype="uint8")  # normalised on the GPU: 4x fewer bytes over the bus
    header = {
        "source": str(Path(src.path).resolve()),
        "source_sha256": src.sha256(),
        "model": src.meta["name"],
        "layers": layers,
        "clip_len": frames,
        "frame_stride": frame_step,
        "step": step,
        "short": short,
        "stream": stream,
        "format": fmt,
        "dtype": dtype,
        "preprocess": src.preset.to_dict(),
        "world_size": dinfo.world_size,
    }
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExtractError(f"--out {out}: is a file, not a folder")
    paths = [os.fspath(p) for p in videos]
    rels = relative_names(paths, root)
    output = Output(out, header, fmt, layers, dinfo.rank, dinfo.world_size)
    done = output.open(overwrite)
    distributed.barrier()
    output.start()
    mine = [Video(p, r) for i, (p, r) in enumerate(zip(paths, rels, strict=True))
            if i % dinfo.world_size == dinfo.rank and r not in done]
    if done and dinfo.is_main:
        notice(f"--out {out}: {len(done)} of {len(paths)} videos were extracted earlier with these settings; "
               "finishing the rest")
    stats = _run(model, mine, output, clip, frames, frame_step, step, short, stream, batch_size, dinfo.device,
                 amp, threads, on_error, dtype, progress and dinfo.is_main)
    distributed.barrier()
    counts = output.finish(rels) if dinfo.is_main else {}
    distributed.barrier()
    return {"videos": len(paths), "skipped_done": len(done), **counts, **stats, "out": str(out)}


def _run(model, videos, output, read_kw, frames, frame_step, step, short, stream, batch_size, device, amp,
         threads, on_error, dtype, progress) -> dict[str, Any]:
    from .._native import VideoDecodeError

    read_kw = dict(read_kw, threads=threads, stream=stream)
    out_dtype = np.float16 if dtype == "float16" else np.float32
    results: dict[int, dict[str, list[np.ndarray]]] = {}
    failed: set[int] = set()
    computed: dict[int, int] = {}
    t0, clips_done = time.perf_counter(), 0
    bar = progress_bar(iter(()), total=len(videos), desc="extract", enabled=progress, unit="video")
    # Decoded clips wait here until a whole batch is ready: the reader groups whole videos, the network
    # takes full batches (every one but the last), whatever the videos' lengths.
    buf_x: list[np.ndarray] = []
    buf_owner: list[Video] = []

    def planner(v: Video) -> None:
        plan(v, frames, frame_step, step, short, stream)
        computed[id(v)] = 0

    def tick() -> None:
        if progress:
            bar.update()
            dt = time.perf_counter() - t0
            bar.set_postfix_str(f"{clips_done} clips, {clips_done / max(dt, 1e-9):.1f} clips/s")

    def fail(v: Video, why: str) -> None:
        failed.add(id(v))
        results.pop(id(v), None)
        warn(f"{why}; recorded as failed (--on-error skip)", every_rank=True)
        output.fail(v, why)
        tick()

    def run_batches(flush: bool) -> None:
        nonlocal buf_x, buf_owner, clips_done
        while len(buf_owner) >= batch_size or (flush and buf_owner):
            x = np.concatenate(buf_x) if len(buf_x) > 1 else buf_x[0]
            n = min(batch_size, len(buf_owner))
            take, owners = x[:n], buf_owner[:n]
            buf_x, buf_owner = ([x[n:]] if n < len(x) else []), buf_owner[n:]
            feats = _forward(model, take, device, amp, output.layers, read_kw)
            for j, v in enumerate(owners):
                if id(v) in failed:
                    continue
                slot = results.setdefault(id(v), {k: [] for k in output.layers})
                for k in output.layers:
                    slot[k].append(feats[k][j])
                computed[id(v)] += 1
                if computed[id(v)] == len(v.clips):
                    slot = results.pop(id(v))
                    output.write(v, {k: np.stack(rows).astype(out_dtype) for k, rows in slot.items()})
                    clips_done += len(v.clips)
                    tick()

    try:
        for kind, item in _reader(_chunks(videos, batch_size, 4 * batch_size, planner), read_kw, prefetch=2):
            if kind == "failed":
                v, why, exc = item
                if on_error == "raise":
                    raise exc if str(v.path) in str(exc) else type(exc)(why)
                fail(v, why)
                continue
            group, arr, report = item
            owners = [v for v, a, b in group for _ in range(a, b)]
            for pos, path, msg in report["failed"]:
                v = owners[pos]
                if on_error == "raise":
                    raise VideoDecodeError(msg if str(path) in msg else f"{path}: {msg}")
                if id(v) not in failed:
                    fail(v, msg if str(path) in msg else f"{path}: {msg}")
            keep = [j for j, pos in enumerate(report["ok"]) if id(owners[pos]) not in failed]
            if keep:
                buf_x.append(arr if len(keep) == len(arr) else arr[keep])
                buf_owner += [owners[report["ok"][j]] for j in keep]
            run_batches(flush=False)
        run_batches(flush=True)
    finally:
        if progress:
            bar.close()
    dt = time.perf_counter() - t0
    return {"clips": clips_done, "seconds": dt, "clips_per_s": clips_done / dt if dt > 0 else 0.0}


def _forward(model, batch: np.ndarray, device: torch.device, amp: bool, layers, read_kw) -> dict[str, np.ndarray]:
    """Layer outputs of one batch of clips, as float32 numpy arrays (uint8 clips, on CUDA, normalised on
    the card by the training loop's ``prepare_batch``)."""
    from ..train.engine import prepare_batch

    with torch.inference_mode():
        x = prepare_batch(torch.from_numpy(batch), device, mean=read_kw["mean"], std=read_kw["std"])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            res = layer_outputs(model, x, layers)
        return {k: v.float().cpu().numpy() for k, v in res.items()}
