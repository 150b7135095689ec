"""A whole run from a :class:`RunConfig`: data, model (and teacher), optimiser, the epoch loop with a
checkpoint after every epoch, metrics, and the final evaluation. ``train`` and ``distill`` both end here.

Run folder::

    RUN_DIR/config.json      the RunConfig
    RUN_DIR/checkpoint.pt    last finished epoch (atomic; see checkpoint.py)
    RUN_DIR/metrics.jsonl    one row per (epoch, split): loss parts, accuracies, clips/s, lr, time
    RUN_DIR/eval.json        final evaluation (clip and video accuracy, feature error, params, GMACs)
    RUN_DIR/transfer.json    distillation with --init transfer: the per-layer transfer report
    RUN_DIR/tb/              TensorBoard events, when tensorboard is installed
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..datasets import is_list_spec
from . import distributed
from .checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    CheckpointError,
    check_compatible,
    load_checkpoint,
    load_weights,
    model_state,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    state_fingerprint,
)
from .config import RunConfig
from .engine import (
    Objective,
    StudentNet,
    TeacherCache,
    build_optimizer,
    evaluate,
    lr_at,
    to_channels_last,
    train_one_epoch,
    unwrap,
)

# Settings that may change between a run and its resumption without changing what it computes. The data
# and teacher paths may change (a moved data set); what they hold is compared by fingerprint instead.
RESUMABLE_CHANGES = {
    "device", "progress", "threads", "prefetch", "out", "extra", "teacher", "data", "test_data",
    "on_error",  # a run stopped by a corrupt video continues with --on-error skip
    "teacher_cache_mb",  # cached outputs are bit-identical to computed ones
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# data


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
    kw: dict[str, Any] = dict(size=cfg.resize_hw, crop=cfg.size, layout="NCTHW")
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
    from ..data import ClipLoader

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
            print(
                f"WARNING: --on-error skip{f' (rank {rank})' if distributed.is_initialized() else ''}: "
                f"{len(new)} unreadable video(s) left out of the {what} clips: " + "; ".join(shown) + more,
                file=sys.stderr,
                flush=True,
            )
        n = counts["short_videos"]
        if n and self.main and what not in self.short_warned:
            self.short_warned.add(what)
            c = self.cfg
            span = (c.frames - 1) * c.stride + 1
            how = {"repeat": "padded by repeating their last frame", "loop": "looped from their start"}.get(
                c.short, c.short
            )
            print(
                f"WARNING: {n} {what} videos (of {total}) are shorter than a clip ({c.frames} frames × stride "
                f"{c.stride} = {span} frames): {how} (--short {c.short}; the count is short_videos in "
                "metrics.jsonl; --short error refuses them)",
                file=sys.stderr,
                flush=True,
            )


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

    from ..data import VideoReader
    from ..datasets import DatasetError
    from .engine import _progress

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
        counts = list(_progress(pool.map(frames, paths), len(paths), "--short error: checking videos", show))
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


def build_model(meta: dict[str, Any], *, fast: bool = True) -> nn.Module:
    from ..models import create_model

    return create_model(
        meta["name"],
        meta["num_classes"],
        width=meta["width"],
        frames=meta["frames"],
        size=meta["size"],
        dropout=meta.get("dropout", 0.5),
        fast=fast,
    )


def load_run_model(path: str | Path, *, map_location="cpu", expected: dict[str, Any] | None = None):
    """The network of a finished (or running) run: ``(model, meta, checkpoint)``.

    ``path`` is a run folder or a checkpoint file written by this package. Errors name the file and cause.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    src = str(resolve_checkpoint(path))
    if ckpt.get("format") != FORMAT or "model_meta" not in ckpt:
        raise CheckpointError(
            f"{src}: not a c3d-distill run checkpoint (no model_meta); a public C3D state dict "
            "loads with models.load_c3d_weights"
        )
    if expected is not None:
        check_compatible(ckpt, expected, source=src)
    meta = ckpt["model_meta"]
    model = build_model(meta)
    load_weights(model, model_state(ckpt), source=src)
    return model, meta, ckpt


