"""Shared fixtures: test videos generated once per test run with the ffmpeg command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/videogen.py

import videogen  # noqa: E402


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def h264_mp4(video_dir) -> Path:
    """H.264 with B-frames, keyframe every 12 frames, 60 frames, 320×240."""
    return videogen.encode(video_dir / "h264_bframes.mp4", codec="libx264", bframes=3, gop=12, frames=60)


@pytest.fixture(scope="session")
def mpeg4_avi(video_dir) -> Path:
    """MPEG-4 part 2 in AVI like UCF101, keyframe every 12 frames, 60 frames, 320×240."""
    return videogen.encode(video_dir / "mpeg4.avi", codec="mpeg4", gop=12, frames=60, extra=["-q:v", "4"])


@pytest.fixture(scope="session")
def five_frames(video_dir) -> Path:
    return videogen.encode(video_dir / "five.mp4", codec="libx264", frames=5, gop=12)


@pytest.fixture(scope="session")
def broken(video_dir, h264_mp4) -> dict[str, Path]:
    return videogen.broken_files(video_dir / "broken", h264_mp4)


@pytest.fixture(scope="session")
def tiny_synth_root(tmp_path_factory) -> Path:
    """A small synthetic action set (3 classes × 8 videos of 64×48, under a second each) for the
    training and distributed tests; read-only, shared by the test run."""
    from c3d_distill.datasets import make_synthetic

    return make_synthetic(
        tmp_path_factory.mktemp("synth") / "set",
        classes=3,
        videos_per_class=8,
        width=64,
        height=48,
        duration=(0.8, 1.0),
        clips_per_group=2,
        workers=1,
        progress=False,
    )


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped, with the reason, where there is none."""
    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in gpu:
        item.add_marker(skip)
