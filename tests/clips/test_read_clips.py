"""read_clips: shapes and layouts, the fused resize/crop/flip/normalise, seeded randomness, the
error report, parallel use, and Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import videogen
from c3d_distill.clips import VideoDecodeError, VideoReader, read_clips


@pytest.fixture(scope="module")
def clips(h264_mp4, mpeg4_avi):
    return [(h264_mp4, range(0, 16)), (mpeg4_avi, range(30, 46)), (h264_mp4, [59, 58, 3, 3] * 4)]


@pytest.mark.parametrize("layout,shape", [("NCTHW", (3, 3, 16, 112, 112)), ("NTCHW", (3, 16, 3, 112, 112)),
                                          ("NTHWC", (3, 16, 112, 112, 3))])
def test_layouts_hold_the_same_pixels(clips, layout, shape):
    ref = read_clips(clips, layout="NTHWC")
    out = read_clips(clips, layout=layout)
    assert out.shape == shape and out.dtype == np.uint8 and out.flags.c_contiguous
    perm = {"NCTHW": (0, 4, 1, 2, 3), "NTCHW": (0, 1, 4, 2, 3), "NTHWC": (0, 1, 2, 3, 4)}[layout]
    np.testing.assert_array_equal(out, ref.transpose(perm))


def test_default_pipeline_is_resize_then_centre_crop(clips):
    # 128x171 then a 112 centre crop: rows 8..120, columns 30..142 (torchvision's rounding of 29.5).
    full = read_clips(clips, crop=None, layout="NTHWC")
    assert full.shape == (3, 16, 128, 171, 3)
    np.testing.assert_array_equal(read_clips(clips, layout="NTHWC"), full[:, :, 8:120, 30:142])
    # And the resize is ffmpeg's scale filter.
    ref = videogen.ffmpeg_frames(clips[0][0], size=(128, 171))
    assert np.abs(full[0].astype(int) - ref[:16]).mean() <= 1


def test_frames_are_the_requested_ones(clips):
    out = read_clips(clips, size=None, crop=None, layout="NTHWC")
    for c, (path, idx) in enumerate(clips):
        ref = videogen.ffmpeg_frames(path)[list(idx)]
        assert np.abs(out[c].astype(int) - ref).mean() <= 1


def test_short_side_keeps_aspect(clips):
    out = read_clips(clips, size=64, crop=None, layout="NTHWC")
    assert out.shape == (3, 16, 64, 85, 3)  # 320x240 -> 85.33x64


def test_float32_normalisation(clips):
    u8 = read_clips(clips)
    f = read_clips(clips, dtype="float32")
    assert f.dtype == np.float32
    # Bit for bit: the float path computes (v / 255 - mean) / std in float32, as numpy does here,
    # whichever route (fused YUV conversion or lookup table) a frame takes.
    np.testing.assert_array_equal(f, u8 / np.float32(255))
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    for kw in ({}, {"flip": True}, {"size": (128, 172)}, {"layout": "NTHWC"}):
        ref = read_clips(clips, **kw)
        n = read_clips(clips, dtype="float32", mean=mean, std=std, **kw)
        shape = (3, 1, 1, 1) if kw.get("layout", "NCTHW") == "NCTHW" else (3,)
        expect = (ref / np.float32(255) - np.array(mean, np.float32).reshape(shape)) / \
            np.array(std, np.float32).reshape(shape)
        np.testing.assert_array_equal(n, expect)


def test_flip(clips):
    plain = read_clips(clips, layout="NTHWC")
    np.testing.assert_array_equal(read_clips(clips, flip=True, layout="NTHWC"), plain[:, :, :, ::-1])
    many = [clips[0]] * 16
    base = read_clips(many, layout="NTHWC")
    r = read_clips(many, flip="random", seed=3, layout="NTHWC")
    flipped = [bool(np.array_equal(r[i], base[i, :, :, ::-1])) for i in range(16)]
    kept = [bool(np.array_equal(r[i], base[i])) for i in range(16)]
    assert all(a != b for a, b in zip(flipped, kept, strict=True))  # each clip is one or the other, all its frames alike
    assert 2 <= sum(flipped) <= 14
    np.testing.assert_array_equal(r, read_clips(many, flip="random", seed=3, layout="NTHWC"))


def test_random_crop_is_seeded_per_clip_and_shared_by_frames(clips):
    many = [clips[0]] * 8
    full = read_clips(many, crop=None, layout="NTHWC")
    a = read_clips(many, crop=(100, 90), crop_mode="random", seed=1, layout="NTHWC")
    np.testing.assert_array_equal(a, read_clips(many, crop=(100, 90), crop_mode="random", seed=1,
                                                layout="NTHWC", threads=1))
    offsets = set()
    for i in range(8):
        # Find the window of frame 0 in the full frame, then check every frame uses the same one.
        found = [(y, x) for y in range(0, 128 - 100 + 1) for x in range(0, 171 - 90 + 1)
                 if np.array_equal(full[i, 0, y:y + 100, x:x + 90], a[i, 0])]
        assert found, "random crop is not a window of the resized frame"
        y, x = found[0]
        np.testing.assert_array_equal(a[i], full[i, :, y:y + 100, x:x + 90])
        offsets.add((y, x))
    assert len(offsets) > 1
    b = read_clips(many, crop=(100, 90), crop_mode="random", seed=2, layout="NTHWC")
    assert not np.array_equal(a, b)


def test_skip_reports_failures_and_keeps_order(clips, broken, tmp_path):
    bad = [clips[0], (tmp_path / "missing.mp4", range(16)), clips[1], (broken["random"], range(16)),
           (clips[1][0], range(50, 66)), clips[2]]
    out, report = read_clips(bad, on_error="skip")
    assert out.shape == (3, 3, 16, 112, 112)
    assert report["ok"] == [0, 2, 5]
    failed = {pos: (path, msg) for pos, path, msg in report["failed"]}
    assert sorted(failed) == [1, 3, 4]
    assert "missing.mp4" in failed[1][0] and "no such file" in failed[1][1]
    assert str(broken["random"]) in failed[3][1]
    assert "out of range" in failed[4][1] and "clips[4]" in failed[4][1]
    np.testing.assert_array_equal(out, read_clips([clips[0], clips[1], clips[2]]))
    # Everything failing still gives an array, with no clips.
    none, rep = read_clips([(tmp_path / "missing.mp4", range(16))], on_error="skip")
    assert none.shape == (0, 3, 16, 112, 112) and rep["ok"] == []


def test_errors_without_skip(clips, broken, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_clips([clips[0], (tmp_path / "missing.mp4", range(16))])
    with pytest.raises(VideoDecodeError, match="random.avi"):
        read_clips([(broken["random"], range(16))])
    with pytest.raises(ValueError, match=r"clips\[1\].*out of range"):
        read_clips([clips[0], (clips[1][0], [0] * 15 + [60])])
    with pytest.raises(ValueError, match=r"clips\[1\].*out of range"):
        read_clips([clips[0], (clips[1][0], [-1] * 16)])


@pytest.mark.parametrize("kwargs,arg", [
    (dict(size=0), "size"), (dict(size=(10, 0)), "size"), (dict(size="x"), "size"),
    (dict(crop=0), "crop"), (dict(crop=(200, 10)), "crop"), (dict(crop_mode="edge"), "crop_mode"),
    (dict(flip="yes"), "flip"), (dict(layout="NHWC"), "layout"), (dict(dtype="float16"), "dtype"),
    (dict(mean=(0.5, 0.5)), "mean"), (dict(dtype="float32", std=(1, 0, 1)), "std"),
    (dict(mean=(0.5,) * 3), "mean"), (dict(threads=0), "threads"), (dict(on_error="ignore"), "on_error"),
    (dict(seed=1.5), "seed"),
])
def test_bad_arguments_name_themselves(clips, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        read_clips(clips, **kwargs)


def test_bad_clip_lists(clips):
    with pytest.raises(ValueError, match="clips"):
        read_clips([])
    with pytest.raises(ValueError, match="same number of frames"):
        read_clips([clips[0], (clips[1][0], range(8))])
    with pytest.raises(ValueError, match=r"clips\[0\]"):
        read_clips([(clips[0][0], [0.5] * 16)])
    with pytest.raises(ValueError, match=r"clips\[1\]"):
        read_clips([clips[0], "oops"])


def test_different_sizes_need_a_fixed_size(video_dir, clips):
    small = videogen.encode(video_dir / "rc_small.mp4", frames=20, size=(160, 120))
    mixed = [(clips[0][0], range(4)), (small, range(4))]
    with pytest.raises(ValueError, match="size"):
        read_clips(mixed, size=None, crop=None)
    assert read_clips(mixed, size=None, crop=100).shape == (2, 3, 4, 100, 100)
    assert read_clips(mixed, size=(50, 60), crop=None).shape == (2, 3, 4, 50, 60)


def test_threads_do_not_change_the_result(clips):
    a = read_clips(clips * 3, threads=1, dtype="float32", crop_mode="random", flip="random")
    b = read_clips(clips * 3, threads=3, dtype="float32", crop_mode="random", flip="random")
    np.testing.assert_array_equal(a, b)


def test_concurrent_calls_from_python_threads(clips):
    expect = read_clips(clips, threads=1)
    results, errors = [], []

    def work():
        try:
            for _ in range(3):
                results.append(read_clips(clips, threads=2))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert len(results) == 12
    for r in results:
        np.testing.assert_array_equal(r, expect)


def test_several_clips_of_one_video_match_separate_reads(h264_mp4):
    clips = [(h264_mp4, range(s, s + 8)) for s in (0, 4, 30, 50)]
    together = read_clips(clips)
    for i, c in enumerate(clips):
        np.testing.assert_array_equal(together[i], read_clips([c])[0])


def test_result_owns_its_memory_and_shares_it_with_torch(clips):
    torch = pytest.importorskip("torch")
    out = read_clips(clips, dtype="float32")
    assert out.flags.writeable and out.base is not None  # memory allocated by Rust, not copied
    t = torch.from_numpy(out)
    t[0, 0, 0, 0, 0] = 42.0
    assert out[0, 0, 0, 0, 0] == 42.0
    folded = out.reshape(out.shape[0], -1, 112, 112)  # (N, C*T, H, W): a view
    assert np.shares_memory(folded, out)


def test_recycled_batch_buffers_hold_no_stale_values(clips, broken, tmp_path):
    """A batch's memory is recycled once numpy and torch let go of it; the next batch must not show
    anything of the last one: every returned element is written (failed clips are compacted away)."""
    from c3d_distill import _native

    other = [(clips[1][0], range(0, 16)), (clips[0][0], range(40, 56)), (clips[1][0], range(7, 23))]
    cases = [
        dict(dtype="float32", mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3)),
        dict(dtype="uint8", flip=True, layout="NTHWC"),
        dict(dtype="uint8", crop=(100, 90), crop_mode="random", seed=3),
    ]
    with_failures = [(tmp_path / "missing.mp4", range(16)), *other[:2], (broken["random"], range(16))]
    for kw in cases:
        _native.clear_cache()
        fresh = read_clips(other, **kw).copy()  # into new, zeroed memory
        _native.clear_cache()
        fresh_skip = read_clips(with_failures, on_error="skip", **kw)[0].copy()
        _native.clear_cache()
        first = read_clips(clips, **kw)
        first.fill(77)  # what a stale buffer would show
        del first
        assert _native.stats()["pooled_bytes"] > 0
        again = read_clips(other, **kw)
        assert _native.stats()["pooled_bytes"] == 0  # the buffer was taken
        np.testing.assert_array_equal(again, fresh)
        # A smaller batch with failures, in the recycled memory of a larger one.
        big = read_clips(clips + other, **kw)
        big.fill(77)
        del big
        out, report = read_clips(with_failures, on_error="skip", **kw)
        assert report["ok"] == [1, 2]
        np.testing.assert_array_equal(out, fresh_skip)
        del again, out  # back to the pool before the next case counts it
    _native.clear_cache()
    assert _native.stats()["pooled_bytes"] == 0


def test_recycled_buffers_are_bounded(clips):
    from c3d_distill import _native

    arrays = [read_clips(clips[: 1 + i % 3], dtype="float32", crop=(112, 112 - i)) for i in range(12)]
    del arrays
    assert 0 < _native.stats()["pooled_bytes"] <= 512 << 20
    _native.clear_cache()


def test_ctrl_c_interrupts_a_long_read(video_dir):
    # 160 names for one 300-frame video with a single keyframe: 160 groups, each decoding ~300 frames
    # (about 12 s on one thread here, so a machine several times faster still reads past the 0.5 s
    # timer); SIGINT after 0.5 s must end the call within a fraction of that.
    long = videogen.encode(video_dir / "rc_long.mp4", frames=300, size=(320, 240), gop=300)
    links = []
    for i in range(160):
        link = video_dir / f"rc_long_{i}.mp4"
        if not link.exists():
            link.symlink_to(long)
        links.append(str(link))
    code = textwrap.dedent(f"""
        import os, signal, threading, time
        # A shell starting the tests as a background job leaves SIGINT ignored, and Python then
        # installs no handler: put the default one back so that the signal raises KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from c3d_distill.clips import read_clips
        clips = [(p, range(284, 300)) for p in {links!r}]
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        t = time.perf_counter()
        try:
            read_clips(clips, threads=1, size=(32, 32), crop=None)
            print("finished", time.perf_counter() - t)
        except KeyboardInterrupt:
            print("interrupted", time.perf_counter() - t)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    word, seconds = proc.stdout.split()
    assert word == "interrupted", proc.stdout
    # Not a timing target: a read that ignored the signal until the end would take tens of seconds
    # (and still print "interrupted"), so the bound only tells the two apart, with room for a busy machine.
    assert float(seconds) < 5.0