# How clips are made: a student distilled from a teacher must see clips made the teacher's way.
CLIP_SETTINGS = ("stride", "resize", "mean", "std")
# Set by the command line for the settings given explicitly (they are not saved with the run).
GIVEN_FLAGS = ("width_given", "frames_given", "size_given", "stride_given")


def teacher_clip_settings(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The clip settings (stride, resize, mean, std) a run checkpoint was trained with, from its config;
    None when it records none (a checkpoint not written by ``train``)."""
    conf = ckpt.get("config")
    if not isinstance(conf, dict):
        return None
    d = RunConfig()
    out: dict[str, Any] = {}
    for k in CLIP_SETTINGS:
        v = conf.get(k, getattr(d, k))
        out[k] = tuple(v) if isinstance(v, list) else v
    return out


def adopt_teacher_clips(cfg: RunConfig, clip: dict[str, Any] | None, *, warn: bool = True) -> None:
    """Make ``cfg``'s clips the teacher's: resize, mean and std always (a teacher fed other pixels is
    another function), stride unless given explicitly — then a different stride is allowed with a warning,
    since it can be right (a data set at another frame rate needs another stride for the same motion)."""
    if clip is None:
        if warn:
            print(
                f"WARNING: --teacher {cfg.teacher}: the checkpoint records no run config, so the clip settings "
                f"(stride {cfg.stride}, resize {cfg.resize_hw}, mean/std) are this run's; make sure the teacher "
                "was trained on clips made the same way",
                file=sys.stderr,
                flush=True,
            )
        return
    if cfg.extra.get("stride_given") and cfg.stride != clip["stride"]:
        if warn:
            print(
                f"WARNING: --stride {cfg.stride}: the teacher was trained with stride {clip['stride']}; it "
                f"will see motion {cfg.stride / clip['stride']:.3g}× as fast as in training (right only if this "
                "data's frame rate differs accordingly)",
                file=sys.stderr,
                flush=True,
            )
    else:
        cfg.stride = clip["stride"]
    cfg.resize, cfg.mean, cfg.std = clip["resize"], clip["mean"], clip["std"]


def _copy_head(student: nn.Module, teacher: nn.Module) -> None:
    for name in ("fc6", "fc7", "fc8"):
        s, t = getattr(student, name, None), getattr(teacher, name, None)
        if s is None or t is None or s.weight.shape != t.weight.shape:
            raise ValueError(
                f"distill: student and teacher heads differ at {name}; feature distillation reuses "
                "the teacher's head"
            )
        s.load_state_dict(t.state_dict())


def probe_clips(cfg: RunConfig, items, n: int = 8) -> torch.Tensor:
    """``n`` real training clips (centre clip, centre crop), normalised as the model sees them: (n, 3, T, H, W).
    The weight transfer fits its calibration on them rather than on synthetic noise."""
    step = max(1, len(items) // n)
    picked = list(items)[::step][:n]
    loader = make_eval_loader(cfg, picked, torch.device("cpu"), 1)
    clips = torch.cat([b[0] for b in loader])
    from .engine import prepare_batch

    return prepare_batch(clips, torch.device("cpu"), mean=cfg.mean, std=cfg.std)


def collapsed_teacher(teacher: nn.Module, probe: torch.Tensor) -> str | None:
    """Why the teacher cannot teach, when its pool5 features are the same for every probe clip (the
    usual sign of a diverged run whose ReLUs all died): None when they differ."""
    net = unwrap(teacher)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        feats = net.features(probe).float()
    net.train(was_training)
    if not torch.isfinite(feats).all():
        return "its pool5 features are not finite"
    spread = (feats - feats[0]).abs().max().item()
    scale = feats.abs().max().item()
    if scale == 0:
        return f"its pool5 features are all zero on {len(probe)} real clips (every ReLU is dead)"
    if spread <= 1e-6 * scale:
        return f"its pool5 features are the same for all {len(probe)} real clips"
    return None


def student_from_file(
    cfg: RunConfig, teacher: nn.Module, tmeta: dict[str, Any], *, teacher_sha256: str | None = None
) -> tuple[nn.Module, dict | None]:
    """``--init FILE``: the student a ``c3d-distill transfer --out FILE`` wrote (or any c3d-distill checkpoint
    of this student). Its model, width, clip length, input size and classes must be this run's: the
    student named by ``--student`` at the teacher's shape. Returns ``(student, its transfer report or None)``."""
    from ..models import create_model

    src = str(resolve_checkpoint(cfg.init))
    ckpt = load_checkpoint(src, map_location="cpu")
    meta = ckpt.get("model_meta")
    if ckpt.get("format") != FORMAT or not isinstance(meta, dict):
        raise CheckpointError(
            f"--init {src}: not a c3d-distill student checkpoint (no model_meta); make one with "
            f"`c3d-distill transfer --teacher {cfg.teacher} --student {cfg.model} --out FILE`"
        )
    want = {"name": cfg.model, "width": tmeta["width"], "frames": tmeta["frames"], "size": tmeta["size"],
            "num_classes": tmeta["num_classes"]}
    diffs = [f"{k}: the file has {meta.get(k)!r}, this run needs {v!r}" for k, v in want.items() if meta.get(k) != v]
    if diffs:
        raise ValueError(
            f"--init {src} does not fit this run (--student {cfg.model} at the teacher's shape): " + "; ".join(diffs)
            + f". Make a matching one with `c3d-distill transfer --teacher {cfg.teacher} --student {cfg.model} "
            "--out FILE`, or use --init transfer"
        )
    made_from = ckpt.get("teacher_sha256")
    if made_from is not None and teacher_sha256 is None:
        teacher_sha256 = state_fingerprint(unwrap(teacher).state_dict())
    if made_from is not None and made_from != teacher_sha256:
        print(f"WARNING: --init {src} was made from another teacher than --teacher {cfg.teacher} (its weights "
              "differ); the student starts from that teacher's approximation", file=sys.stderr, flush=True)
    student = create_model(
        cfg.model, tmeta["num_classes"], width=tmeta["width"], frames=tmeta["frames"], size=tmeta["size"],
        dropout=cfg.dropout, fast=cfg.fast,
    )
    load_weights(student, model_state(ckpt), source=f"--init {src}")
    report = ckpt.get("transfer")
    return student, report if isinstance(report, dict) else None


def build_student(
    cfg: RunConfig,
    teacher: nn.Module,
    tmeta: dict[str, Any],
    probe: torch.Tensor | None = None,
    *,
    teacher_sha256: str | None = None,
    resumed: bool = False,
) -> tuple[nn.Module, dict | None]:
    """The student named ``cfg.model`` at the teacher's width/frames/size, from the teacher's weights
    (``init="transfer"``, calibrated on ``probe`` clips when given), random, or from a student checkpoint
    file (``init=PATH``, see :func:`student_from_file`; not read when ``resumed``: the checkpoint being
    resumed replaces the weights). ``teacher_sha256``: the teacher's weight fingerprint, when known. With ``loss="feature"`` the
    head is the teacher's and stays frozen: the loss never reaches it, and a frozen copy reads the
    teacher's feature space the student learns."""
    from ..models import create_model

    kw = dict(
        width=tmeta["width"], frames=tmeta["frames"], size=tmeta["size"], dropout=cfg.dropout, fast=cfg.fast
    )
    report = None
    if cfg.init not in ("transfer", "random") and not resumed:
        student, report = student_from_file(cfg, teacher, tmeta, teacher_sha256=teacher_sha256)
    elif cfg.init == "transfer":
        from ..transfer import transfer

        student, report = transfer(
            teacher, cfg.model, probe=probe, seed=cfg.seed, num_classes=tmeta["num_classes"], **kw
        )
        if hasattr(report, "to_dict"):
            report = report.to_dict()
        _copy_head(student, teacher)
    else:
        student = create_model(cfg.model, tmeta["num_classes"], **kw)
    if cfg.init != "transfer" and cfg.loss == "feature":
        _copy_head(student, teacher)
    if cfg.loss == "feature":
        for name in ("fc6", "fc7", "fc8"):
            for p in getattr(student, name).parameters():
                p.requires_grad_(False)
    return student, report


# --------------------------------------------------------------------------------------------------
# bookkeeping


class MetricsLog:
    """``metrics.jsonl`` (rank 0) plus TensorBoard when installed. Rows are also kept for checkpoints, so a
    resumed run rewrites the file from its checkpoint and never holds rows of an epoch it redoes."""

    def __init__(self, out: Path, rows: list[dict] | None, enabled: bool):
        self.path = out / "metrics.jsonl"
        self.rows = list(rows or [])
        self.enabled = enabled
        self.tb = None
        if enabled:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
            except ImportError:
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(str(out / "tb"))

    def add(self, row: dict) -> None:
        row = {k: (float(v) if isinstance(v, (np.floating,)) else v) for k, v in row.items()}
        self.rows.append(row)
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("epoch",):
                    self.tb.add_scalar(f"{row['split']}/{k}", v, row["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _settle_init_path(cfg: RunConfig, resumed: RunConfig | None) -> None:
    """``--init FILE`` (or run folder) is recorded as an absolute path. A resumed run keeps the path it was
    started with: the file is not read again (the checkpoint holds the weights), so a path given from
    another working directory, or a file since moved, is no reason to refuse it."""
    from .config import INITS

    if cfg.init in INITS:
        return
    if resumed is not None and resumed.init not in INITS:
        if os.path.abspath(cfg.init) != os.path.abspath(resumed.init) and os.environ.get("RANK", "0") == "0":
            print(f"--resume: --init {cfg.init}: the run started from {resumed.init}; it continues from its "
                  "checkpoint (the file is not read again)", file=sys.stderr, flush=True)
        cfg.init = resumed.init
    else:
        cfg.init = os.path.abspath(cfg.init)


def _check_resume_config(old: RunConfig, new: RunConfig, src: Path) -> None:
    a, b = old.to_dict(), new.to_dict()
    diffs = [f"{k}: {a[k]!r} → {b[k]!r}" for k in a if k not in RESUMABLE_CHANGES and a[k] != b.get(k)]
    if diffs:
        raise ValueError(
            f"--resume: {src} was started with other settings; resuming would not give the same "
            f"run ({'; '.join(diffs)}). Start a new --out folder instead."
        )


INPUT_NAMES = {"train_data": "training videos", "test_data": "test videos", "teacher": "teacher weights"}


def _describe_input(key: str, fp: dict[str, Any] | None) -> str:
    if not fp:
        return "none"
    sha = str(fp.get("sha256", ""))[:12]
    if key == "teacher":
        return f"{fp.get('path')} (epoch {fp.get('epoch')}, sha256 {sha}…)"
    return f"{fp.get('videos')} videos, {fp.get('classes')} classes (sha256 {sha}…)"


def _check_resume_inputs(old: dict[str, Any] | None, new: dict[str, Any], src: Path, *, force: bool) -> None:
    """The data and teacher a checkpoint was trained with against this run's, by fingerprint: resuming
    with others would silently mix two runs. ``force`` (``--force-resume``) continues anyway, with a warning."""
    if not old:
        print(f"--resume: {src} records no data or teacher fingerprints (an older checkpoint); not checked",
              file=sys.stderr, flush=True)
        return
    diffs = [
        f"{what}: checkpoint {_describe_input(k, old.get(k))}, now {_describe_input(k, new.get(k))}"
        for k, what in INPUT_NAMES.items()
        if (old.get(k) or {}).get("sha256") != (new.get(k) or {}).get("sha256")
    ]
    if not diffs:
        return
    if not force:
        raise ValueError(
            f"--resume: {src} was trained on other inputs; resuming would mix two runs ({'; '.join(diffs)}). "
            "Pass --force-resume to continue it anyway, or start a new --out folder."
        )
    print(f"WARNING: --force-resume: {src} was trained on other inputs, continuing anyway ({'; '.join(diffs)})",
          file=sys.stderr, flush=True)


def _model_figures(model: nn.Module, meta: dict) -> dict[str, Any]:
    from ..models import count_macs, count_params

    shape = (1, 3, meta["frames"], meta["size"], meta["size"])
    return {"params": int(count_params(model)), "gmacs": float(count_macs(model, shape)) / 1e9}


# --------------------------------------------------------------------------------------------------
# the run


# What a run writes into its folder; a fresh start removes the ones a previous run left.
RUN_FILES = (CHECKPOINT_NAME, "config.json", "metrics.jsonl", "eval.json", "transfer.json")


def check_out_folder(out: Path, *, resume: bool, overwrite: bool, force_resume: bool = False) -> None:
    """Refuse to start a run in a folder that already holds one, unless told to continue it (``resume``)
    or to replace it (``overwrite``). Reads only: nothing is written or removed here."""
    if (resume or force_resume) and overwrite:
        flag = "--force-resume" if force_resume else "--resume"
        raise ValueError(f"{flag} and --overwrite: choose one (continue the run in --out, or start it again)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    held = [n for n in (CHECKPOINT_NAME, "config.json") if (out / n).exists()]
    if held and not resume and not overwrite:
        raise ValueError(
            f"--out {out}: already holds a run ({', '.join(held)}); pass --resume to continue it, "
            "--overwrite to replace it, or choose another folder"
        )


def prepare_out_folder(out: Path, *, fresh: bool) -> None:
    """Create the run folder; on a fresh start remove what an earlier run left there (its checkpoint,
    metrics, final evaluation, transfer report, TensorBoard log), so nothing stale survives."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    if not fresh:
        return
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    if (out / "tb").is_dir():
        shutil.rmtree(out / "tb")


def run(
    cfg: RunConfig,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    overwrite: bool = False,
    force_resume: bool = False,
) -> dict[str, Any]:
    """Train or distil as ``cfg`` says; returns the final evaluation (rank 0; other ranks get the same).

    ``resume``: continue from ``cfg.out/checkpoint.pt`` when it exists (same results as an uninterrupted run).
    The settings must be the checkpoint's, and the training/test videos and the teacher's weights the same
    (compared by fingerprint); ``force_resume`` continues despite other videos or another teacher.
    ``overwrite``: start again in a folder that holds a run (its files are removed once the settings,
    the data and the teacher have been checked); without it or ``resume`` such a folder is refused.
    ``stop_after``: leave after that many epochs in this call (a pre-emptible job; ``resume`` continues).
    Nothing is written before every check has passed: a refused run leaves no folder behind.
    """
    if not cfg.out:
        raise ValueError("--out: a run folder is needed")
    out = Path(cfg.out)
    check_out_folder(out, resume=resume, overwrite=overwrite, force_resume=force_resume)
    ckpt_path = out / CHECKPOINT_NAME
    ckpt = load_checkpoint(ckpt_path, map_location="cpu") if resume and ckpt_path.exists() else None
    resumed = RunConfig.from_dict(ckpt["config"]) if ckpt is not None else None
    cfg.validate(resumed)
    _settle_init_path(cfg, resumed)
    dinfo = distributed.setup(cfg.device)
    device = dinfo.device
    distributed.barrier()  # every rank has looked at --out before rank 0 writes into it
    seed_everything(cfg.seed)
    train_list, test_list = load_lists(cfg)
    overlap = test_overlap(train_list, test_list)
    if overlap and dinfo.is_main:
        print(
            f"WARNING: {overlap} of the {len(test_list)} test videos ({describe_test_data(cfg)}) are training "
            "videos too: the test accuracy of this run is not a held-out score (eval.json says held_out: "
            "false)",
            file=sys.stderr,
            flush=True,
        )
    num_classes = cfg.num_classes or len(train_list.classes)
    if num_classes != len(train_list.classes):
        raise ValueError(
            f"--num-classes {cfg.num_classes}: the data set has {len(train_list.classes)} classes"
        )
    cfg.num_classes = num_classes
    # What the run learns from, recorded in every checkpoint: --resume checks it, eval warns on it.
    # The training videos' hashes let eval count the test videos that were training videos.
    inputs: dict[str, Any] = {
        "train_data": {
            **train_list.fingerprint(),
            "video_hashes": train_list.video_hashes(),
            "video_path_hashes": train_list.video_hashes(absolute=True),
        },
        "test_data": test_list.fingerprint(),
    }

    teacher = None
    transfer_report = None
    if cfg.mode == "distill":
        teacher, tmeta, tckpt = load_run_model(cfg.teacher, map_location="cpu")
        inputs["teacher"] = {
            "path": str(cfg.teacher),
            "epoch": tckpt.get("epoch"),
            "sha256": state_fingerprint(model_state(tckpt)),
        }
        if tmeta["num_classes"] != num_classes:
            raise ValueError(
                f"--teacher {cfg.teacher}: trained for {tmeta['num_classes']} classes, the data has "
                f"{num_classes}"
            )
        for k in ("width", "frames", "size"):
            if getattr(cfg, k) != tmeta[k] and cfg.extra.get(f"{k}_given"):
                raise ValueError(
                    f"--{k} {getattr(cfg, k)}: the teacher was trained with {k}={tmeta[k]}; feature "
                    "distillation needs the same"
                )
        cfg.width, cfg.frames, cfg.size = tmeta["width"], tmeta["frames"], tmeta["size"]
        if resumed is None:
            adopt_teacher_clips(cfg, teacher_clip_settings(tckpt), warn=dinfo.is_main)
        else:  # the run keeps the clip settings it was started with (an explicit --stride is compared)
            for k in CLIP_SETTINGS:
                if not (k == "stride" and cfg.extra.get("stride_given")):
                    setattr(cfg, k, getattr(resumed, k))
        for k in GIVEN_FLAGS:
            cfg.extra.pop(k, None)
        check_short_videos(cfg, [train_list, test_list])  # with the teacher's frames and stride
        probe = probe_clips(cfg, train_list.items)
        why = collapsed_teacher(teacher, probe)
        if why:
            # Not an error (a pipeline test may distil any teacher), but nothing can be learnt from it.
            print(f"WARNING: --teacher {cfg.teacher}: {why}; distillation has nothing to learn from it "
                  "(was its training stable? see its metrics.jsonl)", file=sys.stderr, flush=True)
        if cfg.init != "transfer":
            probe = None  # calibration clips are for the weight transfer only
        seed_everything(cfg.seed)
        model, transfer_report = build_student(
            cfg, teacher, tmeta, probe, teacher_sha256=inputs["teacher"]["sha256"], resumed=resumed is not None
        )
        teacher.to(device)
    else:
        for k in GIVEN_FLAGS:
            cfg.extra.pop(k, None)
        check_short_videos(cfg, [train_list, test_list])
        model = build_model(cfg.model_meta(num_classes), fast=cfg.fast)
    meta = cfg.model_meta(num_classes)
    model.to(device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        to_channels_last(model)
        if teacher is not None:
            to_channels_last(teacher)

    hint_pairs = None
    if cfg.hints:
        from ..transfer import fold_hint_pairs

        hint_pairs = fold_hint_pairs(teacher, model)
    crop_key = ("center", cfg.size, cfg.resize_hw)
    cache = (
        TeacherCache(crop_key=crop_key, max_bytes=int(cfg.teacher_cache_mb * 2**20)) if cfg.teacher_cache else None
    )
    eval_cache = cache
    if teacher is not None and cache is None and cfg.eval_cache:
        per_clip = 4 * (unwrap(teacher).feature_dim + num_classes)
        if per_clip * len(test_list) * (cfg.eval_clips + cfg.final_eval_clips) <= 2**30:
            eval_cache = TeacherCache(crop_key=crop_key, max_bytes=2**30)
    objective = Objective(
        cfg.loss,
        teacher=teacher,
        hint_pairs=hint_pairs,
        hint_weight=cfg.hint_weight,
        temperature=cfg.temperature,
        alpha=cfg.alpha,
        cache=cache,
        amp=cfg.amp,
    )
    optimizer = build_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)

    train_loader = WatchedLoader(make_train_loader(cfg, train_list.items, device), cfg.stride)
    test_loader = WatchedLoader(make_eval_loader(cfg, test_list.items, device, cfg.eval_clips), cfg.stride)
    reports = LoaderReports(cfg, dinfo.is_main)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(
            f"--batch-size {cfg.batch_size}: larger than the training split ({len(train_list)} videos)"
        )
    total_steps = steps_per_epoch * cfg.epochs

    start_epoch, step, rows = 0, 0, []
    if ckpt is not None and resumed is not None:
        _check_resume_config(resumed, cfg, ckpt_path)
        _check_resume_inputs(ckpt.get("inputs"), inputs, ckpt_path, force=force_resume)
        check_compatible(ckpt, meta, source=str(ckpt_path))
        load_weights(model, model_state(ckpt), source=str(ckpt_path))
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, step, rows = int(ckpt["epoch"]), int(ckpt["scheduler"]["step"]), list(ckpt["metrics"])
        set_rng_state(ckpt["rng"])
    elif resume and dinfo.is_main:
        print(f"--resume: no checkpoint in {out} yet, starting from epoch 1")
    # Every check has passed: only now is the folder created (or a replaced run's files removed).
    if dinfo.is_main:
        prepare_out_folder(out, fresh=start_epoch == 0 and not rows)
        cfg.save(out / "config.json")
        if transfer_report is not None:
            (out / "transfer.json").write_text(json.dumps(transfer_report, indent=2, default=float) + "\n")
    distributed.barrier()

    def lr_fn(s: int) -> float:
        return lr_at(
            s,
            base_lr=cfg.lr,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            schedule=cfg.schedule,
            warmup_epochs=cfg.warmup_epochs,
            step_epochs=cfg.step_epochs,
            gamma=cfg.gamma,
        )

    net: nn.Module = StudentNet(model, stages=objective.wants_stages, logits_grad=objective.logits_grad)
    if cfg.compile:
        net = torch.compile(net)
    net = distributed.wrap_ddp(net, device)
    log = MetricsLog(out, rows, enabled=dinfo.is_main)
    norm = dict(mean=cfg.mean, std=cfg.std)
    run_name = out.name
    t_run = time.perf_counter() - (rows[-1]["time_total"] if rows and "time_total" in rows[-1] else 0.0)
    progress = cfg.progress and dinfo.is_main

    def evaluate_on(loader, what: str) -> dict[str, Any]:
        res = evaluate(
            net,
            loader,
            objective,
            device=device,
            num_videos=len(test_list),
            amp=cfg.amp,
            channels_last=channels_last,
            teacher_cache=eval_cache,
            progress=progress,
            desc=f"{run_name} {what}",
            **norm,
        )
        counts = loader.counts()
        reports(loader, counts, "test", len(test_list))
        return {**res, **counts}

    done_now = 0
    cache_full_reported = False
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after is not None and done_now >= stop_after:
                break
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(epoch)
            tr, step = train_one_epoch(
                net,
                train_loader,
                objective,
                optimizer,
                device=device,
                step=step,
                lr_fn=lr_fn,
                clip_grad=cfg.clip_grad,
                amp=cfg.amp,
                channels_last=channels_last,
                progress=progress,
                desc=f"{run_name} {epoch + 1}/{cfg.epochs}",
                color_permute_seed=cfg.seed if cfg.color_permute else None,
                **norm,
            )
            tr.update(train_loader.counts())
            reports(train_loader, tr, "training", len(train_list))
            te = evaluate_on(test_loader, "test")
            if cache is not None and cache.not_stored and not cache_full_reported and dinfo.is_main:
                cache_full_reported = True
                print(
                    f"WARNING: --teacher-cache: full at {cache.nbytes / 2**20:.0f} MB (--teacher-cache-mb "
                    f"{cfg.teacher_cache_mb:g}); the outputs of {cache.not_stored} clips were not stored, and "
                    "such clips run the teacher every epoch (raise --teacher-cache-mb if memory allows)",
                    file=sys.stderr,
                    flush=True,
                )
            now = time.perf_counter() - t_run
            base = {"run": run_name, "model": cfg.model, "epoch": epoch + 1}
            log.add({**base, "split": "train", **tr, "time_total": now})
            log.add({**base, "split": "test", **te, "time_total": now})
            if dinfo.is_main:
                save_checkpoint(_state(model, meta, optimizer, step, epoch + 1, cfg, log.rows, inputs), ckpt_path)
                if progress:
                    _print_epoch(run_name, epoch + 1, cfg.epochs, tr, te)
            distributed.barrier()
            done_now += 1
        finished = len([r for r in log.rows if r["split"] == "train"]) >= cfg.epochs
        result: dict[str, Any] = {}
        if finished:
            final_loader = WatchedLoader(
                make_eval_loader(cfg, test_list.items, device, cfg.final_eval_clips), cfg.stride
            )
            fin = evaluate_on(final_loader, "final")
            train_rows = [r for r in log.rows if r["split"] == "train"]
            result = {
                "run": run_name,
                "mode": cfg.mode,
                "model": cfg.model,
                "init": cfg.init if cfg.mode == "distill" else "scratch",
                "loss": cfg.loss + ("+hints" if cfg.hints else ""),
                "teacher": cfg.teacher,
                "epochs": cfg.epochs,
                **_model_figures(model, meta),
                "train_clips_per_s": float(np.median([r["clips_per_s"] for r in train_rows])),
                "eval_clips": cfg.final_eval_clips,
                "test_data": describe_test_data(cfg),
                "test_videos": len(test_list),
                "held_out": overlap == 0,
                "test_videos_also_in_training": overlap,
                "unreadable_videos": reports.all_bad(),  # left out with --on-error skip (every rank's)
                "device": str(device),
                "world_size": dinfo.world_size,
                **{f"final_{k}": v for k, v in fin.items()},
            }
            if cache is not None:
                result["teacher_cache"] = cache.stats()
            if dinfo.is_main:
                (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
                log.add(
                    {
                        "run": run_name,
                        "model": cfg.model,
                        "epoch": cfg.epochs,
                        "split": "final",
                        **fin,
                        "time_total": time.perf_counter() - t_run,
                    }
                )
        return result
    finally:
        log.close()


def _state(model, meta, optimizer, step, epoch, cfg, rows, inputs) -> dict[str, Any]:
    return {
        "inputs": inputs,
        "format": FORMAT,
        "model": unwrap(model).state_dict(),
        "model_meta": meta,
        "optimizer": optimizer.state_dict(),
        "scheduler": {"step": int(step)},
        "epoch": int(epoch),
        "config": cfg.to_dict(),
        "metrics": list(rows),
        "rng": rng_state(),
    }


def _print_epoch(name: str, epoch: int, epochs: int, tr: dict, te: dict) -> None:
    def f(d: dict, k: str) -> str:
        v = d.get(k)
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"

    from tqdm.auto import tqdm

    tqdm.write(
        f"{name} epoch {epoch}/{epochs}: train loss {f(tr, 'loss')} acc {f(tr, 'top1')} | test loss "
        f"{f(te, 'loss')} ce {f(te, 'ce')} acc {f(te, 'top1')} video {f(te, 'video_acc')} | "
        f"{tr['clips_per_s']:.1f} clips/s"
    )
