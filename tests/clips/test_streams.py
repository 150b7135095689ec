"""Choosing the video stream of a file with several: ``stream=`` on probe, VideoReader, read_clips and
ClipLoader, checked against ``ffmpeg -map 0:v:N``."""

from __future__ import annotations

import numpy as np
import pytest
import videogen
from c3d_distill import _native
from c3d_distill.clips import VideoReader, probe, read_clips


@pytest.fixture(scope="module")
def two(video_dir):
    return videogen.two_streams(video_dir / "two_streams.mp4", frames=20)


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return np.abs(a.astype(int) - b.astype(int)).mean() <= 1


def test_probe_reads_the_stream_asked_for(two):
    assert (probe(two, stream=0)["width"], probe(two, stream=0)["num_frames"]) == (160, 20)
    one = probe(two, stream=1)
    assert (one["width"], one["height"], one["num_frames"], one["stream"]) == (320, 240, 19, 1)
    best = probe(two)
    assert best["stream"] == 0 and best["width"] == videogen.ffprobe_count(two)["width"]
    assert _native.probe_exact(two, stream=1)["num_frames"] == 19


def test_reader_and_read_clips_decode_either_stream(two):
    for stream, (h, w), n in [(0, (120, 160), 20), (1, (240, 320), 19)]:
        ref = videogen.ffmpeg_frames(two, stream=stream)
        assert len(ref) == n
        r = VideoReader(two, stream=stream)
        assert (r.stream, r.height, r.width, r.num_frames) == (stream, h, w, n)
        idx = [n - 1, 0, 11, 3]
        got = r.get_frames(idx)
        assert got.shape == (4, h, w, 3)
        assert all(close(got[k], ref[i]) for k, i in enumerate(idx))
        batch = read_clips([(two, [2, 3]), (two, [n - 2, n - 1])], size=None, crop=None, layout="NTHWC",
                           stream=stream)
        assert batch.shape == (2, 2, h, w, 3)
        assert close(batch[1, 1], ref[n - 1]) and close(batch[0, 0], ref[2])
    # The default is FFmpeg's choice, the one the ffmpeg command reads.
    np.testing.assert_array_equal(VideoReader(two).get_frames([5]), VideoReader(two, stream=0).get_frames([5]))


def test_each_stream_has_its_own_cached_index(two):
    _native.clear_cache()
    probe(two, stream=0)
    probe(two, stream=1)
    assert _native.cache_len() == 2
    # The second stream's index does not answer for the first: frame 19 exists only in stream 0.
    assert VideoReader(two, stream=0).get_frames([19]).shape == (1, 120, 160, 3)
    with pytest.raises(ValueError, match="out of range"):
        read_clips([(two, [19])], size=None, crop=None, stream=1)


def test_a_stream_beyond_the_file_names_the_file_and_the_stream(two, h264_mp4):
    for call in (lambda: probe(two, stream=2), lambda: VideoReader(two, stream=2),
                 lambda: read_clips([(two, [0])], stream=2), lambda: VideoReader(h264_mp4, stream=1)):
        with pytest.raises(ValueError, match=r"^stream: .* out of range") as e:
            call()
        assert "two_streams.mp4" in str(e.value) or str(h264_mp4) in str(e.value)
    # With on_error="skip" only the clips of the file without that stream are left out.
    batch, report = read_clips([(h264_mp4, [0]), (two, [0])], size=None, crop=None, stream=1, on_error="skip")
    assert report["ok"] == [1] and batch.shape == (1, 3, 1, 240, 320)
    assert report["failed"][0][0] == 0 and "stream" in report["failed"][0][2]


@pytest.mark.parametrize("bad", [-1, 1.0, True, "0", 2**70])
def test_bad_stream_values_name_the_argument(two, bad):
    for call in (lambda: probe(two, stream=bad), lambda: VideoReader(two, stream=bad),
                 lambda: read_clips([(two, [0])], stream=bad)):
        with pytest.raises(ValueError, match="^stream"):
            call()


def test_clip_loader_reads_the_stream_asked_for(two):
    from c3d_distill.clips import ClipLoader, center_clip

    loader = ClipLoader([(two, 0)], clip_len=3, batch_size=1, sampler="center", size=None, crop=None,
                        layout="NTHWC", stream=1, prefetch=0, return_meta=True)
    clips, _labels, meta = next(iter(loader))
    assert clips.shape == (1, 3, 240, 320, 3)
    # The middle of stream 1's 19 frames, not of stream 0's 20.
    assert meta["frames"][0].tolist() == list(center_clip(19, 3)) != list(center_clip(20, 3))
    with pytest.raises(ValueError, match="^stream"):
        ClipLoader([(two, 0)], stream=-1)
