"""Helpers for benches/bench_loader.py: the workloads, the loaders people use today (decord, PyAV,
torchcodec) doing the same job as ``read_clips``, and the FFmpeg limit.

The job, for every loader: a clip = 16 frames of one video by frame index (presentation order, as the
``ffmpeg`` command numbers them) → resize to 128×171 → centre crop 112 → float32 ``(x/255 - mean)/std``
→ ``(3, T, 112, 112)`` (C, T, H, W), batches stacked to ``(B, 3, T, 112, 112)``. Each baseline uses its
library's fastest route that still returns exact frames: decoder-side resize, one batched call per video
visit with the visit's frames sorted and de-duplicated, one decoder thread (the parallelism is the
DataLoader's worker processes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"

SIZE = (128, 171)  # (h, w) resize, the C3D preset
CROP = 112
# Kinetics/torchvision video mean and std (0-1 scale); any 3+3 floats would do, all loaders get the same
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)
# centre crop offsets where read_clips puts them (an odd margin rounds the offset up, as torchvision's
# CenterCrop and torchcodec's do): rows 8..119, columns 30..141 of 128×171
TOP = (SIZE[0] - CROP + 1) // 2
LEFT = (SIZE[1] - CROP + 1) // 2

WORKLOADS = {
    # UCF101-like: MPEG-4 part 2 in AVI, keyframe every 12 frames, no B-frames
    "ucf": dict(ext="avi", args=["-c:v", "mpeg4", "-g", "12", "-bf", "0", "-b:v", "600k", "-sc_threshold", "0"]),
    # the same pictures as H.264 (x264 defaults: B-frames, CABAC) with one keyframe per 250 frames
    "gop250": dict(ext="mp4", args=["-c:v", "libx264", "-g", "250", "-keyint_min", "250", "-sc_threshold", "0",
                                    "-pix_fmt", "yuv420p", "-preset", "medium", "-crf", "23"]),
}

# FFmpeg test sources with motion; noise over time adds the residual a camera has
_SOURCES = [
    "testsrc2=size=320x240:rate=25",
    "mandelbrot=size=320x240:rate=25:end_scale=0.02",
    "life=size=320x240:rate=25:mold=10:ratio=0.3:death_color=#204060:life_color=#e0a030",
    "cellauto=size=320x240:rate=25:rule=110",
    "smptebars=size=320x240:rate=25,rotate=a=0.6*t:fillcolor=gray",
]


def make_workload(name: str, folder: Path, *, videos: int = 40, seed: int = 0) -> list[Path]:
    """Encode ``videos`` videos of 5–7 s at 25 fps, 320×240, for workload ``name``, into ``folder/name``.
    Video i depends only on (seed, i), so the files are kept and reused by later runs (a smaller run
    takes the first ones). Video i of every workload shows the same pictures."""
    spec = WORKLOADS[name]
    folder = Path(folder) / name
    stamp = folder / "stamp.json"
    want = {"seed": seed, "args": spec["args"], "sources": _SOURCES}
    if not (stamp.exists() and json.loads(stamp.read_text()) == want):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        stamp.write_text(json.dumps(want))
    paths = []
    for i in range(videos):
        path = folder / f"v{i:03d}.{spec['ext']}"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng([seed, i])
        frames = int(rng.integers(125, 176))  # 5-7 s
        noise = int(rng.integers(4, 12))
        tmp = path.with_suffix(".part" + path.suffix)  # an interrupted run leaves no half file behind
        subprocess.run(
            [FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", _SOURCES[i % len(_SOURCES)], "-vf",
             f"format=yuv420p,noise=alls={noise}:allf=t", "-frames:v", str(frames), *spec["args"],
             "-threads", "1", str(tmp)],
            check=True,
        )
        tmp.rename(path)
    return paths


# ---------------------------------------------------------------------------------------------------
# The FFmpeg limit: what decoding the frames a clip forces costs the `ffmpeg` command on one core.


@dataclass
class PacketCosts:
    """One video as the ``ffmpeg`` command decodes it with one thread: for each packet in decode order,
    the frame index it presents (``frame``) and its decode time in µs (``cost_us``); ``keyframes``
    (frame indices)."""

    path: str
    frame: np.ndarray  # (P,) int, decode order -> presentation index
    cost_us: np.ndarray  # (P,) float, wall-clock ("real")
    keyframes: np.ndarray  # sorted frame indices
    cpu_us: np.ndarray  # (P,) float, CPU time (user + sys): unaffected by other processes on the machine

    @property
    def num_frames(self) -> int:
        return len(self.frame)

    def forced_us(self, frames, *, cpu: bool = False) -> float:
        """µs (wall, or CPU with ``cpu``) to decode what a forward pass needs for ``frames``: every packet
        in decode order from the keyframe at or before the first frame up to the last packet that
        presents one of them."""
        frames = np.asarray(frames)
        first = int(frames.min())
        kf = int(self.keyframes[np.searchsorted(self.keyframes, first, side="right") - 1])
        pos = np.empty(self.num_frames, np.int64)
        pos[self.frame] = np.arange(self.num_frames)
        cost = self.cpu_us if cpu else self.cost_us
        return float(cost[pos[kf] : pos[frames].max() + 1].sum())


_DEMUX = re.compile(r"demuxer -> ist_index:0 type:video .*? pkt_pts_time:(\S+)")
_DECODE = re.compile(r"bench:\s+(\d+) user\s+(\d+) sys\s+(\d+) real decode_video")
_DECODED = re.compile(r"decoder -> ist_index:0 type:video frame_pts:\S+ frame_pts_time:(\S+) .*? keyframe:(\d)")


def ffmpeg_packet_costs(path: str | os.PathLike) -> PacketCosts:
    """Decode ``path`` once with ``ffmpeg -threads 1 -debug_ts -benchmark_all -f null`` and attribute
    each ``decode_video`` timing (real µs) to the packet that was sent just before it."""
    err = subprocess.run(
        [FFMPEG, "-nostdin", "-hide_banner", "-threads", "1", "-debug_ts", "-benchmark_all", "-i", str(path),
         "-map", "0:v:0", "-f", "null", "-"],
        check=True, capture_output=True, text=True,
    ).stderr
    pts, cost, cpu, key_times = [], [], [], []
    for line in err.replace("\r", "\n").splitlines():
        # the progress line can prefix a demuxer line, so search instead of match
        if m := _DEMUX.search(line):
            pts.append(float(m.group(1)))
            cost.append(0.0)
            cpu.append(0.0)
        elif (m := _DECODE.search(line)) and cost:
            cost[-1] += float(m.group(3))
            cpu[-1] += float(m.group(1)) + float(m.group(2))
        elif (m := _DECODED.search(line)) and m.group(2) == "1":
            key_times.append(float(m.group(1)))
    times = np.array(pts)
    order = np.argsort(times, kind="stable")
    frame = np.empty(len(times), np.int64)
    frame[order] = np.arange(len(times))  # presentation index = rank of the packet's pts
    sorted_times = times[order]
    keyframes = np.unique(np.searchsorted(sorted_times, np.array(key_times) - 1e-6))
    if len(keyframes) == 0 or keyframes[0] != 0:
        raise RuntimeError(f"{path}: no keyframe at frame 0 in ffmpeg's output")
    return PacketCosts(str(path), frame, np.array(cost), keyframes, np.array(cpu))


# ---------------------------------------------------------------------------------------------------
# The baselines. Each reads one video visit: several clips (lists of frame indices) of one file, and
# returns uint8 frames (K, T, 128, 171, 3) or already cropped (K, T, 112, 112, 3).


def _unique(clips) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct frames of a visit and, for each clip frame, its position among them."""
    flat = np.asarray(clips, np.int64)
    uniq, inverse = np.unique(flat, return_inverse=True)
    return uniq, inverse.reshape(flat.shape)