@pytest.mark.parametrize("call", ["read_clips", "probe"])
def test_ctrl_c_interrupts_indexing(video_dir, call):
    # A video indexed by decoding every frame (MPEG-4 with B-frames in AVI: seconds on one thread).
    # Indexing checks the cancel flag at every packet, and probe() waits for its worker like
    # read_clips: SIGINT after 0.5 s ends either call before indexing could have finished (the
    # probe after it indexes the whole file again: nothing half-built was kept).
    path = videogen.slow_to_index(video_dir)
    copy = video_dir / f"slow_to_index_{call}.avi"  # a name of its own: not indexed in this process
    if not copy.exists():
        copy.symlink_to(path)
    work = {"read_clips": f"read_clips([({str(copy)!r}, range(16))], threads=1, size=(32, 32), crop=None)",
            "probe": f"probe({str(copy)!r}, threads=1)"}[call]
    code = textwrap.dedent(f"""
        import os, signal, threading, time
        # A shell starting the tests as a background job leaves SIGINT ignored, and Python then
        # installs no handler: put the default one back so that the signal raises KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from c3d_distill.clips import probe, read_clips
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        t = time.perf_counter()
        try:
            {work}
            print("finished", time.perf_counter() - t)
        except KeyboardInterrupt:
            print("interrupted", time.perf_counter() - t)
        t = time.perf_counter()
        n = probe({str(copy)!r}, threads=1)["num_frames"]  # no half-built index was kept
        print("indexed", n, time.perf_counter() - t)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert lines[0][0] == "interrupted", proc.stdout
    assert lines[1][:2] == ["indexed", "10000"], proc.stdout
    # Not a timing target: an uninterrupted call would take at least the whole indexing.
    assert float(lines[0][1]) < 0.5 + float(lines[1][2]), proc.stdout


def test_reader_and_read_clips_agree(mpeg4_avi):
    idx = [7, 3, 40, 40]
    a = VideoReader(mpeg4_avi).get_frames(idx)
    b = read_clips([(mpeg4_avi, idx)], size=None, crop=None, layout="NTHWC")[0]
    np.testing.assert_array_equal(a, b)


def _read_in_child(args):
    clips, kwargs = args
    return read_clips(clips, **kwargs)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_processes_read_the_same(clips, method):
    # The parent has used its thread pool already; a forked child inherits no threads and must
    # build its own (a stale pool would hang it).
    import multiprocessing as mp

    kwargs = dict(threads=2, dtype="float32")
    expect = read_clips(clips, **kwargs)
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool:
        results = pool.map_async(_read_in_child, [(clips, kwargs)] * 2).get(timeout=120)
    for r in results:
        np.testing.assert_array_equal(r, expect)
