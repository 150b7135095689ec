"""The videos and loaders of a run: the training and test lists, the ClipLoaders both phases use, what
each pass lost or padded, and the ``--short error`` check before a run starts."""

from __future__ import annotations

import os
from typing import Any

import torch

from .. import distributed
from ..datasets import is_list_spec
from ..log import warn
from ..progress import progress_bar
from ..runs.config import RunConfig


def describe_test_data(cfg: RunConfig) -> str:
    """The test videos as the user named them: ``SPEC (split)``, or the list for a ``list:`` spec."""
    spec = cfg.test_data or cfg.data
    return spec if is_list_spec(spec) else f"{spec} ({cfg.test_split})"


def load_lists(cfg: RunConfig):
    """The training and test videos. A ``list:`` spec is one split: its test videos must come from
    ``--test-data`` (evaluating on the training videos by default would report a training score as a
    test score). Both must have the same classes in the same order."""
    from ..datasets import load

    if is_list_spec(cfg.data) and not cfg.test_data:
        raise ValueError(
            f"--data {cfg.data}: a list: file is one split, so there is no test split to evaluate on; give "
            "the held-out videos with --test-data list:TEST_FILE (or --test-data with the same list to "
            "evaluate on the training videos: the results are then labelled as not held out)"
        )
    train = load(cfg.data, cfg.train_split)
    test = load(cfg.test_data or cfg.data, cfg.test_split)
    if len(train) == 0:
        raise ValueError(f"--data {cfg.data}: the {cfg.train_split!r} split has no videos")
    if len(test) == 0:
        raise ValueError(f"--test-data {describe_test_data(cfg)}: no videos")
    if list(train.classes) != list(test.classes):
        only_train = [c for c in train.classes if c not in test.classes]
        only_test = [c for c in test.classes if c not in train.classes]
        why = (f"only in the training data: {only_train[:8]}; only in the test data: {only_test[:8]}"
               if only_train or only_test else "the same names in another order")
        raise ValueError(
            f"--test-data {describe_test_data(cfg)}: its classes differ from the training data's ({why}); "
            "labels would not mean the same class (put one classes.txt beside both lists)"
        )
    return train, test


def test_overlap(train, test) -> int:
    """How many test videos are training videos too."""
    seen = {p for p, _ in train.items}
    return sum(p in seen for p, _ in test.items)


def _read_kwargs(cfg: RunConfig, device: torch.device, *, train: bool) -> dict[str, Any]:
    kw: dict[str, Any] = dict(size=cfg.resize_hw, crop=cfg.size, layout="NCTHW", channels=cfg.channels)
    if train:
        kw.update(crop_mode=cfg.crop_mode, flip="random" if cfg.flip else False)
    else:
        kw.update(crop_mode="center", flip=False)
    if device.type == "cuda":
        kw.update(dtype="uint8")  # normalised on the GPU: 4× fewer bytes to copy
    else:
        kw.update(dtype="float32", mean=list(cfg.mean), std=list(cfg.std))
    return kw


def _loader(cfg: RunConfig, items, device: torch.device, *, train: bool, **kw):
    """The ClipLoader both phases share; ``kw`` holds what differs (sampler, shuffling, clip count)."""
    from ..clips import ClipLoader

    return ClipLoader(
        items,
        clip_len=cfg.frames,
        stride=cfg.stride,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        prefetch=cfg.prefetch,
        threads=cfg.threads,
        short=cfg.short,
        on_error=cfg.on_error,
        return_meta=True,
        **kw,
        **_read_kwargs(cfg, device, train=train),
    )


class WatchedLoader:
    """A ClipLoader (``return_meta=True``) passed through unchanged, counting what each pass over it lost or
    padded: ``skipped`` — ``{path: (clips left out, message)}`` for the unreadable files of the pass
    (``on_error="skip"``) — and ``short`` — the videos whose clips were padded or looped because they are
    shorter than a clip. A clip of a long enough video takes every ``stride``-th frame; any other step
    between its frames means padding.

    Lost clips are counted from the loader's own per-file record (``ClipLoader.skipped``, whose clip counts
    grow over its life) as the difference over the pass, not from the batches: a batch whose every clip
    failed is never yielded, so its losses would not be seen."""

    def __init__(self, loader, stride: int):
        self.loader = loader
        self.stride = int(stride)
        self.skipped: dict[str, tuple[int, str]] = {}
        self.short: set[int] = set()

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def _lost(self) -> dict[str, tuple[int, str]]:
        return {e["path"]: (int(e["clips"]), str(e["error"])) for e in getattr(self.loader, "skipped", ())}

    def __iter__(self):
        before = self._lost()
        self.skipped, self.short = {}, set()
        for batch in self.loader:
            meta = batch[2]
            frames = meta["frames"]
            if frames.shape[1] > 1:
                padded = ((frames[:, 1:] - frames[:, :-1]) != self.stride).any(1)
                self.short.update(int(v) for v in meta["video"][padded])
            yield batch
        for path, (clips, message) in self._lost().items():
            n = clips - before.get(path, (0, ""))[0]
            if n > 0:
                self.skipped[path] = (n, message)

    def counts(self) -> dict[str, int]:
        """``skipped_clips`` and ``short_videos`` of the last pass, summed over DDP ranks."""
        lost = sum(n for n, _ in self.skipped.values())
        t = torch.tensor([lost, len(self.short)], dtype=torch.float64)
        t = distributed.all_reduce_sum(t)
        return {"skipped_clips": int(t[0]), "short_videos": int(t[1])}


