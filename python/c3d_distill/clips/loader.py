"""ClipLoader: batches of clips for training, read by ``read_clips`` on a background thread.

Data flow of one epoch (for one rank)::

    items (path, label) ──shuffle(seed, epoch)──► this rank's videos ──► clips_per_video units per video
        ──► batches of batch_size clips ──sample frames(seed, epoch, video)──► read_clips (Rust, GIL released)
        ──► (clips: Tensor (B, ...) in the read_clips layout, labels: LongTensor (B,))

Clips of one video stay next to each other, so ``read_clips`` decodes them in one forward pass.
Everything random is a pure function of ``(seed, epoch, video)`` (frames) or ``(seed, epoch, rank, batch)``
(crop/flip), so a run is reproducible and independent of worker count and prefetch depth.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import pickle
import queue
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..checks import integer
from . import reader
from .samplers import SHORT_POLICIES, center_clip, random_clip, uniform_clips

__all__ = ["ClipLoader"]

log = logging.getLogger(__name__)

SAMPLERS = ("random", "uniform", "center")
READ_KWARGS = ("size", "crop", "crop_mode", "flip", "layout", "dtype", "mean", "std", "stream", "channels")
_SHUTDOWN_WAIT_S = 30.0  # how long close() waits for a read in flight; the thread is a daemon anyway
_POLL_S = 0.05  # how often a blocked producer/consumer re-checks the stop flag


def _resolve_distributed(rank, world_size) -> tuple[int, int]:
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
        else:
            rank = 0 if rank is None else rank
            world_size = 1 if world_size is None else world_size
    world_size = operator.index(world_size)
    rank = operator.index(rank)
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    return rank, world_size


class ClipLoader(IterableDataset):
    """Batches of clips from a list of ``(path, label)`` videos, sampled anew each epoch.

    Iterating yields ``(clips, labels)``: ``clips`` a ``torch.Tensor`` shaped by ``read_clips``
    (default ``layout="NCTHW"``: ``(B, 3, clip_len, H, W)``, ``uint8`` unless ``dtype="float32"``),
    sharing memory with the array Rust wrote (no copy); ``labels`` a ``LongTensor (B,)``. With
    ``return_meta=True`` also ``meta = {"video": LongTensor (B,) index into items, "frames":
    LongTensor (B, clip_len), "skipped": [(video, path, message), ...]}``.

    Sampling: each epoch the videos are shuffled with ``(seed, epoch)`` (same order on every rank), this
    rank takes every ``world_size``-th video starting at ``rank`` (shards are disjoint and, without
    ``drop_last``, cover every video; their sizes differ by at most one video), and each video gives
    ``clips_per_video`` clips drawn by ``sampler`` ("random": independent random clips; "uniform": evenly
    spaced; "center": the middle clip, ``clips_per_video`` must be 1) from ``(seed, epoch, video)``.
    Call ``set_epoch(e)`` before each epoch, as with ``DistributedSampler``. With ``drop_last=True`` every
    rank gets ``len(items) // world_size`` videos (so all ranks step the same number of batches) and the
    last incomplete batch is dropped.

    Reading: ``prefetch`` batches are read ahead by a background thread calling ``read_clips`` (which
    releases the GIL), so the next batch decodes while the model runs; ``prefetch=0`` reads in the
    consumer's thread. ``threads`` is passed to ``read_clips`` (``None``: all cores; inside a DataLoader
    worker ``None`` means 1). ``read_kwargs`` (``size, crop, crop_mode, flip, layout, dtype, mean, std,
    stream, channels``) go to ``read_clips`` unchanged; ``stream`` also picks the stream whose frames are counted. Random crops/flips are seeded per batch from
    ``(seed, epoch, rank, batch)``.

    Errors: ``on_error="raise"`` re-raises a reading error (FileNotFoundError, VideoDecodeError, ...) in
    the consumer; ``"skip"`` leaves failed clips out of their batch (a batch may be smaller; one with no
    clip left is not yielded) and lists every lost clip in its batch's ``meta["skipped"]`` (so a per-epoch
    count of skipped clips sums those). A bad file is logged once for the life of the loader (a warning
    at its first failure, later failures at debug level), and ``self.skipped`` holds one entry per bad
    file: ``{"path", "video", "epoch" (of the first failure), "error" (its message), "clips" (clips lost
    so far, all epochs)}``. Both are per process: DataLoader workers keep their own.

    In ``torch.utils.data.DataLoader`` workers (fork or spawn): pass the loader as the dataset with
    ``batch_size=None`` (or use :meth:`dataloader`); worker ``w`` of ``n`` reads batches ``w, w + n, ...``
    so the DataLoader yields them in the same order as a single process would. ``set_epoch`` reaches the
    workers only if they are started anew each epoch (``persistent_workers=False``, the default).

    ``num_frames`` (optional, one count per item) skips opening each video to count its frames.
    """

    def __init__(
        self,
        items: Sequence[tuple[str | os.PathLike, int]],
        *,
        clip_len: int = 16,
        stride: int = 1,
        sampler: str = "random",
        clips_per_video: int = 1,
        batch_size: int = 16,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        prefetch: int = 2,
        threads: int | None = None,
        short: str = "repeat",
        on_error: str = "raise",
        return_meta: bool = False,
        num_frames: Sequence[int] | None = None,
        **read_kwargs,
    ):
        super().__init__()
        unknown = sorted(set(read_kwargs) - set(READ_KWARGS))
        if unknown:
            raise TypeError(
                f"ClipLoader got unexpected keyword argument(s) {unknown}; read_clips options are {READ_KWARGS}"
            )
        self.items = self._check_items(items)
        self.clip_len = integer(clip_len, "clip_len", minimum=1)
        self.stride = integer(stride, "stride", minimum=1)
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.sampler = sampler
        self.clips_per_video = integer(clips_per_video, "clips_per_video", minimum=1)
        if sampler == "center" and self.clips_per_video != 1:
            raise ValueError(f"clips_per_video must be 1 with sampler='center', got {self.clips_per_video}")
        self.batch_size = integer(batch_size, "batch_size", minimum=1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = integer(seed, "seed", minimum=0)
        self.rank, self.world_size = _resolve_distributed(rank, world_size)
        self.prefetch = integer(prefetch, "prefetch", minimum=0)
        self.threads = None if threads is None else integer(threads, "threads", minimum=1)
        if short not in SHORT_POLICIES:
            raise ValueError(f"short must be one of {SHORT_POLICIES}, got {short!r}")
        self.short = short
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.return_meta = bool(return_meta)
        self.read_kwargs = dict(read_kwargs)
        # Refused here rather than at the first batch.
        if "stream" in self.read_kwargs:
            self.read_kwargs["stream"] = reader._stream(self.read_kwargs["stream"])
        if "channels" in self.read_kwargs:
            reader._channels(self.read_kwargs["channels"])
        self.epoch = 0
        self.skipped: list[dict] = []  # one entry per bad file (see the class docstring)
        self._skipped_by_path: dict[str, dict] = {}  # path -> its entry in self.skipped
        self._num_frames: dict[int, int] = {}
        if num_frames is not None:
            if len(num_frames) != len(self.items):
                raise ValueError(f"num_frames has {len(num_frames)} entries for {len(self.items)} items")
            for i, n in enumerate(num_frames):
                self._num_frames[i] = integer(n, f"num_frames[{i}]", minimum=1)
        if on_error == "raise":
            missing = [p for p, _ in self.items if not os.path.exists(p)]
            if missing:
                more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
                raise FileNotFoundError(f"ClipLoader: {len(missing)} video(s) not found: {missing[:3]}{more}")
        if len(self) == 0:
            raise ValueError(
                f"ClipLoader has no batch for rank {self.rank}: {len(self.items)} videos, world_size="
                f"{self.world_size}, clips_per_video={self.clips_per_video}, batch_size={self.batch_size}, "
                f"drop_last={self.drop_last}"
            )

    @staticmethod
    def _check_items(items) -> list[tuple[str, int]]:
        out = []
        for i, item in enumerate(items):
            try:
                path, label = item
            except (TypeError, ValueError):
                raise ValueError(f"items[{i}] must be a (path, label) pair, got {item!r}") from None
            try:
                path = os.fspath(path)
            except TypeError:
                raise TypeError(f"items[{i}] path must be str or os.PathLike, got {type(path).__name__}") from None
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
                raise TypeError(f"items[{i}] label must be an int, got {type(label).__name__} {label!r}")
            out.append((str(path), int(label)))
        if not out:
            raise ValueError("items is empty")
        return out

    # ---- the plan: which clips go into which batch (pure functions of seed, epoch, rank) ----

    def set_epoch(self, epoch: int) -> None:
        """Sample with ``epoch`` from the next iteration on (shuffle order, frames, crops)."""
        self.epoch = integer(epoch, "epoch", minimum=0)

    def _videos(self, epoch: int) -> np.ndarray:
        n = len(self.items)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        if self.drop_last:
            order = order[: (n // self.world_size) * self.world_size]
        return order[self.rank :: self.world_size]

    def _batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """Batches of ``(video, k)``: the k-th clip of a video; a video's clips are contiguous."""
        units = [(int(v), k) for v in self._videos(epoch) for k in range(self.clips_per_video)]
        bs = self.batch_size
        stop = (len(units) // bs) * bs if self.drop_last else len(units)
        return [units[i : i + bs] for i in range(0, stop, bs)]

    def __len__(self) -> int:
        """Batches per epoch for this rank (all workers together)."""
        n_videos = len(self._videos(0))  # the shard size does not depend on the epoch
        n = n_videos * self.clips_per_video
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _frame_count(self, video: int) -> int:
        n = self._num_frames.get(video)
        if n is None:
            n = int(reader.VideoReader(self.items[video][0], stream=self.read_kwargs.get("stream")).num_frames)
            self._num_frames[video] = n
        return n

    def _video_clips(self, video: int, epoch: int) -> list[list[int]]:
        n = self._frame_count(video)
        if self.sampler == "random":
            rng = np.random.default_rng([self.seed, epoch, video])
            return [random_clip(n, self.clip_len, self.stride, rng=rng, short=self.short)
                    for _ in range(self.clips_per_video)]
        if self.sampler == "uniform":
            return uniform_clips(n, self.clip_len, self.clips_per_video, self.stride, short=self.short)
        return [center_clip(n, self.clip_len, self.stride, short=self.short)]

    def _read_batch(self, epoch: int, index: int, batch: list[tuple[int, int]], threads: int | None):
        """Sample the frames of ``batch`` and read it; ``None`` when every clip failed with "skip"."""
        clips, units, skipped = [], [], []
        cache: dict[int, list[list[int]] | str] = {}  # a video's clips, or why it could not be opened
        for video, k in batch:
            if video not in cache:
                try:
                    cache[video] = self._video_clips(video, epoch)
                except Exception as e:  # counting frames opens the file: same policy as reading
                    if self.on_error == "raise":
                        raise
                    cache[video] = f"{type(e).__name__}: {e}"
            if isinstance(cache[video], str):  # each of its clips is lost, and reported as one
                skipped.append((video, self.items[video][0], cache[video]))
            else:
                clips.append((self.items[video][0], cache[video][k]))
                units.append(video)
        if not clips:
            self._record_skips(epoch, skipped)
            return None
        seed = int(np.random.SeedSequence([self.seed, epoch, self.rank, index]).generate_state(1)[0])
        out = reader.read_clips(clips, seed=seed, threads=threads, on_error=self.on_error, **self.read_kwargs)
        if self.on_error == "skip":
            array, report = out
            for pos, path, message in report["failed"]:
                skipped.append((units[pos], path, message))
            ok = list(report["ok"])
            clips = [clips[i] for i in ok]
            units = [units[i] for i in ok]
        else:
            array = out
        self._record_skips(epoch, skipped)
        if not units:
            return None
        labels = torch.tensor([self.items[v][1] for v in units], dtype=torch.long)
        data = torch.from_numpy(array)
        if not self.return_meta:
            return data, labels
        meta = {
            "video": torch.tensor(units, dtype=torch.long),
            "frames": torch.tensor([c[1] for c in clips], dtype=torch.long).reshape(len(clips), self.clip_len),
            "skipped": skipped,
        }
        return data, labels, meta

    def _record_skips(self, epoch, skipped):
        """Count the lost clips per file; warn at a file's first failure only (a bad file fails again at
        every clip and every epoch: 5% bad files of a UCF101-sized set over 100 epochs would otherwise
        be 66,600 warnings)."""
        for video, path, message in skipped:
            entry = self._skipped_by_path.get(path)
            if entry is None:
                log.warning("ClipLoader skips clips of %s (logged once; later failures at debug level): %s",
                            path, message)
                entry = {"epoch": epoch, "video": video, "path": path, "error": message, "clips": 0}
                self._skipped_by_path[path] = entry
                self.skipped.append(entry)
            else:
                log.debug("ClipLoader skipped another clip of %s (epoch %d): %s", path, epoch, message)
            entry["clips"] += 1

    # ---- iteration ----

    def __iter__(self) -> Iterator:
        epoch = self.epoch
        batches = list(enumerate(self._batches(epoch)))
        threads = self.threads
        info = get_worker_info()
        if info is not None:
            batches = batches[info.id :: info.num_workers]
            if threads is None:
                threads = 1  # the DataLoader already runs one process per worker
        jobs = [(epoch, i, b, threads) for i, b in batches]
        it = _inline(self._read_batch, jobs) if self.prefetch == 0 else _Prefetcher(self._read_batch, jobs,
                                                                                     self.prefetch)
        return it if info is None else _picklable_errors(it)

    def dataloader(self, num_workers: int = 2, **kwargs) -> torch.utils.data.DataLoader:
        """A ``torch.utils.data.DataLoader`` over this loader's batches with ``num_workers`` processes
        (``batch_size=None``: the batches are already made). ``kwargs`` go to the DataLoader
        (e.g. ``multiprocessing_context="spawn"``, ``pin_memory=True``)."""
        return torch.utils.data.DataLoader(self, batch_size=None, num_workers=num_workers, **kwargs)

    def __repr__(self) -> str:
        return (f"ClipLoader({len(self.items)} videos, clip_len={self.clip_len}, stride={self.stride}, "
                f"sampler={self.sampler!r}, clips_per_video={self.clips_per_video}, batch_size={self.batch_size}, "
                f"rank={self.rank}/{self.world_size}, epoch={self.epoch}, batches={len(self)})")


def _picklable_errors(it: Iterator) -> Iterator:
    """In a DataLoader worker, an exception whose class cannot be pickled is lost on its way to the main
    process (the worker then just ends, and the epoch silently comes up short); re-raise such an error as
    a RuntimeError carrying its type and message."""
    try:
        yield from it
    except Exception as e:
        try:
            pickle.dumps(type(e))
        except Exception:
            raise RuntimeError(f"{type(e).__module__}.{type(e).__qualname__}: {e}") from None
        raise
    finally:
        if isinstance(it, _Prefetcher):
            it.close()


def _inline(read: Callable, jobs) -> Iterator:
    for job in jobs:
        out = read(*job)
        if out is not None:
            yield out


def _produce(read: Callable, jobs, q: queue.Queue, stop: threading.Event) -> None:
    """The prefetch thread. Holds no reference to the _Prefetcher, so dropping the iterator frees it
    and its ``__del__`` can stop this thread."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    for job in jobs:
        if stop.is_set():
            return
        try:
            out = read(*job)
        except BaseException as e:  # handed to the consumer, raised there with this traceback
            put(("error", e))
            return
        if out is not None and not put(("batch", out)):
            return
    put(("end", None))


class _Prefetcher:
    """Iterator over batches read ``depth`` ahead by one daemon thread."""

    def __init__(self, read: Callable, jobs, depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(
            target=_produce, args=(read, jobs, self._queue, self._stop), name="ClipLoader-prefetch", daemon=True
        )
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        while True:
            try:
                kind, value = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self.close()
                    raise RuntimeError("ClipLoader prefetch thread ended without a result") from None
        if kind == "batch":
            return value
        self.close()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the prefetch thread and wait for a read in flight to finish (it cannot be interrupted)."""
        self._done = True
        self._stop.set()
        while True:  # free the memory of batches nobody will take
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(_SHUTDOWN_WAIT_S)

    def __del__(self):
        if not getattr(self, "_done", True):
            self.close()
