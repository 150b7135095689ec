"""Robustness of the clip pipeline at its edges: clip arithmetic on 1-frame and short videos, huge strides,
indices and sizes out of range (a defined result or a ValueError naming the argument, never a crash),
read_clips from many Python threads and from DataLoader workers (fork and spawn) giving the same data as
a single-threaded read, and a data set with 5% corrupt files read through ClipLoader with on_error="skip".

What each limit does is described in docs/robustness.md.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import videogen
from c3d_distill.clips import (
    ClipLoader,
    VideoDecodeError,
    VideoReader,
    center_clip,
    dense_clips,
    probe,
    random_clip,
    read_clips,
    uniform_clips,
)
from c3d_distill.clips.samplers import clip_span

RAW = dict(size=None, crop=None, layout="NTHWC")  # frames as decoded, for comparisons with ffmpeg


def close_to(got: np.ndarray, want: np.ndarray) -> bool:
    """Frames agree with ffmpeg's decode (the tests of the reader allow a mean difference of 1 level)."""
    return got.shape == want.shape and float(np.abs(got.astype(np.int16) - want).mean()) <= 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """64×48 videos: 1 frame (MP4/H.264 and AVI/MPEG-4), 5 frames, 30 frames of each codec."""
    d = tmp_path_factory.mktemp("robust")
    return {
        "one_mp4": videogen.encode(d / "one.mp4", codec="libx264", frames=1, size=(64, 48)),
        "one_avi": videogen.encode(d / "one.avi", codec="mpeg4", frames=1, size=(64, 48)),
        "five": videogen.encode(d / "five.avi", codec="mpeg4", frames=5, gop=4, size=(64, 48)),
        "avi": videogen.encode(d / "thirty.avi", codec="mpeg4", frames=30, gop=8, size=(64, 48)),
        "mp4": videogen.encode(d / "thirty.mp4", codec="libx264", frames=30, gop=8, bframes=2, size=(64, 48)),
    }


# ---------------------------------------------------------------------------------------------------
# Clip arithmetic at the edges


@pytest.mark.parametrize("kind", ["one_mp4", "one_avi"])
def test_one_frame_video_gives_clips_of_its_only_frame(tiny, kind):
    path = tiny[kind]
    info = probe(path)
    assert info["num_frames"] == 1 and info["keyframes"] == [0]
    frame0 = videogen.ffmpeg_frames(path)
    assert frame0.shape == (1, 48, 64, 3)
    r = VideoReader(path)
    assert close_to(r[0][None], frame0) and close_to(r[-1][None], frame0)
    assert close_to(r.get_frames([0, 0, 0]), np.repeat(frame0, 3, 0))
    for short in ("repeat", "loop"):
        clips = [random_clip(1, 16, 3, seed=5, short=short), center_clip(1, 16, short=short),
                 *uniform_clips(1, 16, 3, 2, short=short), *dense_clips(1, 16, 7, short=short)]
        assert all(c == [0] * 16 for c in clips)
        out = read_clips([(path, c) for c in clips], **RAW)
        assert out.shape == (6, 16, 48, 64, 3)
        assert close_to(out, np.broadcast_to(frame0, out.shape))
    with pytest.raises(ValueError, match="num_frames=1.*clip_len=16"):
        random_clip(1, 16, seed=0, short="error")
    with pytest.raises(ValueError, match=r"clips\[0\].*out of range.*1 frames"):
        read_clips([(path, [0, 1])], **RAW)
    with pytest.raises(ValueError, match="indices"):
        r[-2]
    loader = ClipLoader([(str(path), 3)], clip_len=8, stride=4, batch_size=4, clips_per_video=2, return_meta=True,
                        **RAW)
    (x, y, meta), = list(loader)
    assert x.shape == (2, 8, 48, 64, 3) and y.tolist() == [3, 3] and meta["frames"].max() == 0


