"""ClipLoader: right frames and labels, per-epoch seeding, disjoint covering shards, the prefetch thread
(overlap, errors, shutdown), skipping broken videos, DataLoader workers with fork and spawn."""

from __future__ import annotations

import gc
import os
import threading
import time

import numpy as np
import psutil
import pytest
import torch
import videogen
from c3d_distill.clips import ClipLoader, VideoDecodeError, center_clip, read_clips, uniform_clips
from c3d_distill.clips import reader as reader_mod
from hypothesis import given, settings
from hypothesis import strategies as st

SMALL = dict(size=None, crop=None, layout="NTHWC", dtype="uint8")  # frames as decoded: exact comparisons


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Six small videos (64×48) of 20–41 frames, MPEG-4 AVI and H.264 MP4."""
    folder = tmp_path_factory.mktemp("loader_videos")
    out = []
    for i, n in enumerate([20, 33, 41, 27, 24, 36]):
        codec, ext = ("mpeg4", "avi") if i % 2 == 0 else ("libx264", "mp4")
        out.append(videogen.encode(folder / f"v{i}.{ext}", codec=codec, size=(64, 48), frames=n, gop=8))
    return out


@pytest.fixture(scope="module")
def frames_of(videos):
    """ffmpeg's own decode of every video: path -> (N, 48, 64, 3) uint8."""
    return {str(p): videogen.ffmpeg_frames(p) for p in videos}


def items_of(videos):
    return [(str(p), 10 + i) for i, p in enumerate(videos)]


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "ClipLoader-prefetch"]


def wait_no_prefetch_threads(timeout=10.0):
    deadline = time.monotonic() + timeout
    while prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    return prefetch_threads()


def collect(loader):
    return [(x.clone(), y.clone(), m) for x, y, m in loader]


def test_batches_hold_the_requested_frames_and_labels(videos, frames_of):
    loader = ClipLoader(items_of(videos), clip_len=5, stride=2, batch_size=4, return_meta=True, **SMALL)
    assert len(loader) == 2  # 6 videos, one clip each, batches of 4
    seen = []
    for x, y, meta in loader:
        assert x.dtype == torch.uint8 and x.shape[1:] == (5, 48, 64, 3)
        assert y.dtype == torch.long and meta["frames"].shape == (x.shape[0], 5)
        for b in range(x.shape[0]):
            v = int(meta["video"][b])
            path, label = loader.items[v]
            assert int(y[b]) == label
            idx = meta["frames"][b].tolist()
            assert idx == list(range(idx[0], idx[0] + 10, 2))
            ref = frames_of[path][idx].astype(np.float32)
            assert np.abs(x[b].numpy().astype(np.float32) - ref).mean() <= 1.0
            seen.append(v)
    assert sorted(seen) == list(range(6))


def test_float_layout_passes_through_to_read_clips(videos):
    mean, std = (0.4, 0.4, 0.4), (0.2, 0.25, 0.3)
    loader = ClipLoader(items_of(videos)[:2], clip_len=4, batch_size=2, shuffle=False, return_meta=True,
                        size=(32, 40), crop=24, dtype="float32", mean=mean, std=std, prefetch=0)
    (x, _, meta), = list(loader)
    assert x.shape == (2, 3, 4, 24, 24) and x.dtype == torch.float32  # NCTHW by default
    clips = [(loader.items[v][0], f) for v, f in zip(meta["video"].tolist(), meta["frames"].tolist(), strict=True)]
    # the loader's crop seed is its own; centre crop does not use it
    want = read_clips(clips, size=(32, 40), crop=24, dtype="float32", mean=mean, std=std)
    np.testing.assert_array_equal(x.numpy(), want)


