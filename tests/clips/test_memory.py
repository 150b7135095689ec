"""Memory stays flat: thousands of clips through read_clips (and get_frames, and failing clips)
must not make the process's resident memory keep growing."""

from __future__ import annotations

import gc

import numpy as np
import psutil
from c3d_distill.clips import VideoReader, read_clips


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def test_rss_is_flat_over_thousands_of_clips(h264_mp4, mpeg4_avi, five_frames, tmp_path):
    rng = np.random.default_rng(0)
    videos = [(h264_mp4, 60), (mpeg4_avi, 60), (five_frames, 5)]
    missing = tmp_path / "missing.mp4"

    def batch():
        clips = []
        for _ in range(16):
            path, n = videos[rng.integers(len(videos))]
            clips.append((path, np.minimum(rng.integers(0, n) + np.arange(8), n - 1)))
        clips[int(rng.integers(16))] = (missing, range(8))  # one failing clip per batch
        return clips

    def run(n_batches):
        for _ in range(n_batches):
            out, report = read_clips(batch(), size=(32, 43), crop=32, dtype="float32", crop_mode="random",
                                     flip="random", seed=int(rng.integers(1 << 30)), on_error="skip")
            assert out.shape == (15, 3, 8, 32, 32) and len(report["failed"]) == 1
        VideoReader(h264_mp4).get_frames(rng.integers(0, 60, 8), size=(24, 32))

    run(30)  # warm-up: thread pool, caches, allocator arenas
    samples = []
    for _ in range(6):
        run(30)  # 480 clips per sample, ~3,000 in all
        samples.append(rss_mb())
    growth = samples[-1] - samples[0]
    # A leak of even one frame buffer per clip (~4 KB at this size) would show as several MB.
    assert growth < 8, f"RSS grew {growth:.1f} MB over {5 * 30 * 16} clips: {[round(s, 1) for s in samples]}"
