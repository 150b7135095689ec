"""Frame exactness: `VideoReader.get_frames` against the frames the `ffmpeg` command decodes, on many
codecs and containers, with random index sets (backwards jumps, repeats). Pixel values may differ by
colour-conversion rounding (mean absolute difference ≤ 1), never by a frame: each returned frame must
be far closer to its own reference frame than to any other frame of the video, measured as the share
of values that differ by more than 10 (rounding never does that; the moving test pattern always does)."""

from __future__ import annotations

import shutil
import subprocess
import zlib

import numpy as np
import pytest
import videogen
from c3d_distill import _native
from c3d_distill.clips import VideoReader, probe, read_clips

SMALL = (160, 120)  # (width, height): fast to encode on two shared cores

# name -> encode() keyword arguments. Frames are testsrc2, whose consecutive frames differ visibly.
CASES: dict[str, dict] = {
    "h264_bframes_mp4": dict(codec="libx264", bframes=3, gop=12, frames=48, suffix="mp4"),
    "h264_open_gop_mkv": dict(codec="libx264", bframes=3, gop=12, frames=48, suffix="mkv",
                              extra=["-x264-params", "open-gop=1:scenecut=0"]),
    "hevc_mp4": dict(codec="libx265", bframes=4, gop=12, frames=48, suffix="mp4",
                     extra=["-x265-params", "log-level=error"]),
    # x265's temporal sub-layers: its unreferenced B-frames go to layer 1 as TSA_N pictures.
    "hevc_temporal_layers_mp4": dict(codec="libx265", bframes=4, gop=12, frames=48, suffix="mp4",
                                     extra=["-x265-params", "log-level=error:temporal-layers=1:b-pyramid=1"]),
    "vp9_webm": dict(codec="libvpx-vp9", gop=12, frames=48, suffix="webm"),
    "vp8_webm": dict(codec="libvpx", gop=12, frames=48, suffix="webm"),
    "mpeg4_avi": dict(codec="mpeg4", gop=12, frames=48, suffix="avi", extra=["-q:v", "3"]),
    "mpeg4_bframes_avi": dict(codec="mpeg4", gop=12, bframes=2, frames=48, suffix="avi", extra=["-q:v", "3"]),
    "mjpeg_avi": dict(codec="mjpeg", gop=None, frames=30, suffix="avi", pix_fmt="yuvj420p", extra=["-q:v", "3"]),
    "odd_yuv444p_mp4": dict(codec="libx264", gop=10, frames=40, suffix="mp4", size=(97, 61), pix_fmt="yuv444p"),
    "h264_10bit_mkv": dict(codec="libx264", gop=12, frames=40, suffix="mkv", pix_fmt="yuv420p10le"),
    # Variable frame rate: timestamps jump after frame 20 and again after 30.
    "h264_vfr_mp4": dict(codec="libx264", bframes=2, gop=8, frames=40, suffix="mp4",
                         extra=["-vf", "setpts='(N+if(gt(N,20),7,0)+if(gt(N,30),13,0))/(25*TB)'",
                                "-fps_mode", "vfr"]),
}


