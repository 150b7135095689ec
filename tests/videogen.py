"""Test videos made on the spot with the ``ffmpeg`` command, and the ``ffmpeg`` command as the oracle
for what frame i looks like. Nothing here is committed as a binary."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"


def encode(
    path: str | os.PathLike,
    *,
    codec: str = "libx264",
    size: tuple[int, int] = (320, 240),
    frames: int = 60,
    fps: float = 25,
    gop: int | None = 12,
    bframes: int | None = None,
    pix_fmt: str = "yuv420p",
    source: str = "testsrc2",
    extra: list[str] | None = None,
) -> Path:
    """Encode ``frames`` frames of an FFmpeg test pattern (size is (width, height))."""
    path = Path(path)
    w, h = size
    cmd = [FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", f"{source}=size={w}x{h}:rate={fps}",
           "-frames:v", str(frames), "-c:v", codec, "-pix_fmt", pix_fmt]
    if gop is not None:
        cmd += ["-g", str(gop)]
    if bframes is not None:
        cmd += ["-bf", str(bframes)]
    cmd += list(extra or [])
    cmd.append(str(path))
    subprocess.run(cmd, check=True)
    return path


def ffprobe_count(path: str | os.PathLike, stream: int = 0) -> dict:
    """What ``ffprobe -count_frames`` says about video stream ``stream`` (the first by default)."""
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", f"v:{stream}", "-count_frames", "-show_entries",
         "stream=width,height,nb_read_frames,codec_name,avg_frame_rate", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)["streams"][0]


def ffmpeg_frames(path: str | os.PathLike, size: tuple[int, int] | None = None, stream: int | None = None
                  ) -> np.ndarray:
    """All frames as ``ffmpeg -i f -fps_mode passthrough -f rawvideo -pix_fmt rgb24 -`` numbers them:
    (N, H, W, 3) uint8. Passthrough: every decoded frame once, none duplicated or dropped to make a
    constant rate (which would renumber variable-frame-rate video). ``size`` = (height, width) scales
    with FFmpeg's default (bicubic) scaler. ``stream`` maps video stream ``stream`` (``-map 0:v:N``);
    ``None`` is FFmpeg's own choice (the first video stream of the files made here)."""
    info = ffprobe_count(path, stream or 0)
    w, h = int(info["width"]), int(info["height"])
    cmd = [FFMPEG, "-v", "error", "-i", str(path)]
    if stream is not None:
        cmd += ["-map", f"0:v:{stream}"]
    if size is not None:
        h, w = size
        cmd += ["-vf", f"scale={w}:{h}"]
    cmd += ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def ffprobe_times(path: str | os.PathLike, stream: int = 0) -> tuple[list[float | None], list[float | None], float]:
    """Per frame of video stream ``stream``, in display order: ffprobe's ``pts_time`` and
    ``best_effort_timestamp_time`` (``None`` where it prints N/A), and the stream's ``start_time``
    (0 where unknown)."""
    def run(entries: str) -> str:
        return subprocess.run([FFPROBE, "-v", "error", "-select_streams", f"v:{stream}", "-show_entries", entries,
                               "-of", "json", str(path)], check=True, capture_output=True, text=True).stdout

    def seconds(v):
        return None if v in (None, "N/A") else float(v)

    frames = json.loads(run("frame=pts_time,best_effort_timestamp_time"))["frames"]
    start = seconds(json.loads(run("stream=start_time"))["streams"][0].get("start_time"))
    return ([seconds(f.get("pts_time")) for f in frames],
            [seconds(f.get("best_effort_timestamp_time")) for f in frames], start or 0.0)


