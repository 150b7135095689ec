"""channels="BGR": the channel axis reversed, made by the writer for every layout, dtype and resize route,
with mean/std given in the output order."""

from __future__ import annotations

import numpy as np
import pytest
from c3d_distill.clips import VideoReader, read_clips

CHANNEL_AXIS = {"NCTHW": 1, "NTCHW": 2, "NTHWC": -1}
MEAN = [0.43, 0.39, 0.37]
STD = [0.23, 0.22, 0.21]


@pytest.mark.parametrize("layout", list(CHANNEL_AXIS))
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize("size, crop", [
    ((128, 171), 112),  # odd width: converted in Rust straight into the batch (the fused route)
    ((128, 172), (100, 90)),  # even width: swscale's converter, then the writer
    (None, None),  # no resize: one direct conversion
])
def test_bgr_is_rgb_with_the_channel_axis_reversed(h264_mp4, mpeg4_avi, layout, dtype, size, crop):
    clips = [(h264_mp4, [0, 13, 13, 40]), (mpeg4_avi, [59, 1, 2, 3]), (h264_mp4, [5, 6, 7, 8])]
    norm = dict(mean=MEAN, std=STD) if dtype == "float32" else {}
    kw = dict(size=size, crop=crop, crop_mode="random", flip="random", seed=7, layout=layout, dtype=dtype)
    rgb = read_clips(clips, channels="RGB", **kw, **norm)
    bgr_norm = {k: v[::-1] for k, v in norm.items()}  # the same statistics, in B, G, R order
    bgr = read_clips(clips, channels="BGR", **kw, **bgr_norm)
    assert bgr.shape == rgb.shape and bgr.dtype == rgb.dtype and bgr.flags.c_contiguous
    np.testing.assert_array_equal(bgr, np.flip(rgb, CHANNEL_AXIS[layout]))
    assert not np.array_equal(bgr, rgb)
    np.testing.assert_array_equal(read_clips(clips, **kw, **norm), rgb)  # RGB is the default


def test_mean_and_std_follow_the_output_order(h264_mp4):
    kw = dict(size=None, crop=None, layout="NTHWC", dtype="float32")
    raw = read_clips([(h264_mp4, [3])], channels="BGR", **kw)
    normed = read_clips([(h264_mp4, [3])], channels="BGR", mean=[0.1, 0.2, 0.3], std=[0.5, 1.0, 2.0], **kw)
    for c, (m, s) in enumerate(zip([0.1, 0.2, 0.3], [0.5, 1.0, 2.0], strict=True)):
        np.testing.assert_allclose(normed[..., c], (raw[..., c] - m) / s, rtol=1e-6, atol=1e-6)


def test_reader_gives_bgr_frames(h264_mp4):
    r = VideoReader(h264_mp4)
    for size in (None, (60, 81)):
        np.testing.assert_array_equal(r.get_frames([3, 0], size=size, channels="BGR"),
                                      r.get_frames([3, 0], size=size)[..., ::-1])
    np.testing.assert_array_equal(r.get_frames_at([0.5], channels="BGR"), r.get_frames([12])[..., ::-1])


def test_clip_loader_passes_channels_on(h264_mp4):
    from c3d_distill.clips import ClipLoader

    kw = dict(clip_len=4, batch_size=1, sampler="center", shuffle=False, prefetch=0)
    rgb, _ = next(iter(ClipLoader([(h264_mp4, 0)], **kw)))
    bgr, _ = next(iter(ClipLoader([(h264_mp4, 0)], channels="BGR", **kw)))
    np.testing.assert_array_equal(bgr.numpy(), rgb.numpy()[:, ::-1])
    with pytest.raises(ValueError, match="^channels"):
        ClipLoader([(h264_mp4, 0)], channels="rgb", **kw)


@pytest.mark.parametrize("bad", ["rgb", "RGBA", "", None, 3, ["R", "G", "B"]])
def test_bad_channels_name_the_argument(h264_mp4, bad):
    with pytest.raises(ValueError, match="^channels"):
        read_clips([(h264_mp4, [0])], channels=bad)
    with pytest.raises(ValueError, match="^channels"):
        VideoReader(h264_mp4).get_frames([0], channels=bad)


def test_the_native_module_checks_channels(h264_mp4):
    from c3d_distill import _native

    kw = dict(size=None, short_side=None, crop=None, random_crop=False, flip=0, seed=0, layout="NTHWC",
              dtype="uint8", mean=None, std=None, threads=1, skip=False)
    with pytest.raises(ValueError, match="^channels"):
        _native.read_clips([(str(h264_mp4), [0])], channels="XYZ", **kw)
