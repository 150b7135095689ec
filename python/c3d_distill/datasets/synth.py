"""The synthetic action set: classes are motions over time, appearance is random and shared by all classes.

Why it exists: the demo and the tests need a data set that is small, made on the spot, and that a clip model
can solve while a frame model cannot. Every class draws its look from the same distributions (shape,
colours, texture, scene, noise, distractors, size, start position, speed), and the motions come in
time-reversed pairs (left/right, up/down, clockwise/anticlockwise, grow/shrink, orbit cw/ccw) whose frames,
taken one at a time, have the same distribution. Only the order of the frames tells the class.

The layout is UCF101's, so the UCF101 loader reads it::

    OUT/<Class>/v_<Class>_gXX_cYY.avi          MPEG-4 part 2 in AVI, 320x240, 25 fps, 2-4 s (defaults)
    OUT/ucfTrainTestlist/classInd.txt          "1 MoveLeft"
    OUT/ucfTrainTestlist/trainlist0N.txt       "MoveLeft/v_MoveLeft_g04_c01.avi 1"   (labels from 1)
    OUT/ucfTrainTestlist/testlist0N.txt        "MoveLeft/v_MoveLeft_g01_c01.avi"
    OUT/synth.json                             the parameters and the file list (written last)

A group (``gXX``) shares its scene (background) like a UCF101 group shares a place; the scene of group k
is the same in every class, so it says nothing about the class, and a split puts whole groups in test,
so the test scenes are new to the model.

Encoder: PyAV, not a pipe to the ``ffmpeg`` command. PyAV's wheel carries its own FFmpeg build (with
libx264), so ``pip install`` is all a machine needs, and the FFmpeg that writes the bytes is pinned by the
``av`` version instead of whatever ``ffmpeg`` is on the PATH. Frames go to the encoder in memory, and errors
come back as exceptions instead of a return code and stderr to parse.

Determinism (same seed → same bytes with the same ``av`` release, i.e. the same FFmpeg build): every video
draws from its own ``numpy`` generator seeded by ``(seed, class, group, clip)``, so the result does not
depend on the number of workers or the order they finish in; the encoder runs single-threaded with
FFmpeg's ``bitexact`` flags (no version strings in the file, no thread-dependent decisions); RGB → YUV
4:2:0 is done here in exact integer arithmetic rather than by swscale, whose SIMD paths differ between
CPUs. Object positions snap to whole pixels, so a sprite that only moves is rasterised once per video.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .scenes import CLASSES, MIN_WIDTH_PER_HEIGHT, VideoJob, render

# Bump when rendering or encoding changes, so cached sets made by an older generator are redone.
# 4: ranges clamped so that no draw can fail (version 3 stopped with "high - low < 0" on some Orbit videos
# at any size, and on every class at narrow sizes). Only draws that used to fail changed, so a video that
# version 3 finished is byte-identical in version 4: a version-3 folder is kept (see COMPATIBLE_VERSIONS),
# as it is when complete, resumed when not (its manifest then says 4). Older versions are refused.
GENERATOR_VERSION = 4
# Versions whose finished videos this generator would write byte for byte the same (same parameters).
COMPATIBLE_VERSIONS = (3, 4)
MANIFEST = "synth.json"
LISTS_DIR = "ucfTrainTestlist"

CODECS = {
    # codec name → (FFmpeg encoder, container format, file extension)
    "mpeg4": ("mpeg4", "avi", ".avi"),
    "h264": ("libx264", "mp4", ".mp4"),
}
MPEG4_Q = 4
MAX_SIDE = 4096  # FFmpeg's MPEG-4 part 2 encoder refuses 8192; 4096² is already 48 MiB of RGB per frame
# The longest video: 10 minutes. UCF101's clips last 1.06 to 71 s, so this is far beyond any use of the set,
# and it keeps one video (a worker's per-frame arrays, the encoder's run) bounded: 1e9 s asked for 72 GiB.
MAX_DURATION_S = 600.0
# MPEG-4 part 2's time base stops at 65535 (70000 fps failed in the encoder); 1000 fps for 600 s is 600 000
# frames, whose per-frame arrays are a few MB.
MAX_FPS = 1000


class VideoWriteError(OSError):
    """A video of the set could not be made; the message names the file and the cause (the original
    exception is chained). An OSError so that the command line reports it in one line (exit 2)."""


def encode_video(job: VideoJob) -> tuple[str, int]:
    """Render and encode one video to ``job.path`` (via a temporary name, renamed when complete, so a file
    at the final name is always whole). Returns (path, number of frames). Any failure is raised as
    :class:`VideoWriteError` naming the video, and leaves no temporary file behind."""
    path = Path(job.path)
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    try:
        return _encode(job, path, tmp)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise VideoWriteError(f"{path}: could not be made ({type(exc).__name__}: {exc})") from exc


def _encode(job: VideoJob, path: Path, tmp: Path) -> tuple[str, int]:
    import av

    encoder, fmt, _ = CODECS[job.codec]
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with av.open(str(tmp), "w", format=fmt, container_options={"fflags": "+bitexact"}) as container:
        if job.codec == "mpeg4":
            # A fixed quantiser (qmin = qmax; the bit rate is only a ceiling): about UCF101's quality and bit
            # rate. 12-frame GOPs, no B-frames.
            # A keyframe every 12 frames exactly (no scene-cut keyframes), so seeking costs are predictable.
            opts = {"flags": "+bitexact", "qmin": str(MPEG4_Q), "qmax": str(MPEG4_Q), "b": "20M",
                    "threads": "1", "g": "12", "sc_threshold": "1000000000"}
        else:
            opts = {"flags": "+bitexact", "crf": "23", "preset": "veryfast", "threads": "1", "g": "25",
                    "x264-params": "log=-1:scenecut=0"}
        stream = container.add_stream(encoder, rate=job.fps, options=opts)
        stream.width, stream.height, stream.pix_fmt = job.width, job.height, "yuv420p"
        stream.codec_context.thread_count = 1
        if job.codec == "mpeg4":
            stream.codec_context.codec_tag = "XVID"  # what UCF101's files say
        for yuv in render(job):
            vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            vf.pts = n
            n += 1
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    os.replace(tmp, path)
    return str(path), n


# --------------------------------------------------------------------------------------------- the set


def _plan(out: Path, classes: list[str], videos_per_class: int, clips_per_group: int, seed: int,
          width: int, height: int, fps: int, duration: tuple[float, float], codec: str) -> list[VideoJob]:
    ext = CODECS[codec][2]
    jobs = []
    for name in classes:
        cid = CLASSES.index(name)
        for k in range(videos_per_class):
            g, c = k // clips_per_group + 1, k % clips_per_group + 1
            rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}{ext}"
            jobs.append(VideoJob(str(out / rel), name, cid, g, c, seed, width, height, fps, duration, codec))
    return jobs


def split_groups(num_groups: int) -> list[set[int]]:
    """Test groups of each split, UCF101's way (25 groups: split k tests groups 7k-6 … 7k, the rest train):
    blocks of about 28 % of the groups, as many splits (at most 3) as leave at least one train group."""
    n_test = max(1, round(num_groups * 7 / 25))
    return [set(range(k * n_test + 1, (k + 1) * n_test + 1)) for k in range(3)
            if (k + 1) * n_test <= num_groups - 1]


def _check_args(classes, videos_per_class, clips_per_group, width, height, fps, duration, codec,
                seed: int = 0) -> None:
    problems = []
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        problems.append(f"seed={seed!r}: must be a non-negative integer")
    if not 2 <= classes <= len(CLASSES):
        problems.append(f"classes={classes}: must be 2 to {len(CLASSES)} (the catalogue: {', '.join(CLASSES)})")
    if clips_per_group < 1:
        problems.append(f"clips_per_group={clips_per_group}: must be ≥ 1")
    elif videos_per_class < 2 * clips_per_group:
        problems.append(f"videos_per_class={videos_per_class}: needs at least 2 groups of clips_per_group="
                        f"{clips_per_group} so that train and test hold different groups")
    if width < 32 or height < 32 or width % 2 or height % 4:
        problems.append(f"size {width}x{height} (--size): need width even, height a multiple of 4 (YUV 4:2:0 "
                        "planes), both at least 32")
    elif width > MAX_SIDE or height > MAX_SIDE:
        problems.append(f"size {width}x{height} (--size): width and height must be at most {MAX_SIDE}")
    elif width < MIN_WIDTH_PER_HEIGHT * height:
        need = 2 * math.ceil(MIN_WIDTH_PER_HEIGHT * height / 2)
        problems.append(f"size {width}x{height} (--size): too narrow for the motions (Grow, Orbit …): the width "
                        f"must be at least {MIN_WIDTH_PER_HEIGHT:.3f} × the height, i.e. {need} for a height of "
                        f"{height}")
    if not 0 < fps <= MAX_FPS:
        problems.append(f"fps={fps} (--fps): must be positive and at most {MAX_FPS}")
    lo, hi = duration
    if not 0 < lo <= hi:
        problems.append(f"duration={duration} (--duration): need 0 < min ≤ max seconds")
    elif not hi <= MAX_DURATION_S:  # also inf
        problems.append(f"duration={duration} (--duration): must be finite and at most {MAX_DURATION_S:g} s "
                        "per video")
    elif 0 < fps and lo * fps < 2:
        problems.append(f"duration={duration} at fps={fps}: videos need at least 2 frames")
    if codec not in CODECS:
        problems.append(f"codec={codec!r}: must be one of {', '.join(CODECS)}")
    if problems:
        raise ValueError("make_synthetic: " + "; ".join(problems))


def make_synthetic(
    out: str | os.PathLike,
    *,
    classes: int = 10,
    videos_per_class: int = 40,
    seed: int = 0,
    codec: str = "mpeg4",
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    duration: tuple[float, float] = (2.0, 4.0),
    clips_per_group: int = 4,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Write the synthetic action set to ``out`` in UCF101's layout and return ``out`` as a Path.

    ``classes`` takes the first N of :data:`CLASSES`. Videos are ``width``×``height`` at ``fps``, each
    2–4 s (``duration`` in seconds, uniform), MPEG-4 in AVI (``codec="mpeg4"``) or H.264 in MP4
    (``"h264"``). ``clips_per_group`` clips share a group (a scene); the splits are group-wise.

    Cached: when ``out/synth.json`` records the same parameters and every file is present with its
    recorded size, nothing is redone. An interrupted run with the same parameters resumes. A folder holding
    a set made with other parameters is replaced only with ``force=True``; a non-empty folder that is not a
    synthetic set is never touched. ``workers``: processes (default: the CPUs this process may use; 1 runs
    in this process).

    Refused before anything is written (ValueError naming each problem): frames narrower than
    :data:`MIN_WIDTH_PER_HEIGHT` × the height or with a side over :data:`MAX_SIDE`, more than :data:`MAX_FPS`
    fps, a duration that is not finite or over :data:`MAX_DURATION_S`. A failure while making a video is
    raised as :class:`VideoWriteError` naming it; the set then stays unfinished (a rerun resumes).
    """
    _check_args(classes, videos_per_class, clips_per_group, width, height, fps, duration, codec, seed)
    out = Path(out)
    names = CLASSES[:classes]
    params = {
        "generator_version": GENERATOR_VERSION,
        "classes": names,
        "videos_per_class": videos_per_class,
        "clips_per_group": clips_per_group,
        "seed": seed,
        "codec": codec,
        "width": width,
        "height": height,
        "fps": fps,
        "duration": [float(d) for d in duration],
    }
    manifest_path = out / MANIFEST
    old = _read_manifest(manifest_path) if manifest_path.exists() else None
    if old is not None and not isinstance(old, dict):  # unreadable: not JSON, or not the manifest's shape
        if not force:
            raise FileExistsError(
                f"{manifest_path}: not a readable synthetic-set manifest ({old}); pass force=True (--force) to "
                "replace the set, or choose another folder")
        _remove_set(out)
    elif old is not None:
        if _same_params(old.get("params"), params):
            if old.get("complete") and _files_intact(out, old.get("files", {})):
                return out
            _remove_damaged(out, old.get("files", {}))
        elif force:
            _remove_set(out)
        else:
            diff = sorted(k for k in set(params) | set(old.get("params", {}))
                          if not _same_params({k: old.get("params", {}).get(k)}, {k: params.get(k)}))
            raise FileExistsError(
                f"{out}: holds a synthetic set made with other parameters ({', '.join(diff)} differ); "
                "pass force=True (--force) to replace it, or choose another folder")
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: folder is not empty and holds no {MANIFEST}; refusing to write into it")

    out.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps({"params": params, "complete": False}, indent=1), encoding="utf-8")

    duration = (float(duration[0]), float(duration[1]))
    jobs = _plan(out, names, videos_per_class, clips_per_group, seed, width, height, fps, duration, codec)
    todo = [j for j in jobs if not Path(j.path).exists()]
    _run_jobs(todo, workers, progress)

    _write_lists(out, names, jobs, videos_per_class, clips_per_group)
    files = {str(Path(j.path).relative_to(out)): Path(j.path).stat().st_size for j in jobs}
    manifest = {"params": params, "complete": True, "files": files}
    manifest_path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out


