"""VideoReader: the metadata it exposes, get_frames' contract (order, repeats, size, dtype) and its
errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import videogen
from c3d_distill.clips import VideoDecodeError, VideoReader, probe


def test_metadata_matches_probe(h264_mp4):
    r = VideoReader(h264_mp4)
    info = probe(h264_mp4)
    assert (r.num_frames, r.width, r.height, r.fps) == (60, 320, 240, 25.0)
    assert len(r) == 60
    assert r.keyframes == info["keyframes"] == [0, 12, 24, 36, 48]
    assert r.codec == "h264"
    assert "h264" in repr(r)


def test_get_frames_order_and_repeats(mpeg4_avi):
    r = VideoReader(mpeg4_avi)
    ref = videogen.ffmpeg_frames(mpeg4_avi)
    idx = [30, 2, 2, 59, 0]
    got = r.get_frames(idx)
    assert got.dtype == np.uint8 and got.shape == (5, 240, 320, 3) and got.flags.c_contiguous
    for k, i in enumerate(idx):
        assert np.abs(got[k].astype(int) - ref[i]).mean() <= 1
    np.testing.assert_array_equal(got[1], got[2])
    np.testing.assert_array_equal(r[30], got[0])
    np.testing.assert_array_equal(r[-1], got[3])
    # numpy index arrays and ranges are accepted too.
    np.testing.assert_array_equal(r.get_frames(np.array([30, 2])), got[:2])
    np.testing.assert_array_equal(r.get_frames(range(2, 3)), got[1:2])


def test_get_frames_empty_and_resized(h264_mp4):
    r = VideoReader(h264_mp4)
    assert r.get_frames([]).shape == (0, 240, 320, 3)
    assert r.get_frames([], size=(10, 20)).shape == (0, 10, 20, 3)
    small = r.get_frames([5, 6], size=(60, 80))
    assert small.shape == (2, 60, 80, 3)


def test_single_thread_and_many_threads_agree(h264_mp4):
    r = VideoReader(h264_mp4)
    idx = [50, 3, 20, 20, 59]
    np.testing.assert_array_equal(r.get_frames(idx, threads=1), r.get_frames(idx, threads=4))


@pytest.mark.parametrize("bad", [[60], [-1], [0, 1000], [1.5], ["3"], [True]])
def test_bad_indices_are_value_errors(five_frames, bad):
    r = VideoReader(five_frames)
    with pytest.raises(ValueError, match="indices"):
        r.get_frames(bad)


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (1, 2, 3), "big"])
def test_bad_size_is_a_value_error(five_frames, size):
    with pytest.raises(ValueError, match="size"):
        VideoReader(five_frames).get_frames([0], size=size)


def test_short_video_all_frames(five_frames):
    r = VideoReader(five_frames)
    ref = videogen.ffmpeg_frames(five_frames)
    got = r.get_frames([4, 3, 2, 1, 0])
    for k, i in enumerate([4, 3, 2, 1, 0]):
        assert np.abs(got[k].astype(int) - ref[i]).mean() <= 1


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoReader(tmp_path / "nope.mp4")


def test_file_replaced_on_disk_is_indexed_again(tmp_path):
    # The in-process index cache is keyed by path, modification time and size.
    p = tmp_path / "v.mp4"
    videogen.encode(p, frames=10, size=(64, 48))
    assert VideoReader(p).num_frames == 10
    videogen.encode(p, frames=14, size=(64, 48))
    r = VideoReader(p)
    assert r.num_frames == 14
    assert r.get_frames([13]).shape == (1, 48, 64, 3)


_CHILD = """
import json, sys
from c3d_distill.clips import VideoReader
try:
    r = VideoReader(sys.argv[1]); r.get_frames([0, r.num_frames - 1]); print(json.dumps({"type": "ok"}))
except Exception as e:
    print(json.dumps({"type": type(e).__name__, "msg": str(e)}))
"""


@pytest.mark.parametrize("kind", ["empty", "random", "text", "text_as_mp4", "audio_only", "headless"])
def test_broken_files_raise_video_decode_error(broken, kind):
    path = broken[kind]
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"child crashed ({proc.returncode}): {proc.stderr[-2000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["type"] == VideoDecodeError.__name__, out
    assert str(path) in out["msg"]


def test_truncated_file_reads_what_decodes(video_dir):
    full = videogen.encode(video_dir / "reader_to_cut.avi", codec="mpeg4", frames=100, gop=10, extra=["-q:v", "4"])
    cut = video_dir / "reader_cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    r = VideoReader(cut)
    ref = videogen.ffmpeg_frames(cut)
    assert r.num_frames == len(ref)
    idx = [r.num_frames - 1, 0, r.num_frames // 2]
    got = r.get_frames(idx)
    for k, i in enumerate(idx):
        assert np.abs(got[k].astype(int) - ref[i]).mean() <= 1
