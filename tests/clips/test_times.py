"""Frames by time: ``VideoReader.pts`` against ffprobe's frame timestamps, and ``index_at`` /
``get_frames_at`` against ``ffmpeg -i f -ss T -frames:v 1``, on constant and variable frame rates."""

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
    # Its first frame is shown at 0.04 s: earlier times give frame 0.
    assert r.pts[0] > 0 and r.index_at(0.0) == 0 == r.index_at(r.pts[0] / 2)


def between(pts: np.ndarray, i: int, where: float) -> float:
    return float(pts[i] + where * (pts[i + 1] - pts[i]))


@pytest.mark.parametrize("name", ["h264_mp4", "mpeg4_avi", "vfr_mp4", "h264_ts"])
def test_get_frames_at_matches_ffmpeg_ss(request, name):
    path = request.getfixturevalue(name)
    r = VideoReader(path)
    ref_t = ffprobe_seconds(path)
    n = len(ref_t)
    # On a frame's time, just after it, between two frames, just before the next, at 0 and at the last frame.
    times = [0.0, float(ref_t[7]), between(ref_t, 7, 0.01), between(ref_t, 20, 0.5), between(ref_t, 25, 0.99),
             float(ref_t[n - 1]), between(ref_t, 3, 0.5)]
    # The frame on screen is the last one at or before t (ffprobe's times, independently of the reader).
    expected = [int(np.searchsorted(ref_t, t + 1e-7, side="right") - 1) for t in times]
    assert r.index_at(times) == expected
    got = r.get_frames_at(times)
    assert got.shape == (len(times), r.height, r.width, 3) and got.dtype == np.uint8
    for k, i in enumerate(expected):
        # ffmpeg -ss T gives the first frame at or after T: asked for a time between frame i - 1 and
        # frame i, it decodes frame i (whatever rounding ffprobe's six decimals carry).
        t = 0.0 if i == 0 else (ref_t[i - 1] + ref_t[i]) / 2
        ref = videogen.ffmpeg_frame_at(path, t)
        assert np.abs(got[k].astype(int) - ref).mean() <= 1, (name, times[k], i)


def test_frame_times_name_their_frames(vfr_mp4, h264_mp4):
    for path in (vfr_mp4, h264_mp4):
        r = VideoReader(path)
        assert r.index_at(r.pts) == list(range(r.num_frames))
        assert r.index_at(np.asarray(r.pts) + 1e-4) == list(range(r.num_frames))
    r = VideoReader(h264_mp4)
    # Computed in floating point, i / fps can fall a rounding error short of frame i's time.
    assert r.index_at([i / r.fps for i in range(r.num_frames)]) == list(range(r.num_frames))
    assert r.index_at(np.arange(r.num_frames) * (1 / r.fps)) == list(range(r.num_frames))
    assert r.index_at(0.5) == 12 and isinstance(r.index_at(0.5), int)
    assert r.index_at(np.float32(0.5)) == 12 and r.index_at(np.array(0.5)) == 12
    assert r.index_at([]) == [] and r.get_frames_at([]).shape == (0, 240, 320, 3)
    np.testing.assert_array_equal(r.get_frames_at(0.5), r.get_frames([12]))
    np.testing.assert_array_equal(r.get_frames_at([0.5, 0.01, 0.5], size=(60, 80)),
                                  r.get_frames([12, 0, 12], size=(60, 80)))


def test_the_end_of_the_video(vfr_mp4, h264_mp4):
    r = VideoReader(h264_mp4)  # 60 frames at 25 fps: 2.4 s
    assert r.duration == pytest.approx(2.4)
    assert r.index_at([2.39, 2.4]) == [59, 59]
    with pytest.raises(ValueError, match=r"^seconds: 2\.41 is past the end of .*h264_bframes\.mp4 \(2\.4 s\)"):
        r.get_frames_at([0.0, 2.41])
    v = VideoReader(vfr_mp4)  # the last frame, at 2.0 s, lasts as long as the interval before it
    assert v.index_at(2.09) == 29
    with pytest.raises(ValueError, match="past the end"):
        v.index_at(2.2)


@pytest.mark.parametrize("bad, message", [
    (-0.5, "-0.5 is negative"), ([0.1, -1e-9], "is negative"), (float("nan"), "nan is not a finite"),
    ([float("inf")], "inf is not a finite"), (1e9, "past the end"), ("1.0", "expected a time"),
    (True, "expected a time"), ([None], "expected a time"), (np.array([[0.1]]), "1-D"), (np.array(["a"]), "1-D"),
])
def test_bad_times_name_seconds_and_the_value(h264_mp4, bad, message):
    r = VideoReader(h264_mp4)
    for call in (r.index_at, r.get_frames_at):
        with pytest.raises(ValueError, match=r"^seconds: ") as e:
            call(bad)
        assert message in str(e.value)


def test_each_stream_has_its_own_times(video_dir):
    path = video_dir / "two_rates.mkv"
    subprocess.run([videogen.FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25",
                    "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-map", "0:v", "-map", "1:v",
                    "-t", "1", "-c:v", "libx264", str(path)], check=True)
    a, b = VideoReader(path, stream=0), VideoReader(path, stream=1)
    np.testing.assert_allclose(np.diff(a.pts), 0.04, atol=1e-3)  # Matroska keeps milliseconds
    np.testing.assert_allclose(np.diff(b.pts), 0.1, atol=1e-3)
    assert b.index_at(0.55) == 5 and a.index_at(0.55) == 13