def test_epochs_are_seeded(videos):
    kw = dict(clip_len=4, batch_size=3, return_meta=True, **SMALL)
    a, b = ClipLoader(items_of(videos), seed=5, **kw), ClipLoader(items_of(videos), seed=5, **kw)
    ea, eb = collect(a), collect(b)
    for (xa, ya, ma), (xb, yb, mb) in zip(ea, eb, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ma["frames"], mb["frames"])
    a.set_epoch(1)
    e1 = collect(a)
    order0 = torch.cat([m["video"] for _, _, m in ea]).tolist()
    order1 = torch.cat([m["video"] for _, _, m in e1]).tolist()
    frames0 = {v: f for _, _, m in ea for v, f in zip(m["video"].tolist(), m["frames"].tolist(), strict=True)}
    frames1 = {v: f for _, _, m in e1 for v, f in zip(m["video"].tolist(), m["frames"].tolist(), strict=True)}
    assert order0 != order1 or frames0 != frames1
    assert sorted(order0) == sorted(order1) == list(range(6))
    a.set_epoch(0)
    again = collect(a)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(ea, again, strict=True))
    with pytest.raises(ValueError, match="epoch"):
        a.set_epoch(-1)


def test_no_shuffle_keeps_item_order(videos):
    loader = ClipLoader(items_of(videos), clip_len=4, batch_size=4, shuffle=False, return_meta=True, **SMALL)
    assert torch.cat([m["video"] for _, _, m in loader]).tolist() == list(range(6))


def test_clips_of_a_video_are_adjacent_and_follow_the_sampler(videos):
    items = items_of(videos)
    loader = ClipLoader(items, clip_len=4, sampler="uniform", clips_per_video=3, batch_size=5, return_meta=True,
                        **SMALL)
    vids = torch.cat([m["video"] for _, _, m in loader]).tolist()
    frames = torch.cat([m["frames"] for _, _, m in loader]).tolist()
    assert len(loader) == 4 and len(vids) == 18
    for i in range(0, 18, 3):
        assert vids[i] == vids[i + 1] == vids[i + 2]
        n = reader_mod.VideoReader(items[vids[i]][0]).num_frames
        assert frames[i : i + 3] == uniform_clips(n, 4, 3)
    center = ClipLoader(items, clip_len=4, sampler="center", batch_size=6, return_meta=True, **SMALL)
    (_, _, meta), = list(center)
    for v, f in zip(meta["video"].tolist(), meta["frames"].tolist(), strict=True):
        assert f == center_clip(reader_mod.VideoReader(items[v][0]).num_frames, 4)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 40), ws=st.integers(1, 6), bs=st.integers(1, 9), k=st.integers(1, 3),
       drop_last=st.booleans(), shuffle=st.booleans(), epoch=st.integers(0, 3))