def read_decord(path: str, clips) -> np.ndarray:
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), width=SIZE[1], height=SIZE[0], num_threads=1)
    uniq, inverse = _unique(clips)
    frames = vr.get_batch(uniq.tolist()).asnumpy()  # (U, 128, 171, 3)
    return frames[inverse]


def read_decord_per_clip(path: str, clips) -> np.ndarray:
    """decord as most training code calls it: one reader per video visit, one ``get_batch`` per clip
    in the order the clips were drawn (each call seeks on its own)."""
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), width=SIZE[1], height=SIZE[0], num_threads=1)
    return np.stack([vr.get_batch([int(f) for f in c]).asnumpy() for c in clips])


def read_pyav(path: str, clips) -> np.ndarray:
    import av

    uniq, inverse = _unique(clips)
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        tb, fps = float(stream.time_base), float(stream.average_rate)
        start = stream.start_time or 0
        first, last = int(uniq[0]), int(uniq[-1])
        out = np.empty((len(uniq), SIZE[0], SIZE[1], 3), np.uint8)
        want = {int(f): i for i, f in enumerate(uniq)}
        got = 0
        for attempt in range(2):  # seek to the keyframe at or before `first`; from 0 if that overshot
            container.seek(start + int(round(first / fps / tb)) if attempt == 0 else start,
                           stream=stream, backward=True, any_frame=False)
            got = 0
            for frame in container.decode(stream):
                idx = int(round((frame.pts - start) * tb * fps))
                if got == 0 and idx > first:
                    break  # the seek went past the clip's first frame
                if idx in want:
                    out[want[idx]] = frame.to_ndarray(format="rgb24", width=SIZE[1], height=SIZE[0])
                    got += 1
                if idx >= last:
                    break
            if got == len(uniq):
                break
        if got != len(uniq):
            raise RuntimeError(f"PyAV: {path}: decoded {got} of {len(uniq)} frames")
    return out[inverse]


