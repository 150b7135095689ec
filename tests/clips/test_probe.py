"""probe(): agrees with `ffprobe -count_frames`, and every broken file raises the documented error."""

from __future__ import annotations

import json
import subprocess
import sys

import c3d_distill
import pytest
import videogen
from c3d_distill.clips import VideoDecodeError, probe


@pytest.mark.parametrize("name", ["h264_mp4", "mpeg4_avi", "five_frames"])
def test_probe_agrees_with_ffprobe(request, name):
    path = request.getfixturevalue(name)
    info = probe(path)
    ref = videogen.ffprobe_count(path)
    assert info["num_frames"] == int(ref["nb_read_frames"])
    assert (info["width"], info["height"]) == (int(ref["width"]), int(ref["height"]))
    assert info["codec"] == ref["codec_name"]
    num, den = map(int, ref["avg_frame_rate"].split("/"))
    assert info["fps"] == pytest.approx(num / den)
    assert info["duration"] == pytest.approx(info["num_frames"] / info["fps"], rel=0.05)
    assert info["path"] == str(path)


def test_keyframes_follow_the_gop(h264_mp4, mpeg4_avi, five_frames):
    assert probe(h264_mp4)["keyframes"] == [0, 12, 24, 36, 48]
    assert probe(mpeg4_avi)["keyframes"] == [0, 12, 24, 36, 48]
    assert probe(five_frames)["keyframes"] == [0]


def test_num_frames_is_decoded_not_declared(video_dir):
    # A file cut short: the header still declares the full length, but fewer frames decode.
    full = videogen.encode(video_dir / "to_cut.avi", codec="mpeg4", frames=100, gop=10, extra=["-q:v", "4"])
    cut = video_dir / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    info = probe(cut)
    assert info["num_frames"] == int(videogen.ffprobe_count(cut)["nb_read_frames"])
    assert 0 < info["num_frames"] < 100


_THREADS_CHILD = """
import os, sys, threading, time
from c3d_distill import _native
tasks = lambda: len(os.listdir("/proc/self/task"))
before, peak, done = tasks(), 0, threading.Event()
def work():
    _native.probe(sys.argv[1], threads=int(sys.argv[2]))
    done.set()
threading.Thread(target=work).start()
while not done.is_set():
    peak = max(peak, tasks())
    time.sleep(0.002)
print(peak - before)
"""


def _threads_while_indexing(path, threads: int) -> int:
    proc = subprocess.run([sys.executable, "-c", _THREADS_CHILD, str(path), str(threads)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout)


def test_indexing_by_decoding_uses_the_threads_asked_for(video_dir):
    # probe(threads=1) starts no FFmpeg decoder threads (FFmpeg's own choice, with 0, is up to 16 per
    # video, also inside DataLoader workers that read with one thread): the Python thread calling
    # probe and the Rust thread it waits on are all that may appear. With threads=4 the decoder's
    # own threads appear too. Counted in fresh processes (nothing cached).
    path = videogen.slow_to_index(video_dir)
    one = _threads_while_indexing(path, 1)
    assert one <= 2, f"{one} threads appeared while indexing with threads=1"
    assert _threads_while_indexing(path, 4) > one


def test_cached_indexes_are_counted_in_bytes(h264_mp4):
    # 8 bytes per frame (its timestamp) and per keyframe, plus a few hundred per video; the cache
    # drops its oldest entries beyond 256 MiB (rust/cache.rs, whose unit test covers the eviction).
    from c3d_distill import _native

    _native.clear_cache()
    assert _native.stats()["index_bytes"] == 0
    info = probe(h264_mp4)
    used = _native.stats()["index_bytes"]
    assert 8 * (info["num_frames"] + len(info["keyframes"])) < used < 8 * info["num_frames"] + 1000
    _native.clear_cache()
    assert _native.stats()["index_bytes"] == 0


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        probe(tmp_path / "nope.mp4")
    assert "nope.mp4" in str(exc.value)


def test_video_decode_error_is_a_runtime_error():
    assert issubclass(VideoDecodeError, RuntimeError)
    assert c3d_distill.VideoDecodeError is VideoDecodeError


_CHILD = """
import json, sys
from c3d_distill.clips import probe, VideoDecodeError
try:
    probe(sys.argv[1]); print(json.dumps({"type": "ok"}))
except Exception as e:
    print(json.dumps({"type": type(e).__name__, "msg": str(e)}))
"""


@pytest.mark.parametrize("kind", ["empty", "random", "text", "text_as_mp4", "audio_only", "headless"])
def test_broken_files_raise_video_decode_error(broken, kind):
    # In a child process: a crash there fails this test instead of killing the test run.
    path = broken[kind]
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"child crashed ({proc.returncode}): {proc.stderr[-2000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["type"] == "VideoDecodeError", out
    assert str(path) in out["msg"]
    assert len(out["msg"]) > len(str(path)) + 5  # a cause follows the name


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(VideoDecodeError, match="directory"):
        probe(tmp_path)


def test_video_decode_error_pickles():
    # DataLoader workers send exceptions to the parent by pickling them.
    import pickle

    err = VideoDecodeError("clip.avi: bad header")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is VideoDecodeError and str(back) == "clip.avi: bad header"
    assert VideoDecodeError.__module__ == "c3d_distill._native"


@pytest.mark.parametrize("threads", [0, -1])
def test_bad_thread_count_names_the_argument(h264_mp4, threads):
    with pytest.raises(ValueError, match="threads"):
        probe(h264_mp4, threads=threads)


def test_probe_command_reports_a_bad_file_in_the_common_format_and_goes_on(tmp_path, mpeg4_avi, capsys):
    from c3d_distill.cli import main

    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    assert main(["probe", str(text), str(mpeg4_avi)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("c3d-distill: error: ") and str(text) in err
    assert str(mpeg4_avi) in out  # the good file after the bad one is still probed