def test_shards_are_disjoint_and_cover(videos, n, ws, bs, k, drop_last, shuffle, epoch):
    items = [(str(videos[0]), i) for i in range(n)]
    per_rank, lengths = [], []
    for rank in range(ws):
        try:
            loader = ClipLoader(items, batch_size=bs, clips_per_video=k, rank=rank, world_size=ws,
                                drop_last=drop_last, shuffle=shuffle, num_frames=[30] * n)
        except ValueError as e:  # a rank with nothing to do is refused up front
            assert "no batch" in str(e)
            assert (n // ws if drop_last else len(range(rank, n, ws))) * k < (bs if drop_last else 1)
            per_rank.append(None)
            continue
        batches = loader._batches(epoch)
        assert len(batches) == len(loader)
        units = [u for b in batches for u in b]
        assert all(len(b) == bs for b in batches[:-1]) and (not drop_last or len(batches[-1]) == bs)
        per_rank.append(units)
        lengths.append(len(batches))
    videos_per_rank = [{v for v, _ in u} if u is not None else set() for u in per_rank]
    for i in range(ws):
        for j in range(i + 1, ws):
            assert not videos_per_rank[i] & videos_per_rank[j]
    covered = set().union(*videos_per_rank)
    if not drop_last:
        assert covered == set(range(n))
        for u in per_rank:  # every clip of a video, once
            assert u is None or sorted(u) == sorted((v, kk) for v in {v for v, _ in u} for kk in range(k))
    else:
        # every rank steps the same number of full batches, from n // ws videos each
        assert lengths == [((n // ws) * k) // bs] * len(lengths)


def test_rank_defaults_from_torch_distributed(videos, monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
    loader = ClipLoader(items_of(videos), batch_size=1)
    assert (loader.rank, loader.world_size, len(loader)) == (1, 3, 2)
    assert ClipLoader(items_of(videos), batch_size=1, rank=0).rank == 0


def test_prefetch_reads_ahead_while_the_consumer_works(videos, monkeypatch):
    real, reads = reader_mod.read_clips, []

    def slow_read(*a, **k):
        start = time.monotonic()
        out = real(*a, **k)
        reads.append(start)
        return out

    monkeypatch.setattr(reader_mod, "read_clips", slow_read)
    loader = ClipLoader(items_of(videos), clip_len=4, batch_size=1, prefetch=2, **SMALL)
    done = []
    for _ in loader:
        time.sleep(0.15)  # "the model"
        done.append(time.monotonic())
    assert len(reads) == len(done) == 6
    # batch i+1 was already being read while the consumer still worked on batch i
    assert all(reads[i + 1] < done[i] for i in range(5))


def test_prefetch0_and_thread_give_the_same_batches(videos):
    kw = dict(clip_len=4, batch_size=4, seed=3, return_meta=True, crop=24, size=(32, 40), crop_mode="random",
              flip="random")
    a = collect(ClipLoader(items_of(videos), prefetch=0, **kw))
    b = collect(ClipLoader(items_of(videos), prefetch=3, **kw))
    assert len(a) == len(b) == 2
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True))


def test_stopping_early_or_dropping_the_loader_ends_the_thread(videos):
    items = items_of(videos) * 10
    loader = ClipLoader(items, clip_len=4, batch_size=1, prefetch=1, **SMALL)
    for _ in loader:
        break  # the iterator is dropped here
    assert wait_no_prefetch_threads() == []
    it = iter(loader)
    next(it)
    assert prefetch_threads()
    del it, loader
    gc.collect()
    assert wait_no_prefetch_threads() == []
    # explicit close on a live iterator, and a finished one
    loader = ClipLoader(items[:3], clip_len=4, batch_size=1, **SMALL)
    it = iter(loader)
    next(it)
    it.close()
    assert wait_no_prefetch_threads() == [] and list(it) == []
    assert len(list(loader)) == 3 and wait_no_prefetch_threads() == []


def test_reading_errors_reach_the_consumer(videos, broken):
    items = items_of(videos)[:3] + [(str(broken["random"]), 1)]
    loader = ClipLoader(items, clip_len=4, batch_size=2, shuffle=False, **SMALL)
    got = []
    with pytest.raises(VideoDecodeError, match="random.avi"):
        for x, _ in loader:
            got.append(x)
    assert len(got) == 1  # the batch before the broken one came through
    assert wait_no_prefetch_threads() == []
    with pytest.raises(FileNotFoundError, match="nope.avi"):
        ClipLoader([(str(videos[0]), 0), ("/no/such/nope.avi", 1)])


def test_skip_leaves_broken_videos_out_and_reports_them(videos, broken):
    bad = [str(broken[k]) for k in ("random", "empty", "text_as_mp4")]
    items = items_of(videos) + [(p, 99) for p in bad] + [("/no/such/gone.avi", 98)]
    loader = ClipLoader(items, clip_len=4, batch_size=4, on_error="skip", return_meta=True, **SMALL)
    clips, skipped = 0, []
    for x, y, meta in loader:
        assert x.shape[0] == y.shape[0] == meta["video"].shape[0] >= 1
        assert (y != 99).all() and (y != 98).all()
        clips += x.shape[0]
        skipped += meta["skipped"]
    assert clips == 6
    assert sorted(p for _, p, _ in skipped) == sorted(bad + ["/no/such/gone.avi"])
    assert sorted(s["path"] for s in loader.skipped) == sorted(bad + ["/no/such/gone.avi"])
    assert all(s["error"] for s in loader.skipped)


def test_short_videos(videos, five_frames):
    items = [(str(five_frames), 0)]
    (x, _, meta), = list(ClipLoader(items, clip_len=8, batch_size=1, return_meta=True, **SMALL))
    assert meta["frames"].tolist() == [[0, 1, 2, 3, 4, 4, 4, 4]]
    assert torch.equal(x[0, 4], x[0, 7])
    (_, _, meta), = list(ClipLoader(items, clip_len=8, batch_size=1, short="loop", return_meta=True, **SMALL))
    assert meta["frames"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    with pytest.raises(ValueError, match="too short"):
        list(ClipLoader(items, clip_len=8, batch_size=1, short="error", **SMALL))
    skipping = ClipLoader(items + items_of(videos)[:1], clip_len=8, batch_size=2, short="error",
                          on_error="skip", **SMALL)
    (x, y), = list(skipping)
    assert y.tolist() == [10] and "too short" in skipping.skipped[0]["error"]


def _reference(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataloader_workers(videos, method):
    kw = dict(clip_len=4, batch_size=2, size=(32, 40), crop=24, crop_mode="random", seed=1)
    loader = ClipLoader(items_of(videos) * 2, **kw)
    loader.set_epoch(2)
    want = _reference(loader)  # also starts the Rust thread pool in this process before the fork
    # and the 1-thread pool that the workers use (threads=None means 1 in a worker): a pool inherited
    # through fork has no threads behind it, so the workers must not reuse it
    read_clips([(str(videos[0]), [0, 1])], threads=1, size=None, crop=None)
    assert len(want) == 6
    dl = loader.dataloader(num_workers=2, multiprocessing_context=method, timeout=120)
    assert len(dl) == 6
    got = [(x, y) for x, y in dl]
    assert len(got) == len(want)
    for (xa, ya), (xb, yb) in zip(got, want, strict=True):  # same batches, same order
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_dataloader_worker_errors_reach_the_main_process(videos, broken):
    loader = ClipLoader([(str(videos[0]), 0), (str(broken["text"]), 1)], clip_len=4, batch_size=1,
                        shuffle=False, **SMALL)
    with pytest.raises(Exception, match="notes.txt"):
        list(loader.dataloader(num_workers=2, multiprocessing_context="fork", timeout=120))


def test_memory_stays_flat(videos):
    """Thousands of clips through the prefetch thread: resident memory settles instead of growing.
    A leak grows RSS in proportion to the clips read, so the second half of the run must not add what
    the first half did."""
    loader = ClipLoader(items_of(videos) * 20, clip_len=4, batch_size=20, size=(24, 32), crop=None,
                        dtype="float32", prefetch=2)
    proc = psutil.Process(os.getpid())

    def epochs(first, count):
        n = 0
        for e in range(first, first + count):
            loader.set_epoch(e)
            n += sum(x.shape[0] for x, _ in loader)
        return n

    epochs(0, 5)  # warm up: caches, allocator pools
    rss0 = proc.memory_info().rss
    n1 = epochs(5, 25)
    rss1 = proc.memory_info().rss
    n2 = epochs(30, 25)
    rss2 = proc.memory_info().rss
    assert n1 == n2 == 25 * 120
    mib = 2**20
    # the clips read in one half are 3000 × 4×24×32×3 float32 = 110 MB; 1 KiB kept per clip would be 3 MiB
    assert rss2 - rss1 < 3 * mib, (
        f"RSS grew by {(rss1 - rss0) / mib:.1f} MiB, then {(rss2 - rss1) / mib:.1f} MiB per {n2} clips")


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(items=[]), ValueError, "items is empty"),
        (dict(items=[("a.avi",)]), ValueError, r"items\[0\]"),
        (dict(label=1.5), TypeError, "label"),
        (dict(sampler="dense"), ValueError, "sampler"),
        (dict(sampler="center", clips_per_video=2), ValueError, "clips_per_video"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(clip_len=0), ValueError, "clip_len"),
        (dict(rank=2, world_size=2), ValueError, "rank"),
        (dict(world_size=0, rank=0), ValueError, "world_size"),
        (dict(prefetch=-1), ValueError, "prefetch"),
        (dict(on_error="ignore"), ValueError, "on_error"),
        (dict(short="pad"), ValueError, "short"),
        (dict(colour="red"), TypeError, "colour"),
        (dict(num_frames=[3, 4]), ValueError, "num_frames"),
        (dict(batch_size=4, drop_last=True), ValueError, "no batch"),
    ],
)
def test_bad_arguments(videos, kwargs, err, match):
    label = kwargs.pop("label", 0)
    items = kwargs.pop("items", [(str(videos[0]), label)])
    with pytest.raises(err, match=match):
        ClipLoader(items, **kwargs)