def ffmpeg_frame_at(path: str | os.PathLike, seconds: float, stream: int | None = None) -> np.ndarray:
    """The one frame ``ffmpeg -i f -ss T -frames:v 1`` gives, as (H, W, 3) uint8 RGB: the first frame
    whose time (from the start of the file) is at or after ``T``, found by decoding (``-ss`` after
    ``-i`` is exact)."""
    info = ffprobe_count(path, stream or 0)
    w, h = int(info["width"]), int(info["height"])
    cmd = [FFMPEG, "-v", "error", "-i", str(path), "-ss", f"{seconds:.9f}"]
    if stream is not None:
        cmd += ["-map", f"0:v:{stream}"]
    cmd += ["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3)


def two_streams(path: str | os.PathLike, frames: int = 20) -> Path:
    """An MP4 with two H.264 video streams: 0 is 160x120 colour bars, 1 is a 320x240 test pattern with
    one frame fewer (so that their frame counts tell them apart too)."""
    path = Path(path)
    subprocess.run([FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", "smptebars=size=160x120:rate=25", "-f", "lavfi",
                    "-i", "testsrc2=size=320x240:rate=25", "-map", "0:v", "-map", "1:v", "-frames:v:0", str(frames),
                    "-frames:v:1", str(frames - 1), "-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p", str(path)],
                   check=True)
    return path


def broken_files(folder: str | os.PathLike, good_mp4: Path) -> dict[str, Path]:
    """Files that must raise VideoDecodeError, by name: empty, random bytes, text, no video stream,
    an MP4 whose header (the start of the file) is gone."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    out["empty"] = folder / "empty.mp4"
    out["empty"].write_bytes(b"")
    out["random"] = folder / "random.avi"
    out["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    out["text"] = folder / "notes.txt"
    out["text"].write_text("this is not a video\n" * 200)
    out["text_as_mp4"] = folder / "notes.mp4"
    out["text_as_mp4"].write_text("this is not a video either\n" * 200)
    out["audio_only"] = folder / "audio.m4a"
    subprocess.run([FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-c:a", "aac", str(out["audio_only"])], check=True)
    data = good_mp4.read_bytes()
    out["headless"] = folder / "headless.mp4"
    out["headless"].write_bytes(data[len(data) // 2:])
    return out


def forge_mp4_sync_samples(path: str | os.PathLike, frames: list[int]) -> Path:
    """Overwrite the MP4's sync-sample table (``stss``, the container's keyframe flags) with
    ``frames`` (0-based sample numbers, as many as the table holds), as a broken muxer might: the
    container then claims P-frames as seek points. The video must be the file's only track."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    pos = data.find(b"stss")
    if pos < 4 or data.find(b"stss", pos + 1) >= 0:
        raise ValueError(f"{path}: needs exactly one stss box")
    (count,) = struct.unpack_from(">I", data, pos + 8)
    if count != len(frames):
        raise ValueError(f"{path}: stss holds {count} entries, got {len(frames)} frames")
    for k, f in enumerate(sorted(frames)):
        struct.pack_into(">I", data, pos + 12 + 4 * k, f + 1)
    path.write_bytes(bytes(data))
    return path


def relabel_hevc_nal_types(path: str | os.PathLike, old: int, new: int) -> tuple[Path, int]:
    """Rewrite the NAL unit type ``old`` as ``new`` in every NAL unit of a single-track HEVC MP4
    (length-prefixed NAL units in one ``mdat``); returns the path and how many were rewritten. Only
    the type bits of the NAL header change, so lengths and offsets stay valid."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    pos = data.find(b"mdat")
    if pos < 4:
        raise ValueError(f"{path}: no mdat box")
    (size,) = struct.unpack_from(">I", data, pos - 4)
    end, p, n = pos - 4 + size, pos + 4, 0
    while p + 4 < end:
        (length,) = struct.unpack_from(">I", data, p)
        header = data[p + 4]
        if (header >> 1) & 0x3F == old:
            data[p + 4] = (header & 0x81) | (new << 1)
            n += 1
        p += 4 + length
    if p != end:
        raise ValueError(f"{path}: mdat is not a plain run of length-prefixed NAL units")
    path.write_bytes(bytes(data))
    return path, n


def slow_to_index(folder: str | os.PathLike) -> Path:
    """A 10,000-frame 640×480 MPEG-4 AVI with B-frames: indexed by decoding every frame (its packets
    cannot number B-frames), which takes seconds on one thread. Made in about a second by looping a
    250-frame encode without re-encoding; kept in ``folder`` for later calls."""
    folder = Path(folder)
    path = folder / "slow_to_index.avi"
    if not path.exists():
        short = encode(folder / "slow_to_index_part.avi", codec="mpeg4", size=(640, 480), frames=250, gop=250,
                       bframes=2, extra=["-q:v", "8"])
        tmp = folder / "slow_to_index.part.avi"
        subprocess.run([FFMPEG, "-y", "-v", "error", "-stream_loop", "39", "-i", str(short), "-c", "copy", str(tmp)],
                       check=True)
        tmp.rename(path)
    return path