def test_fewer_frames_than_a_clip(tiny):
    path = tiny["five"]
    ref = videogen.ffmpeg_frames(path)
    assert len(ref) == 5
    repeat = random_clip(5, 16, 4, seed=1)
    loop = random_clip(5, 16, 4, seed=1, short="loop")
    assert repeat == [0, 4] + [4] * 14
    assert loop == [(4 * i) % 5 for i in range(16)]
    out = read_clips([(path, repeat), (path, loop)], **RAW)
    assert close_to(out[0], ref[repeat]) and close_to(out[1], ref[loop])
    assert dense_clips(5, 16, 4) == [repeat] and uniform_clips(5, 16, 2, 4) == [repeat, repeat]
    with pytest.raises(ValueError, match="too short"):
        center_clip(5, 16, 4, short="error")
    # span == num_frames exactly is not short: one valid start
    assert center_clip(5, 3, 2) == [0, 2, 4] and dense_clips(5, 3, 2, step=1) == [[0, 2, 4]]


@pytest.mark.parametrize("stride", [10**6, 2**40, 10**30])
def test_huge_strides_are_exact(tiny, stride):
    assert clip_span(4, stride) == 3 * stride + 1  # Python ints: no overflow
    assert random_clip(30, 4, stride, seed=0) == [0, 29, 29, 29]
    assert random_clip(30, 4, stride, seed=0, short="loop") == [(i * stride) % 30 for i in range(4)]
    assert uniform_clips(30, 4, 2, stride) == [[0, 29, 29, 29]] * 2
    # a video long enough for the stride: starts are drawn over the whole valid range
    n = 3 * stride + 1 + 1000
    starts = {random_clip(n, 4, stride, seed=s)[0] for s in range(20)}
    assert all(0 <= s <= 1000 for s in starts) and len(starts) > 10
    out = read_clips([(tiny["avi"], random_clip(30, 4, stride, seed=0))], **RAW)
    ref = videogen.ffmpeg_frames(tiny["avi"])
    assert close_to(out[0], ref[[0, 29, 29, 29]])


@pytest.mark.parametrize("bad", [[30], [0, 29, 30, 0], [10**9], [-1], [-31], [2**62]])
def test_indices_past_the_end_or_negative_name_the_clip(tiny, bad):
    clips = [(tiny["avi"], [0] * len(bad)), (tiny["mp4"], bad)]
    with pytest.raises(ValueError, match=r"clips\[1\].*out of range.*thirty\.mp4"):
        read_clips(clips, **RAW)
    with pytest.raises(ValueError, match="indices"):
        VideoReader(tiny["mp4"]).get_frames(bad)
    out, report = read_clips(clips, on_error="skip", **RAW)
    assert report["ok"] == [0] and [f[0] for f in report["failed"]] == [1] and "out of range" in report["failed"][0][2]
    assert out.shape == (1, len(bad), 48, 64, 3)


def test_negative_item_of_a_reader_counts_from_the_end(tiny):
    r = VideoReader(tiny["mp4"])
    ref = videogen.ffmpeg_frames(tiny["mp4"])
    assert close_to(r[-1], ref[29]) and close_to(r[-30], ref[0])
    with pytest.raises(ValueError, match="out of range"):
        r[-31]
    with pytest.raises(ValueError, match="out of range"):
        r[30]


@pytest.mark.parametrize("bad", [[2**63], [2**64 + 3], np.array([2**64 - 1], np.uint64)])
def test_indices_beyond_int64_name_the_clip(tiny, bad):
    with pytest.raises(ValueError, match=r"clips\[0\]"):
        read_clips([(tiny["mp4"], bad)], **RAW)
    if isinstance(bad, np.ndarray):  # and the message shows the index that was asked for, not a wrapped one
        with pytest.raises(ValueError, match=str(2**64 - 1)):
            read_clips([(tiny["mp4"], bad)], **RAW)


@pytest.mark.parametrize("kwargs, arg", [
    (dict(size=(20000, 20000), crop=None), "size"), (dict(size=(16384, 16384), crop=None), "size"),
    (dict(size=16385), "size"), (dict(size=(8, 16385), crop=8), "size"), (dict(crop=(16385, 8)), "crop"),
    (dict(threads=257), "threads"), (dict(threads=0), "threads"), (dict(threads=2**64), "threads"),
])
def test_sizes_and_threads_beyond_the_limits_name_the_argument(tiny, kwargs, arg):
    """Sides above 16384, a size beyond FFmpeg's image limit, threads outside 1..256: a ValueError naming the
    argument, before anything is decoded (docs/robustness.md, limits)."""
    with pytest.raises(ValueError, match=f"^{arg}"):
        read_clips([(tiny["avi"], [0])], **kwargs)
    if arg == "size" and isinstance(kwargs["size"], tuple):
        with pytest.raises(ValueError, match="^size"):
            VideoReader(tiny["avi"]).get_frames([0], size=kwargs["size"])


