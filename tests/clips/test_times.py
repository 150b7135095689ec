"""Frames by time: ``VideoReader.pts`` against ffprobe's frame timestamps, on constant and variable
frame rates."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import videogen
from c3d_distill.clips import VideoReader


@pytest.fixture(scope="module")
def vfr_mp4(video_dir):
    """H.264 with B-frames at a variable rate: 15 frames 40 ms apart, then 15 frames 100 ms apart."""
    return videogen.encode(video_dir / "vfr.mp4", frames=30, bframes=2, gop=12,
                           extra=["-vf", "settb=1/1000,setpts='if(lt(N,15),N*40,600+(N-15)*100)'",
                                  "-fps_mode", "vfr", "-enc_time_base", "1/1000"])


@pytest.fixture(scope="module")
def mpeg4_bframes_avi(video_dir):
    """MPEG-4 with B-frames in AVI: packed frames, and a last frame the decoder gives no timestamp."""
    return videogen.encode(video_dir / "mpeg4_bframes.avi", codec="mpeg4", frames=30, gop=12, bframes=2,
                           extra=["-q:v", "4"])


@pytest.fixture(scope="module")
def h264_ts(video_dir):
    """MPEG-TS, whose stream starts at 1.4 s, not 0."""
    return videogen.encode(video_dir / "h264.ts", frames=30, bframes=2, gop=12)


def ffprobe_seconds(path) -> np.ndarray:
    """ffprobe's time of each frame from the stream's start: pts_time, else the best-effort timestamp."""
    pts, best, start = videogen.ffprobe_times(path)
    return np.array([(p if p is not None else b) - start for p, b in zip(pts, best, strict=True)])


@pytest.mark.parametrize("name", ["h264_mp4", "mpeg4_avi", "vfr_mp4", "h264_ts"])
def test_pts_are_ffprobes_timestamps(request, name):
    path = request.getfixturevalue(name)
    r = VideoReader(path)
    ref = ffprobe_seconds(path)
    assert r.pts.dtype == np.float64 and r.pts.shape == (r.num_frames,) == ref.shape
    np.testing.assert_allclose(r.pts, ref, rtol=0, atol=1e-6)  # ffprobe prints 6 decimals
    assert np.all(np.diff(r.pts) > 0) and r.pts[0] == 0
    if name == "vfr_mp4":
        np.testing.assert_allclose(np.diff(r.pts), [0.04] * 15 + [0.1] * 14, atol=1e-9)
    if name == "h264_ts":
        assert videogen.ffprobe_times(path)[2] > 1  # counted from the stream's start, as ffmpeg -ss counts
    with pytest.raises(ValueError):
        r.pts[0] = 1.0  # read-only: the reader's own copy


def test_a_frame_without_a_timestamp_follows_the_previous_by_a_period(mpeg4_bframes_avi):
    r = VideoReader(mpeg4_bframes_avi)
    _, best, start = videogen.ffprobe_times(mpeg4_bframes_avi)
    assert best[-1] is None and None not in best[:-1]  # what makes this file a test
    np.testing.assert_allclose(r.pts[:-1], np.array(best[:-1]) - start, atol=1e-6)
    assert r.pts[-1] == pytest.approx(r.pts[-2] + 1 / r.fps)


def test_each_stream_has_its_own_times(video_dir):
    path = video_dir / "two_rates.mkv"
    subprocess.run([videogen.FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25",
                    "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-map", "0:v", "-map", "1:v",
                    "-t", "1", "-c:v", "libx264", str(path)], check=True)
    a, b = VideoReader(path, stream=0), VideoReader(path, stream=1)
    np.testing.assert_allclose(np.diff(a.pts), 0.04, atol=1e-3)  # Matroska keeps milliseconds
    np.testing.assert_allclose(np.diff(b.pts), 0.1, atol=1e-3)