class LoaderReports:
    """Warnings for what the loaders lost or padded: each unreadable file named once (each rank names its
    own), short videos once per split with their count."""

    def __init__(self, cfg: RunConfig, main: bool):
        self.cfg = cfg
        self.main = main
        self.bad: dict[str, str] = {}  # path -> first message
        self.short_warned: set[str] = set()

    def all_bad(self) -> list[str]:
        """Every rank's unreadable files, sorted (a collective: every rank must call it)."""
        return sorted({p for bad in distributed.all_gather_object(sorted(self.bad)) for p in bad})

    def __call__(self, watch: WatchedLoader, counts: dict[str, int], what: str, total: int) -> None:
        new = {}
        for path, (_, message) in watch.skipped.items():
            if path not in self.bad:
                self.bad[path] = new[path] = message
        if new:
            shown = [f"{p} ({m})" for p, m in list(new.items())[:20]]
            more = f"; … and {len(new) - 20} more" if len(new) > 20 else ""
            rank = distributed.info().rank
            warn(f"--on-error skip{f' (rank {rank})' if distributed.is_initialized() else ''}: "
                f"{len(new)} unreadable video(s) left out of the {what} clips: " + "; ".join(shown) + more)
        n = counts["short_videos"]
        if n and self.main and what not in self.short_warned:
            self.short_warned.add(what)
            c = self.cfg
            span = (c.frames - 1) * c.stride + 1
            how = {"repeat": "padded by repeating their last frame", "loop": "looped from their start"}.get(
                c.short, c.short
            )
            warn(f"{n} {what} videos (of {total}) are shorter than a clip ({c.frames} frames × stride "
                f"{c.stride} = {span} frames): {how} (--short {c.short}; the count is short_videos in "
                "metrics.jsonl; --short error refuses them)")


def check_short_videos(cfg: RunConfig, lists) -> None:
    """``--short error``: every video shorter than a clip, named in one error before the run starts (the
    loader would stop at the first one, without its name; with ``--on-error skip`` it would leave it out as
    if it were unreadable). Nothing to do for the other ``--short`` policies. With ``--on-error skip`` a
    file that cannot be opened is left to the loader, which skips and names it as unreadable.

    The videos are opened on ``cfg.threads`` threads (probing releases the GIL; the indexes stay cached for
    the loader), with a progress bar on the main process. Every rank of a distributed run checks every
    video, so that all of them stop with the same error instead of some waiting on the others."""
    if cfg.short != "error":
        return
    from concurrent.futures import ThreadPoolExecutor

    from ..clips import VideoReader
    from ..datasets import DatasetError

    span = (cfg.frames - 1) * cfg.stride + 1
    paths = list(dict.fromkeys(path for vl in lists for path, _ in vl.items))

    def frames(path: str) -> int | None:
        try:
            return VideoReader(path).num_frames
        except Exception:
            if cfg.on_error == "raise":
                raise
            return None

    workers = max(1, min(cfg.threads or os.cpu_count() or 1, 16, len(paths) or 1))
    show = cfg.progress and distributed.info().is_main
    with ThreadPoolExecutor(workers, thread_name_prefix="c3d-short-check") as pool:
        counts = list(progress_bar(pool.map(frames, paths), len(paths), "--short error: checking videos", show))
    problems = [f"{p}: {n} frames" for p, n in zip(paths, counts, strict=True) if n is not None and n < span]
    if problems:
        raise DatasetError(
            f"--short error: {len(problems)} video(s) shorter than a clip ({cfg.frames} frames × stride "
            f"{cfg.stride} = {span} frames; --short repeat or loop pads them)",
            problems,
        )


def make_train_loader(cfg: RunConfig, items, device: torch.device):
    drop_last = len(items) * cfg.clips_per_video >= cfg.batch_size * max(1, distributed.info().world_size)
    return _loader(
        cfg, items, device, train=True, sampler=cfg.sampler,
        clips_per_video=cfg.clips_per_video, shuffle=True, drop_last=drop_last,
    )


def make_eval_loader(cfg: RunConfig, items, device: torch.device, clips_per_video: int):
    return _loader(
        cfg, items, device, train=False, sampler="uniform", clips_per_video=clips_per_video,
        shuffle=False, drop_last=False,
    )


# --------------------------------------------------------------------------------------------------
# models


def probe_clips(cfg: RunConfig, items, n: int = 8) -> torch.Tensor:
    """``n`` real training clips (centre clip, centre crop), normalised as the model sees them: (n, 3, T, H, W).
    The weight transfer fits its calibration on them rather than on synthetic noise."""
    step = max(1, len(items) // n)
    picked = list(items)[::step][:n]
    loader = make_eval_loader(cfg, picked, torch.device("cpu"), 1)
    clips = torch.cat([b[0] for b in loader])
    from .engine import prepare_batch

    return prepare_batch(clips, torch.device("cpu"), mean=cfg.mean, std=cfg.std)