def test_the_native_module_checks_sizes_again(tiny):
    """A direct call to the Rust side (past reader.py's checks) still names the argument."""
    from c3d_distill import _native
    kw = dict(size=None, short_side=None, crop=None, random_crop=False, flip=0, seed=0, layout="NTHWC",
              dtype="uint8", mean=None, std=None, threads=1, skip=False)
    for over, arg in [(dict(size=(2**40, 8)), "size"), (dict(crop=(8, 2**33)), "crop"), (dict(short_side=2**40), "size"),
                      (dict(size=(16384, 16384)), "size"), (dict(threads=1000), "threads")]:
        with pytest.raises(ValueError, match=f"^{arg}"):
            _native.read_clips([(str(tiny["avi"]), [0])], **{**kw, **over})


@pytest.mark.parametrize("kwargs, arg", [
    (dict(crop=0), "crop"), (dict(crop=(0, 4)), "crop"), (dict(crop=(4, 0)), "crop"), (dict(crop=-3), "crop"),
    (dict(size=0), "size"), (dict(size=(0, 4)), "size"), (dict(size=(4, 0)), "size"), (dict(size=-1), "size"),
    (dict(size=None, crop=(49, 64)), "crop"), (dict(size=None, crop=(48, 65)), "crop"),
    (dict(size=(20, 30), crop=21), "crop"), (dict(size=16, crop=(16, 22)), "crop"),
])
def test_zero_and_oversized_crops_and_sizes_name_the_argument(tiny, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        read_clips([(tiny["avi"], [0, 1])], **kwargs)


def test_crops_and_sizes_at_the_limits(tiny):
    path = tiny["avi"]
    ref = videogen.ffmpeg_frames(path)
    # a crop as large as the frame is the frame; a 1x1 crop is one pixel of it
    full = read_clips([(path, [3])], size=None, crop=(48, 64), layout="NTHWC")
    assert close_to(full[0], ref[[3]])
    pixel = read_clips([(path, [3])], size=None, crop=1, layout="NTHWC")
    np.testing.assert_array_equal(pixel[0, 0, 0, 0], full[0, 0, 24, 32])  # the centre pixel, offsets rounded as torchvision does
    # resizing to 1 pixel and upscaling past the frame are defined; upscaling is FFmpeg's bicubic scale
    assert read_clips([(path, [0])], size=(1, 1), crop=None).shape == (1, 3, 1, 1, 1)
    assert read_clips([(path, [0])], size=1, crop=None).shape == (1, 3, 1, 1, 1)  # 64x48 -> 1.33x1
    up = VideoReader(path).get_frames([0, 7], size=(144, 192))
    assert close_to(up, videogen.ffmpeg_frames(path, size=(144, 192))[[0, 7]])
    big = read_clips([(path, [0])], size=480, crop=None, layout="NTHWC")
    assert big.shape == (1, 1, 480, 640, 3)


# Each case runs in a process forked from one driver that imported the package once (so a case that kills
# its process costs a fork, not an interpreter start); the driver itself never reads, so no thread pool
# exists at the fork. The case's process has 4 GiB of address space to spare (RLIMIT_AS).
_HUGE_DRIVER = """
import json, os, resource, sys
from c3d_distill.clips import VideoReader, read_clips
path = sys.argv[1]
calls = {
    "batch": lambda: read_clips([(path, [0] * 500)] * 200, size=(1000, 1000), crop=None, dtype="float32"),
    "size": lambda: read_clips([(path, [0, 1])], size=(60000, 60000), crop=None),
    "size_then_crop": lambda: read_clips([(path, [0, 1])], size=(60000, 60000), crop=112),
    "get_frames": lambda: VideoReader(path).get_frames([0], size=(60000, 60000)),
    "size_2_31": lambda: read_clips([(path, [0])], size=(2**31, 2**31), crop=8),
    "size_2_40": lambda: read_clips([(path, [0])], size=2**40, crop=8),
    "crop_2_40": lambda: read_clips([(path, [0])], crop=2**40),
    "control": lambda: read_clips([(path, [0, 1])], size=(64, 80), crop=None),
}
results = {}
for case in sys.argv[2:]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (4 << 30), resource.RLIM_INFINITY))
        try:
            calls[case](); out = {"type": "ok"}
        except Exception as e:
            out = {"type": type(e).__name__, "msg": str(e)[:300]}
        os.write(w, json.dumps(out).encode()); os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    results[case] = json.loads(data) if data else {"type": "died", "status": status,
                                                    "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}
print(json.dumps(results))
"""
HUGE_CASES = ("control", "batch", "size", "size_then_crop", "get_frames", "size_2_31", "size_2_40", "crop_2_40")


@pytest.fixture(scope="module")
def huge_results(tiny) -> dict[str, dict]:
    proc = subprocess.run([sys.executable, "-c", _HUGE_DRIVER, str(tiny["avi"]), *HUGE_CASES], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["control"] == {"type": "ok"}, out  # the harness itself reads a normal request
    return out


@pytest.mark.parametrize("case", ["batch", "size", "size_then_crop", "get_frames"])
def test_a_request_too_large_for_memory_raises_instead_of_aborting(huge_results, case):
    """A batch or frame size that cannot be allocated (TBs, beyond RLIMIT_AS) must come back as an exception
    (MemoryError, or ValueError naming ``size``), not kill the interpreter."""
    assert huge_results[case]["type"] in ("MemoryError", "ValueError"), huge_results[case]


@pytest.mark.parametrize("case, arg", [("size_2_31", "size"), ("size_2_40", "size"), ("crop_2_40", "crop")])
def test_sizes_beyond_the_integer_range_name_the_argument(huge_results, case, arg):
    out = huge_results[case]
    assert out["type"] == "ValueError" and arg in out["msg"], out


# ---------------------------------------------------------------------------------------------------
# Concurrency: Python threads, DataLoader workers


def _jobs(tiny):
    """Eight different read_clips calls (videos, layouts, dtypes, random crops/flips, sizes)."""
    a, m, f = tiny["avi"], tiny["mp4"], tiny["five"]
    return [
        ([(a, range(0, 8)), (m, range(10, 18))], dict(size=(32, 40), crop=24)),
        ([(m, [29, 0, 15, 15, 3, 2, 1, 0])], dict(size=None, crop=None, layout="NTHWC")),
        ([(a, range(i, i + 8)) for i in range(0, 20, 4)], dict(size=40, crop=(32, 32), crop_mode="random", seed=9)),
        ([(m, range(8)), (f, [0, 1, 2, 3, 4, 4, 4, 4])], dict(size=(24, 32), crop=None, flip="random", seed=3,
                                                              dtype="float32", mean=(.4, .5, .6), std=(.2, .2, .2))),
        ([(a, range(22, 30)), (a, range(0, 8)), (m, range(5, 13))], dict(size=(36, 48), crop=30, layout="NTCHW")),
        ([(f, [4, 3, 2, 1, 0, 1, 2, 3])] * 3, dict(size=None, crop=16, crop_mode="random", seed=1, flip=True)),
        ([(m, range(0, 24, 3))], dict(size=(48, 64), crop=None, dtype="float32")),
        ([(a, [7] * 8), (m, [7] * 8)], dict(size=(20, 20), crop=(10, 20))),
    ]


def test_read_clips_from_many_python_threads_matches_a_serial_read(tiny):
    jobs = _jobs(tiny)
    expect = [read_clips(c, threads=1, **kw) for c, kw in jobs]
    frames_expect = VideoReader(tiny["mp4"]).get_frames([29, 3, 3, 17], threads=1)
    start = threading.Barrier(len(jobs) + 1)
    errors, done = [], []

    def work(k):
        try:
            start.wait()
            c, kw = jobs[k]
            for rep in range(4):
                got = read_clips(c, threads=1 + (k + rep) % 3, **kw)
                np.testing.assert_array_equal(got, expect[k], err_msg=f"job {k} repetition {rep}")
                done.append(k)
        except Exception as e:  # re-raised in the main thread
            errors.append((k, e))

    def reader_work():
        try:
            start.wait()
            for _ in range(6):
                np.testing.assert_array_equal(VideoReader(tiny["mp4"]).get_frames([29, 3, 3, 17], threads=2),
                                              frames_expect)
                assert probe(tiny["avi"])["num_frames"] == 30
        except Exception as e:
            errors.append(("reader", e))

    ts = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))] + [threading.Thread(target=reader_work)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not any(t.is_alive() for t in ts), "a thread did not finish in 120 s"
    assert not errors, errors
    assert len(done) == 4 * len(jobs)


class ClipsDataset(torch.utils.data.Dataset):
    """One clip per item, read by read_clips in the worker (module level so spawn can pickle it)."""

    def __init__(self, clips, kwargs):
        self.clips, self.kwargs = clips, kwargs

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        return torch.from_numpy(read_clips([self.clips[i]], threads=1, **self.kwargs)[0]), i


def _worker_clips(tiny):
    clips = [(str(tiny[k]), list(range(s, s + 4))) for k in ("avi", "mp4") for s in (0, 9, 17, 26)]
    return clips + [(str(tiny["five"]), [4, 0, 4, 0]), (str(tiny["one_avi"]), [0] * 4)]


WORKER_KW = dict(size=(32, 40), crop=24, dtype="float32", mean=(.5, .5, .5), std=(.25, .25, .25))


def test_read_clips_in_spawned_dataloader_workers_matches_a_serial_read(tiny):
    clips = _worker_clips(tiny)
    want = torch.from_numpy(read_clips(clips, threads=2, **WORKER_KW))
    dl = torch.utils.data.DataLoader(ClipsDataset(clips, WORKER_KW), batch_size=3, num_workers=2,
                                     multiprocessing_context="spawn", timeout=120)
    got, order = [], []
    for x, i in dl:
        got.append(x)
        order += i.tolist()
    assert order == list(range(len(clips)))
    assert torch.equal(torch.cat(got), want)


# Run in a fresh interpreter: what a forked worker can do depends on which thread pools the parent started.
_FORK_CHILD = """
import json, sys
import torch
from c3d_distill.clips import read_clips
clips, kw, parent_threads = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])

class DS(torch.utils.data.Dataset):
    def __len__(self):
        return len(clips)
    def __getitem__(self, i):
        return torch.from_numpy(read_clips([clips[i]], threads=1, **kw)[0])

want = torch.from_numpy(read_clips(clips, threads=parent_threads, **kw))  # the parent reads before the fork
dl = torch.utils.data.DataLoader(DS(), batch_size=3, num_workers=2, multiprocessing_context="fork", timeout=10)
try:
    got = torch.cat(list(dl))
    print(json.dumps({"equal": bool(torch.equal(got, want)), "n": len(got)}))
except RuntimeError as e:
    print(json.dumps({"error": str(e)}))
"""


def _fork_run(tiny, parent_threads):
    clips = _worker_clips(tiny)
    proc = subprocess.run([sys.executable, "-c", _FORK_CHILD, json.dumps(clips), json.dumps(WORKER_KW),
                           str(parent_threads)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), len(clips)


def test_read_clips_in_forked_dataloader_workers_matches_a_serial_read(tiny):
    """The parent has read with 2 threads, the workers read with 1."""
    out, n = _fork_run(tiny, parent_threads=2)
    assert out == {"equal": True, "n": n}


def test_forked_workers_may_use_the_thread_count_the_parent_used(tiny):
    """The parent has read with 1 thread (as ClipLoader(threads=1) does, or any read on a 1-core machine):
    forked workers reading with 1 thread must not hang (each process builds its own thread pool)."""
    out, n = _fork_run(tiny, parent_threads=1)
    assert out == {"equal": True, "n": n}


# ---------------------------------------------------------------------------------------------------
# A data set with 5% corrupt files, read with on_error="skip"


def _corrupt(kind: str, good: bytes) -> bytes:
    if kind == "random":
        return np.random.default_rng(1).integers(0, 256, 30_000, dtype=np.uint8).tobytes()
    if kind == "empty":
        return b""
    if kind == "text":
        return b"<html>404 Not Found</html>\n" * 50
    if kind == "first_kb":
        return good[:1024]
    raise ValueError(kind)


@pytest.fixture(scope="module")
def dataset_5pct(tmp_path_factory):
    """60 videos (64×48, 16–27 frames, MPEG-4 AVI) of which 3 are corrupt: random bytes, an HTML error page,
    a download cut after 1 KB."""
    d = tmp_path_factory.mktemp("skipset")
    items = []
    made = [videogen.encode(d / f"src{k}.avi", codec="mpeg4", frames=16 + k, gop=8, size=(64, 48))
            for k in range(12)]
    for i in range(57):  # copies under their own names: 57 files, 12 encodes
        p = d / f"v{i:02d}.avi"
        p.write_bytes(made[i % 12].read_bytes())
        items.append((str(p), i % 5))
    good = Path(items[0][0]).read_bytes()
    bad = []
    for k, kind in enumerate(("random", "text", "first_kb")):
        p = d / f"bad_{kind}.avi"
        p.write_bytes(_corrupt(kind, good))
        with pytest.raises(VideoDecodeError):
            probe(p)
        items.insert(10 + 20 * k, (str(p), 9))
        bad.append(str(p))
    assert len(items) == 60 and len(bad) / len(items) == 0.05
    return items, bad


def _warned_paths(caplog, bad):
    return sorted(p for r in caplog.records if r.levelno >= logging.WARNING for p in bad if p in r.getMessage())


def test_five_percent_corrupt_files_are_skipped_logged_once_and_counted(dataset_5pct, caplog):
    items, bad = dataset_5pct
    loader = ClipLoader(items, clip_len=8, batch_size=8, on_error="skip", return_meta=True, size=(32, 40), crop=24)
    caplog.set_level(logging.WARNING, logger="c3d_distill")
    seen, labels, skipped = 0, [], []
    for x, y, meta in loader:
        assert x.shape[1:] == (3, 8, 24, 24) and x.shape[0] == y.shape[0] >= 1
        seen += x.shape[0]
        labels += y.tolist()
        skipped += meta["skipped"]
    assert seen == 57 and 9 not in labels  # every good video once, no bad one
    assert sorted(p for _, p, _ in skipped) == sorted(bad)
    assert all(str(p) in msg for _, p, msg in skipped)  # each message names its file
    assert sorted(s["path"] for s in loader.skipped) == sorted(bad)
    assert _warned_paths(caplog, bad) == sorted(bad)  # one warning per bad file


def test_five_percent_corrupt_in_dataloader_workers(dataset_5pct):
    items, bad = dataset_5pct
    loader = ClipLoader(items, clip_len=8, batch_size=8, on_error="skip", return_meta=True, size=(32, 40), crop=24,
                        seed=4)
    serial = [(x.clone(), y.clone()) for x, y, _ in loader]
    got, skipped = [], []
    for x, y, meta in loader.dataloader(num_workers=2, multiprocessing_context="spawn", timeout=120):
        got.append((x, y))
        skipped += meta["skipped"]
    assert sum(x.shape[0] for x, _ in got) == 57
    assert sorted(p for _, p, _ in skipped) == sorted(bad)
    for (xa, ya), (xb, yb) in zip(got, serial, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_run_of_several_epochs_logs_each_bad_file_once(dataset_5pct, caplog):
    """Several clips per video over two epochs: a bad file is still one warning, and the report counts
    bad files, not failed clips."""
    items, bad = dataset_5pct
    loader = ClipLoader(items, clip_len=8, batch_size=8, clips_per_video=2, on_error="skip", size=(32, 40), crop=24,
                        return_meta=True)
    caplog.set_level(logging.WARNING, logger="c3d_distill")
    for epoch in range(2):
        loader.set_epoch(epoch)
        batches = list(loader)
        assert sum(x.shape[0] for x, _, _ in batches) == 2 * 57
        # the per-epoch report still counts every lost clip: 2 per bad file
        lost = [p for _, _, meta in batches for _, p, _ in meta["skipped"]]
        assert sorted(lost) == sorted(bad * 2)
    warned = [p for r in caplog.records for p in bad if p in r.getMessage()]
    assert sorted(warned) == sorted(bad), f"{len(warned)} warnings for {len(bad)} bad files"
    assert len(loader.skipped) == len(bad)
    assert all(s["clips"] == 2 * 2 and s["epoch"] == 0 for s in loader.skipped)  # 2 clips x 2 epochs


# ---------------------------------------------------------------------------------------------------
# Threads argument


def test_thread_counts_do_not_accumulate_os_threads(tiny):
    """Calls with different ``threads`` must not leave a pool of threads behind for each count."""
    code = f"""
import os
from c3d_distill.clips import read_clips
for k in range(1, 21):
    read_clips([({str(tiny['five'])!r}, [0])], threads=k)
print(len(os.listdir("/proc/self/task")))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    alive = int(proc.stdout.split()[-1])
    assert alive < 60, f"{alive} OS threads alive after reads with threads=1..20"