def ffmpeg_frames(path, size=None) -> np.ndarray:
    """``videogen.ffmpeg_frames`` with ``-fps_mode passthrough``: rawvideo output otherwise makes the
    ffmpeg command duplicate or drop frames of a variable-frame-rate video to a constant rate."""
    info = videogen.ffprobe_count(path)
    h, w = (int(info["height"]), int(info["width"])) if size is None else size
    cmd = [videogen.FFMPEG, "-v", "error", "-i", str(path), "-fps_mode", "passthrough"]
    if size is not None:
        cmd += ["-vf", f"scale={w}:{h}"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exact")
    out = {}
    for name, kw in CASES.items():
        kw = dict(kw)
        suffix = kw.pop("suffix")
        kw.setdefault("size", SMALL)
        path = videogen.encode(folder / f"{name}.{suffix}", **kw)
        out[name] = (path, ffmpeg_frames(path))
    return out


def far(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of values differing by more than 10, over the last three axes."""
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) > 10).mean(axis=(-3, -2, -1))


def assert_frames_match(got: np.ndarray, ref: np.ndarray, indices, what: str):
    """Each got[k] must be reference frame indices[k] within rounding, and unlike every other frame
    (so a frame off by one can never pass)."""
    assert got.shape == (len(indices),) + ref.shape[1:], (what, got.shape)
    for k, i in enumerate(indices):
        mad = np.abs(ref[i].astype(np.float32) - got[k].astype(np.float32)).mean()
        assert mad <= 1.0, f"{what}: frame {i} differs by {mad:.2f} on average"
        d = far(ref, got[k][None])
        others = np.delete(d, i)
        assert d[i] < 0.002 and others.min() > 0.01, f"{what}: frame {i} looks like frame {int(np.argmin(d))}"


def test_consecutive_reference_frames_differ(videos):
    # The guarantee the checks above rely on: a frame off by one would be caught.
    for name, (_, ref) in videos.items():
        diffs = far(ref[1:], ref[:-1])
        assert diffs.min() > 0.01, (name, diffs.min())


@pytest.mark.parametrize("name", list(CASES))
def test_probe_frame_count_matches_ffmpeg(videos, name):
    path, ref = videos[name]
    info = probe(path)
    assert info["num_frames"] == len(ref)
    assert (info["height"], info["width"]) == ref.shape[1:3]


@pytest.mark.parametrize("threads", [1, 2])  # one decoder thread also discards unneeded non-reference frames
@pytest.mark.parametrize("name", list(CASES))
def test_random_indices_are_frame_exact(videos, name, threads):
    path, ref = videos[name]
    reader = VideoReader(path)
    n = len(ref)
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # the same indices in every run
    sets = [
        list(range(n)),                                   # everything, in order
        [n - 1, 0, n // 2, n // 2, 1, n - 2, 3, 3, 13],   # backwards jumps and repeats
        rng.integers(0, n, 15).tolist(),
        sorted(rng.choice(n, 6, replace=False).tolist()),  # sparse, forward: exercises the seeks
        [n - 1],                                          # the very last frame (needs a flush at EOF)
    ]
    before = _native.stats()
    for indices in sets:
        got = reader.get_frames(indices, threads=threads)
        assert_frames_match(got, ref, indices, f"{name} {indices}")
    after = _native.stats()
    # The fast route agreed with what decodes: no pass had to be retried.
    assert after["mismatches"] == before["mismatches"], name
    if name != "mpeg4_bframes_avi":  # AVI gives B-frames no timestamps: decoded from the start, by count
        assert after["seeks"] > before["seeks"], f"{name}: the sparse index sets should have seeked"


@pytest.mark.parametrize("size", [(50, 67), (64, 86)])  # odd and even widths take different routes
@pytest.mark.parametrize("name", ["h264_bframes_mp4", "hevc_mp4", "mpeg4_avi", "odd_yuv444p_mp4", "mjpeg_avi",
                                  "h264_10bit_mkv"])
def test_resize_matches_ffmpeg_scale(videos, name, size):
    path, _ = videos[name]
    ref = ffmpeg_frames(path, size=size)
    idx = [0, 7, 7, 25, 2, len(ref) - 1]
    got = VideoReader(path).get_frames(idx, size=size)
    assert got.shape == (len(idx), *size, 3)
    for k, i in enumerate(idx):
        d = np.abs(got[k].astype(np.float32) - ref[i].astype(np.float32)).mean()
        assert d <= 1.0, f"{name}: frame {i} resized differs from ffmpeg -vf scale by {d:.2f}"


@pytest.mark.parametrize("name", ["h264_bframes_mp4", "vp9_webm", "mpeg4_bframes_avi"])
def test_read_clips_of_one_video_are_frame_exact(videos, name):
    # Several overlapping clips of one video, decoded in one pass, in every layout.
    path, ref = videos[name]
    n = len(ref)
    clips = [(path, [5, 6, 7, 8]), (path, [n - 4, n - 3, n - 2, n - 1]), (path, [6, 6, 0, 30])]
    nthwc = read_clips(clips, size=None, crop=None, layout="NTHWC")
    for c, (_, idx) in enumerate(clips):
        assert_frames_match(nthwc[c], ref, idx, f"{name} clip {c}")
    ncthw = read_clips(clips, size=None, crop=None, layout="NCTHW")
    np.testing.assert_array_equal(ncthw, nthwc.transpose(0, 4, 1, 2, 3))


_EXACT_CHILD = """
import sys, json
import numpy as np
from c3d_distill.clips import VideoReader
got = VideoReader(sys.argv[1]).get_frames([0, 5, 9], size=(50, 67))
np.save(sys.argv[2], got)
"""


def test_exact_resize_switch_is_bit_identical_to_ffmpeg(videos, tmp_path):
    # C3D_DISTILL_EXACT_RESIZE=1: swscale's direct route, the very computation of `ffmpeg -vf scale`.
    import os
    import sys

    path, _ = videos["h264_bframes_mp4"]
    out = tmp_path / "exact.npy"
    env = dict(os.environ, C3D_DISTILL_EXACT_RESIZE="1")
    subprocess.run([sys.executable, "-c", _EXACT_CHILD, str(path), str(out)], check=True, env=env, timeout=60)
    ref = ffmpeg_frames(path, size=(50, 67))[[0, 5, 9]]
    np.testing.assert_array_equal(np.load(out), ref)


def test_non_reference_frames_are_skipped_only_where_nothing_refers_to_them(videos, tmp_path):
    # FFmpeg's HEVC decoder drops every "sub-layer non-reference" picture (TRAIL_N, TSA_N, ...) when
    # asked to skip non-reference frames, yet a picture of a higher temporal layer may refer to one.
    # x265 here cannot make such a stream (its temporal layers put only unreferenced B-frames on
    # top), so relabel every referenced TRAIL_R picture TRAIL_N: FFmpeg decodes the stream the same
    # (references come from the slice headers), but skipping "non-reference" frames would now drop
    # references and give wrong pixels under the right timestamps.
    orig = videogen.encode(tmp_path / "hevc_one_gop.mp4", codec="libx265", bframes=4, gop=60, frames=60,
                           size=SMALL, extra=["-x265-params", "log-level=error"])
    relabelled = tmp_path / "hevc_relabelled.mp4"
    shutil.copy(orig, relabelled)
    _, n = videogen.relabel_hevc_nal_types(relabelled, 1, 0)  # TRAIL_R -> TRAIL_N
    assert n > 10
    ref = ffmpeg_frames(relabelled)
    np.testing.assert_array_equal(ref, ffmpeg_frames(orig))
    idx = [40, 50, 59]
    for path in (orig, relabelled):
        before = _native.stats()
        got = VideoReader(path).get_frames(idx, threads=1)  # one decoder thread: the skipping route
        assert_frames_match(got, ref, idx, path.name)
        # HEVC decodes every frame up to the last one wanted (one GOP: no seek).
        assert _native.stats()["frames_decoded"] - before["frames_decoded"] == 60, path.name
    # H.264 still skips: its non-reference frames (nal_ref_idc 0) are referred to by nothing.
    path, ref = videos["h264_bframes_mp4"]
    before = _native.stats()
    got = VideoReader(path).get_frames([11], threads=1)
    assert_frames_match(got, ref, [11], "h264_bframes_mp4")
    assert _native.stats()["frames_decoded"] - before["frames_decoded"] < 12


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("codec", ["mpeg4", "libx265"])
def test_a_p_frame_the_container_calls_a_keyframe_is_not_a_seek_point(tmp_path, codec, threads):
    # A muxer that flags a P-frame as a sync sample: the packet index believes it, a seek lands on
    # it, and the decoder (without the frame's references) would give garbage under the right
    # timestamp. The decoder's own key flag catches it; the read retries with the exact index.
    extra = ["-q:v", "3"] if codec == "mpeg4" else ["-x265-params", "log-level=error:bframes=0"]
    path = videogen.encode(tmp_path / f"forged_{codec}_{threads}.mp4", codec=codec, gop=12, frames=48,
                           size=SMALL, extra=extra)
    videogen.forge_mp4_sync_samples(path, [0, 18, 24, 36])  # 12 is the real keyframe, 18 a P-frame
    ref = ffmpeg_frames(path)
    assert probe(path)["keyframes"] == [0, 18, 24, 36]  # what the container claims
    before = _native.stats()
    idx = [20, 21, 33, 19]
    got = VideoReader(path).get_frames(idx, threads=threads)
    assert_frames_match(got, ref, idx, f"forged {codec}")
    assert _native.stats()["mismatches"] > before["mismatches"]  # the fast route was not trusted
    assert _native.probe_exact(path)["keyframes"] == [0, 12, 24, 36]