def _same_params(old: object, new: dict) -> bool:
    """Whether a manifest's parameters describe the set ``new`` asks for: equal, except that any of
    :data:`COMPATIBLE_VERSIONS` stands for the current generator version."""
    if not isinstance(old, dict):
        return False
    key = "generator_version"
    if old.get(key) in COMPATIBLE_VERSIONS and new.get(key) in COMPATIBLE_VERSIONS:
        old = {**old, key: new[key]}
    return old == new


def _run_jobs(jobs: list[VideoJob], workers: int | None, progress: bool) -> None:
    from tqdm import tqdm

    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(workers, len(jobs)))
    bar = tqdm(total=len(jobs), desc="synthetic videos", unit="video", disable=not progress or not jobs)
    try:
        if workers == 1:
            for job in jobs:
                encode_video(job)
                bar.update()
            return
        with ProcessPoolExecutor(workers, mp_context=_mp_context()) as pool:
            try:
                for _ in pool.map(encode_video, jobs, chunksize=4):
                    bar.update()
            except BaseException:
                # Stop at the first failure: without this the pool would still make every queued video
                # (minutes) before the error is raised.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        bar.close()


def _mp_context():
    """fork on Linux: spawn and forkserver re-import the caller's ``__main__``, which breaks any script or
    notebook without an ``if __name__ == "__main__"`` guard. fork is safe here because the workers only run
    numpy and PyAV, never the parent's threads (torch's pools, tqdm's monitor). Elsewhere (macOS, Windows)
    fork is unsafe or absent: spawn."""
    import sys
    from multiprocessing import get_all_start_methods

    return get_context("fork" if sys.platform.startswith("linux") and "fork" in get_all_start_methods()
                       else "spawn")