def read_torchcodec(path: str, clips) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder
    from torchcodec.transforms import CenterCrop, Resize

    # approximate seek mode trusts the header's frame rate: exact for these constant-rate files, and
    # it skips the full scan "exact" makes when it opens a file. Resize and crop run in the decoder.
    dec = VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="approximate",
                       transforms=[Resize(SIZE), CenterCrop((CROP, CROP))])
    uniq, inverse = _unique(clips)
    frames = dec.get_frames_at(uniq.tolist()).data.numpy()  # (U, 112, 112, 3)
    return frames[inverse]


READERS = {"decord": read_decord, "pyav": read_pyav, "torchcodec": read_torchcodec,
           "decord 1 call/clip": read_decord_per_clip}

_SCALE = torch.tensor([1 / (255 * s) for s in STD]).view(3, 1, 1, 1)
_SHIFT = torch.tensor([m / s for m, s in zip(MEAN, STD, strict=True)]).view(3, 1, 1, 1)


def finish(frames: np.ndarray) -> torch.Tensor:
    """uint8 (K, T, h, w, 3), h×w = 128×171 or already 112×112 → float32 (K, 3, T, 112, 112),
    centre-cropped and normalised in one strided copy and one fused pass."""
    x = torch.from_numpy(frames)
    if x.shape[2:4] != (CROP, CROP):
        x = x[:, :, TOP : TOP + CROP, LEFT : LEFT + CROP]
    out = torch.empty((x.shape[0], 3, x.shape[1], CROP, CROP), dtype=torch.float32)
    out.copy_(x.permute(0, 4, 1, 2, 3))
    return out.mul_(_SCALE).sub_(_SHIFT)


class VisitDataset(torch.utils.data.Dataset):
    """Item i = video visit i: ``(path, clips)`` → float32 (K, 3, T, 112, 112) via ``reader``."""

    def __init__(self, visits, reader: str):
        self.visits = visits
        self.reader = reader

    def __len__(self):
        return len(self.visits)

    def __getitem__(self, i):
        path, clips = self.visits[i]
        return finish(READERS[self.reader](path, clips))


def cat_visits(batch):
    """Collate K-clip visits into one (B, 3, T, 112, 112) batch (B = visits × K)."""
    return torch.cat(batch, 0)
