"""Clip samplers: exact arithmetic, seeding, short-video policies, argument errors."""

from __future__ import annotations

import numpy as np
import pytest
from c3d_distill.clips import center_clip, dense_clips, random_clip, uniform_clips
from c3d_distill.clips.samplers import clip_span
from hypothesis import given, settings
from hypothesis import strategies as st

frames = st.integers(1, 400)
lens = st.integers(1, 40)
strides = st.integers(1, 5)
policies = st.sampled_from(["repeat", "loop"])


def _is_regular(clip, stride):
    return all(b - a == stride for a, b in zip(clip, clip[1:], strict=False))


@settings(max_examples=300, deadline=None)
@given(frames, lens, strides, st.integers(0, 2**32 - 1), policies)
def test_random_clip_in_range_and_regular(n, clip_len, stride, seed, short):
    clip = random_clip(n, clip_len, stride, seed=seed, short=short)
    assert len(clip) == clip_len
    assert all(type(i) is int and 0 <= i < n for i in clip)
    span = clip_span(clip_len, stride)
    if n >= span:
        assert _is_regular(clip, stride)
        assert clip[-1] - clip[0] == span - 1
    else:
        assert clip[0] == 0


def test_random_clip_seeded_and_covers_every_start():
    assert random_clip(100, 16, seed=7) == random_clip(100, 16, seed=7)
    starts = {random_clip(20, 16, seed=s)[0] for s in range(400)}
    assert starts == set(range(5))  # 20 - 16 + 1 valid starts, all reachable, nothing else
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    seq_a = [random_clip(300, 16, 2, rng=rng_a) for _ in range(5)]
    seq_b = [random_clip(300, 16, 2, rng=rng_b) for _ in range(5)]
    assert seq_a == seq_b
    assert len({c[0] for c in seq_a}) > 1  # the generator advances


def test_random_clip_start_is_uniform():
    counts = np.bincount([random_clip(13, 4, 3, seed=s)[0] for s in range(3000)], minlength=4)
    # 13 - 10 + 1 = 4 starts, each expected 750 times; 6 sigma is ~±140
    assert counts.shape == (4,) and counts.min() > 610 and counts.max() < 890


@settings(max_examples=300, deadline=None)
@given(frames, lens, strides, st.integers(1, 30), policies)
def test_uniform_clips_exact(n, clip_len, stride, k, short):
    clips = uniform_clips(n, clip_len, k, stride, short=short)
    assert len(clips) == k and all(len(c) == clip_len for c in clips)
    span = clip_span(clip_len, stride)
    starts = [c[0] for c in clips]
    if n >= span:
        n_starts = n - span + 1
        # middle of each of k equal segments of the valid starts, computed with fractions
        assert starts == [int(np.floor((2 * j + 1) * n_starts / (2 * k) + 1e-9)) for j in range(k)]
        assert starts == sorted(starts) and starts[-1] <= n - span
        assert all(_is_regular(c, stride) for c in clips)
        if k <= n_starts:
            assert len(set(starts)) == k  # no repeats while there are enough starts
    else:
        assert all(c == clips[0] for c in clips)


def test_uniform_and_center_known_values():
    assert [c[0] for c in uniform_clips(100, 16, 3)] == [14, 42, 70]  # 85 starts: 85/6, 3*85/6, 5*85/6
    assert uniform_clips(16, 16, 2) == [list(range(16))] * 2
    assert center_clip(20, 16) == list(range(2, 18))  # 2 frames left out before, 2 after
    assert center_clip(21, 16) == list(range(3, 19))  # 3 before, 2 after
    assert center_clip(100, 4, 10)[0] == 35  # span 31, 70 starts: 35 left out before, 34 after


@settings(max_examples=200, deadline=None)
@given(frames, lens, strides, policies)
def test_center_is_uniform_of_one(n, clip_len, stride, short):
    clip = center_clip(n, clip_len, stride, short=short)
    assert clip == uniform_clips(n, clip_len, 1, stride, short=short)[0]
    span = clip_span(clip_len, stride)
    if n >= span:
        before, after = clip[0], n - 1 - clip[-1]
        assert before - after in (0, 1)


@settings(max_examples=300, deadline=None)
@given(frames, lens, strides, st.one_of(st.none(), st.integers(1, 50)), policies)
def test_dense_clips_every_start(n, clip_len, stride, step, short):
    clips = dense_clips(n, clip_len, stride, step, short=short)
    span = clip_span(clip_len, stride)
    step_ = clip_len * stride if step is None else step
    if n >= span:
        assert [c[0] for c in clips] == list(range(0, n - span + 1, step_))
        assert all(_is_regular(c, stride) and c[-1] < n for c in clips)
        # the next start would not fit
        assert clips[-1][0] + step_ > n - span
    else:
        assert len(clips) == 1 and clips[0][0] == 0


def test_dense_default_tiles_without_overlap():
    clips = dense_clips(50, 4, 3)  # step 12, span 10
    assert clips == [[0, 3, 6, 9], [12, 15, 18, 21], [24, 27, 30, 33], [36, 39, 42, 45]]
    assert dense_clips(20, 16, step=2) == [list(range(s, s + 16)) for s in (0, 2, 4)]


def test_short_video_policies():
    assert random_clip(5, 8, seed=0) == [0, 1, 2, 3, 4, 4, 4, 4]
    assert random_clip(5, 8, seed=0, short="loop") == [0, 1, 2, 3, 4, 0, 1, 2]
    assert center_clip(5, 4, 2) == [0, 2, 4, 4]
    assert center_clip(5, 4, 2, short="loop") == [0, 2, 4, 1]
    assert dense_clips(1, 3) == [[0, 0, 0]]
    for fn in (lambda s: random_clip(5, 8, seed=0, short=s), lambda s: center_clip(5, 8, short=s),
               lambda s: uniform_clips(5, 8, 3, short=s), lambda s: dense_clips(5, 8, short=s)):
        with pytest.raises(ValueError, match=r"num_frames=5.*clip_len=8"):
            fn("error")
    # exactly one span is not short
    assert center_clip(8, 8, short="error") == list(range(8))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: random_clip(0, 16, seed=0), "num_frames"),
        (lambda: random_clip(10, 0, seed=0), "clip_len"),
        (lambda: random_clip(10, 4, -1, seed=0), "stride"),
        (lambda: random_clip(10, 4, 0, seed=0), "stride"),
        (lambda: random_clip(10, 4, seed=-1), "seed"),
        (lambda: random_clip(10, 4), "seed"),
        (lambda: random_clip(10, 4, seed=0, rng=np.random.default_rng()), "seed"),
        (lambda: random_clip(10, 4, seed=0, short="pad"), "short"),
        (lambda: uniform_clips(10, 4, 0), "num_clips"),
        (lambda: uniform_clips(-3, 4, 1), "num_frames"),
        (lambda: center_clip(10, -2), "clip_len"),
        (lambda: dense_clips(10, 4, step=0), "step"),
        (lambda: dense_clips(10, 4, short="wrap"), "short"),
    ],
)
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_wrong_types_are_rejected():
    with pytest.raises(TypeError, match="clip_len"):
        center_clip(10, 2.5)
    with pytest.raises(TypeError, match="num_frames"):
        center_clip(True, 2)
    with pytest.raises(TypeError, match="rng"):
        random_clip(10, 2, rng=np.random.RandomState(0))
    # numpy integers are fine (frame counts often come out of numpy)
    assert center_clip(np.int64(20), np.int32(16)) == list(range(2, 18))