def _write_lists(out: Path, names: list[str], jobs: list[VideoJob], vpc: int, cpg: int) -> None:
    lists = out / LISTS_DIR
    lists.mkdir(exist_ok=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)), encoding="utf-8")
    num_groups = -(-vpc // cpg)
    for k, test_groups in enumerate(split_groups(num_groups), start=1):
        train, test = [], []
        for j in jobs:
            rel = Path(j.path).relative_to(out).as_posix()
            if j.group in test_groups:
                test.append(f"{rel}\n")
            else:
                train.append(f"{rel} {names.index(j.class_name) + 1}\n")
        (lists / f"trainlist{k:02d}.txt").write_text("".join(train), encoding="utf-8")
        (lists / f"testlist{k:02d}.txt").write_text("".join(test), encoding="utf-8")


def _files_intact(out: Path, files: dict[str, int]) -> bool:
    if not files:
        return False
    for rel, size in files.items():
        try:
            if (out / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _remove_damaged(out: Path, files: dict[str, int]) -> None:
    """Delete the videos whose size is not the one recorded, so that they are made again."""
    for rel, size in files.items():
        p = out / rel
        try:
            if p.stat().st_size != size:
                p.unlink()
        except FileNotFoundError:
            pass


def _read_manifest(path: Path) -> dict | str:
    """The manifest as a dict, or why it cannot be used (a string)."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        return f"{type(exc).__name__}: {exc}"
    if not isinstance(old, dict) or not isinstance(old.get("params", {}), dict):
        return f"expected a JSON object with 'params', found {type(old).__name__}"
    return old


def _remove_set(out: Path) -> None:
    """Delete what make_synthetic wrote (class folders named in the old manifest, the lists, the manifest),
    nothing else. With an unreadable manifest the class folders are those of the catalogue (:data:`CLASSES`)
    that are present: no other name is ever removed."""
    old = _read_manifest(out / MANIFEST)
    names = old.get("params", {}).get("classes", []) if isinstance(old, dict) else CLASSES
    for name in names:
        if name in CLASSES and (out / name).is_dir():
            shutil.rmtree(out / name)
    if (out / LISTS_DIR).is_dir():
        shutil.rmtree(out / LISTS_DIR)
    (out / MANIFEST).unlink()
