"""A whole run from a :class:`RunConfig`: data, model (and teacher), optimiser, the epoch loop with a
checkpoint after every epoch, metrics, and the final evaluation. ``train`` and ``distill`` both end here;
the run folder's files are described in :mod:`c3d_distill.runs.folder`.

:func:`run` reads as the sequence it is: open the folder (checks only), set up the process group, load the
lists, build the networks, the objective and the loaders, restore a resumed run, write the start, train
epoch by epoch, evaluate at the end. Nothing is written before every check has passed.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .. import distributed
from ..log import notice, warn
from ..runs.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    check_compatible,
    load_checkpoint,
    load_weights,
    model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
    state_fingerprint,
)
from ..runs.config import INITS, RunConfig
from ..runs.folder import MetricsLog, RunLock, check_out_folder, prepare_out_folder
from ..runs.model import (
    CLIP_SETTINGS,
    GIVEN_FLAGS,
    build_model,
    model_figures,
    teacher_clip_settings,
)
from ..runs.source import clip_settings, open_source
from .data import (
    LoaderReports,
    WatchedLoader,
    check_short_videos,
    describe_test_data,
    load_lists,
    make_eval_loader,
    make_train_loader,
    probe_clips,
    test_overlap,
)
from .engine import build_optimizer, evaluate, lr_at, train_one_epoch
from .objective import Objective, StudentNet, TeacherCache, to_channels_last, unwrap
from .resume import check_resume_config, check_resume_inputs, settle_init_path
from .stall import check_epoch
from .students import adopt_teacher_clips, build_student, collapsed_teacher


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _holding_run_lock(fn):
    """One run at a time per ``--out``: rank 0 (the process that writes there; under torchrun RANK tells
    it before the process group exists) holds ``RUN_DIR/run.lock`` from before the folder's checks until
    the run returns, fails or is interrupted (see :class:`RunLock`)."""

    @functools.wraps(fn)
    def wrapper(cfg: RunConfig, **kw):
        if not cfg.out or os.environ.get("RANK", "0") != "0":
            return fn(cfg, **kw)
        with RunLock.acquire(Path(cfg.out)):
            return fn(cfg, **kw)

    return wrapper


@_holding_run_lock
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
    out, ckpt, resumed = _open(cfg, resume=resume, overwrite=overwrite, force_resume=force_resume)
    dinfo = distributed.setup(cfg.device)
    distributed.barrier()  # every rank has looked at --out before rank 0 writes into it
    seed_everything(cfg.seed)
    data = _Data.load(cfg)
    nets = _build_networks(cfg, data, resumed, dinfo.device)
    parts = _Parts.build(cfg, data, nets, dinfo)
    start_epoch, step, rows = _restore(cfg, ckpt, resumed, data, nets, parts, force_resume=force_resume)
    if ckpt is None and resume and dinfo.is_main:
        print(f"--resume: no checkpoint in {out} yet, starting from epoch 1")
    if dinfo.is_main:  # every check has passed: only now is the folder created (or a replaced run's removed)
        prepare_out_folder(out, fresh=start_epoch == 0 and not rows)
        cfg.save(out / "config.json")
        if nets.transfer_report is not None:
            (out / "transfer.json").write_text(json.dumps(nets.transfer_report, indent=2, default=float) + "\n")
    distributed.barrier()
    log = MetricsLog(out, rows, enabled=dinfo.is_main, tensorboard=cfg.tensorboard)
    try:
        loop = _Loop(cfg, out, data, nets, parts, log, dinfo)
        loop.epochs(start_epoch, step, stop_after)
        finished = len([r for r in log.rows if r["split"] == "train"]) >= cfg.epochs
        return _final(loop) if finished else {}
    finally:
        log.close()


def _open(cfg: RunConfig, *, resume: bool, overwrite: bool, force_resume: bool):
    """The run folder checked (nothing written), the checkpoint being resumed and its settings."""
    if not cfg.out:
        raise ValueError("--out: a run folder is needed")
    out = Path(cfg.out)
    check_out_folder(out, resume=resume, overwrite=overwrite, force_resume=force_resume)
    ckpt_path = out / CHECKPOINT_NAME
    ckpt = load_checkpoint(ckpt_path, map_location="cpu") if resume and ckpt_path.exists() else None
    resumed = RunConfig.from_dict(ckpt["config"]) if ckpt is not None else None
    cfg.validate(resumed)
    settle_init_path(cfg, resumed)
    return out, ckpt, resumed


@dataclass
class _Data:
    """The run's videos and what it records about them in every checkpoint (``--resume`` checks it, eval
    warns on it; the training videos' hashes let eval count the test videos that were training videos)."""

    train: Any
    test: Any
    overlap: int
    num_classes: int
    inputs: dict[str, Any]

    @classmethod
    def load(cls, cfg: RunConfig) -> _Data:
        train, test = load_lists(cfg)
        overlap = test_overlap(train, test)
        if overlap:
            warn(f"{overlap} of the {len(test)} test videos ({describe_test_data(cfg)}) are training "
                 "videos too: the test accuracy of this run is not a held-out score (eval.json says held_out: "
                 "false)")
        num_classes = cfg.num_classes or len(train.classes)
        if num_classes != len(train.classes):
            raise ValueError(f"--num-classes {cfg.num_classes}: the data set has {len(train.classes)} classes")
        cfg.num_classes = num_classes
        inputs: dict[str, Any] = {
            "train_data": {
                **train.fingerprint(),
                "video_hashes": train.video_hashes(),
                "video_path_hashes": train.video_hashes(absolute=True),
            },
            "test_data": test.fingerprint(),
        }
        return cls(train, test, overlap, num_classes, inputs)


@dataclass
class _Networks:
    model: nn.Module
    meta: dict[str, Any]
    teacher: nn.Module | None = None
    transfer_report: dict | None = None
    channels_last: bool = False


def _build_networks(cfg: RunConfig, data: _Data, resumed: RunConfig | None, device: torch.device) -> _Networks:
    """The trained network (and in distillation the teacher, whose shape and clip settings the run takes),
    on ``device``; the ``--short error`` check runs with the final clip settings."""
    teacher, report = None, None
    if cfg.mode == "distill":
        teacher, model, report = _distill_networks(cfg, data, resumed)
        teacher.to(device)
    else:
        model = _train_network(cfg, data, resumed)
    model.to(device)
    if cfg.sync_bn:
        model = distributed.sync_batchnorm(model, device, distributed.info().world_size)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        to_channels_last(model)
        if teacher is not None:
            to_channels_last(teacher)
    return _Networks(model, cfg.model_meta(data.num_classes), teacher, report, channels_last)


def _keep_resumed_clips(cfg: RunConfig, resumed: RunConfig) -> None:
    """A resumed run reads its clips as it was started (an explicit --stride is compared later); another
    --preprocess/--mean/--std/--resize is refused: the run would change what it computes midway."""
    req = cfg.requested_preset(resumed.preset())
    if req is not None and req.for_crop(resumed.size).to_dict() != resumed.preset().to_dict():
        raise ValueError(f"--resume: {cfg.out} was started with preprocessing {resumed.preset().to_dict()}; "
                         f"--preprocess/--mean/--std/--resize ask for {req.for_crop(resumed.size).to_dict()}. "
                         "Start a new --out folder instead.")
    for k in (*CLIP_SETTINGS, "preprocess", "init_sha256"):
        if not (k == "stride" and cfg.extra.get("stride_given")):
            setattr(cfg, k, getattr(resumed, k))


def _train_network(cfg: RunConfig, data: _Data, resumed: RunConfig | None) -> nn.Module:
    """``train``: the network from random initialisation, or from ``--init`` (a run or a public C3D state
    dict: its shape and clip pipeline, its weights; the classifier replaced when the classes differ)."""
    src = None
    if resumed is not None:
        _keep_resumed_clips(cfg, resumed)
    elif cfg.init not in INITS:
        src = _init_source(cfg)
        base = src.preset
        cfg.init_sha256 = src.sha256()
    else:
        base = cfg.preset()
    if resumed is None:
        req = cfg.requested_preset(base)
        if req is not None and src is not None and src.kind == "run":
            notice(f"--init {cfg.init}: trained on clips made with {base.to_dict()}; this run reads them with "
                   f"{req.for_crop(cfg.size).to_dict()} as asked")
        cfg.use_preset(req or base)
    for k in GIVEN_FLAGS:
        cfg.extra.pop(k, None)
    cfg.extra.pop("preprocess_given", None)
    check_short_videos(cfg, [data.train, data.test])
    model = build_model(cfg.model_meta(data.num_classes), fast=cfg.fast)
    if src is not None:
        _load_init(model, src, cfg.init)
    return model


def _init_source(cfg: RunConfig):
    given = {k: getattr(cfg, k) for k in ("width", "frames", "size") if cfg.extra.get(f"{k}_given")}
    src = open_source(cfg.init, option="--init", fast=False, **given)
    if src.meta["name"] != cfg.model:
        what = "a public C3D state dict" if src.kind == "public" else f"a {src.meta['name']!r} run"
        hint = (f"; a {cfg.model!r} starts from C3D's weights with `c3d-distill distill --teacher {cfg.init} "
                f"--student {cfg.model}` or `c3d-distill transfer`" if src.kind == "public" else "")
        raise ValueError(f"--init {cfg.init}: {what}, not a {cfg.model!r} network (--model {cfg.model}){hint}")
    cfg.width, cfg.frames, cfg.size = src.meta["width"], src.meta["frames"], src.meta["size"]
    if src.kind == "run":
        cfg.stride = cfg.stride if cfg.extra.get("stride_given") else src.stride
    return src


def _load_init(model: nn.Module, src, path: str) -> None:
    """``src``'s weights into ``model``; fc8 with another class count keeps its initialisation (said once)."""
    own, theirs = model.state_dict(), src.model.state_dict()
    skipped = [k for k, v in theirs.items() if k.startswith("fc8.") and k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in theirs and not k.startswith("fc8.")]
    if missing:
        raise ValueError(f"--init {path}: lacks {', '.join(missing[:8])} of the {cfg_name(model)} network")
    with torch.no_grad():
        for k, v in theirs.items():
            if k in own and k not in skipped:
                own[k].copy_(v)
    if skipped or (model.num_classes is not None and "fc8.weight" not in theirs):
        classes = src.meta["num_classes"]
        notice(f"--init {path}: its classifier has {classes if classes is not None else 'no'} classes, this "
               f"data {model.num_classes}: fc8 starts from random initialisation, the rest from the file")


def cfg_name(model: nn.Module) -> str:
    return repr(getattr(model, "name", type(model).__name__))


def _distill_networks(cfg: RunConfig, data: _Data, resumed: RunConfig | None):
    given = {k: getattr(cfg, k) for k in ("width", "frames", "size") if cfg.extra.get(f"{k}_given")}
    tsrc = open_source(cfg.teacher, option="--teacher", num_classes=data.num_classes, check_run_shape=False,
                       **given)  # a public file takes its shape from these; a run's is compared below
    teacher, tmeta, tckpt = tsrc.model, dict(tsrc.meta), tsrc.ckpt
    data.inputs["teacher"] = {
        "path": str(cfg.teacher),
        "epoch": tckpt.get("epoch") if tckpt is not None else None,
        "sha256": state_fingerprint(model_state(tckpt) if tckpt is not None else teacher.state_dict()),
    }
    if tsrc.kind == "public" and tmeta["num_classes"] is None:
        if cfg.loss != "feature" and not cfg.extra.get("loss_given", True):
            cfg.loss = "feature"  # the default for a teacher without a classifier for these classes
        if cfg.loss != "feature":
            raise ValueError(
                f"--loss {cfg.loss}: kd needs the teacher's logits for these {data.num_classes} classes, and "
                f"--teacher {cfg.teacher} has {'a classifier for other classes' if tsrc.head_dropped else 'no classifier'}"
                "; use --loss feature (pool5 features only), or fine-tune it first (`c3d-distill train --model "
                f"c3d --init {cfg.teacher}`) and distil from that run"
            )
        warn(f"--teacher {cfg.teacher}: a feature teacher (no classifier for these {data.num_classes} classes): "
             "the student learns its pool5 features; its classifier is not trained by --loss feature, so its "
             "accuracy means nothing until it is (`c3d-distill train --model "
             f"{cfg.model} --init {cfg.out}`)")
        tmeta["num_classes"] = data.num_classes
    elif tmeta["num_classes"] != data.num_classes:
        raise ValueError(
            f"--teacher {cfg.teacher}: trained for {tmeta['num_classes']} classes, the data has {data.num_classes}"
        )
    for k in ("width", "frames", "size"):
        if getattr(cfg, k) != tmeta[k] and cfg.extra.get(f"{k}_given"):
            raise ValueError(
                f"--{k} {getattr(cfg, k)}: the teacher was trained with {k}={tmeta[k]}; feature "
                "distillation needs the same"
            )
    cfg.width, cfg.frames, cfg.size = tmeta["width"], tmeta["frames"], tmeta["size"]
    if resumed is None:
        req = cfg.requested_preset(tsrc.preset)
        if req is not None and tsrc.kind == "run":
            raise ValueError(f"--preprocess/--mean/--std/--resize: --teacher {cfg.teacher} is a run, trained on "
                             f"clips made with {tsrc.preset.to_dict()}; a student learns from the teacher's view "
                             "of the clips it was trained on (leave these options out)")
        if req is not None:
            tsrc.preset = req.for_crop(cfg.size)
        adopt_teacher_clips(cfg, teacher_clip_settings(tckpt) if tckpt is not None else clip_settings(tsrc))
    else:  # the run keeps the clip settings it was started with (an explicit --stride is compared)
        _keep_resumed_clips(cfg, resumed)
    for k in GIVEN_FLAGS:
        cfg.extra.pop(k, None)
    cfg.extra.pop("preprocess_given", None)
    if cfg.preprocess is None and resumed is None:  # a teacher whose run recorded no preset: its fields
        cfg.use_preset(cfg.preset())
    check_short_videos(cfg, [data.train, data.test])  # with the teacher's frames and stride
    probe = probe_clips(cfg, data.train.items)
    why = collapsed_teacher(teacher, probe)
    if why:
        # Not an error (a pipeline test may distil any teacher), but nothing can be learnt from it.
        warn(f"--teacher {cfg.teacher}: {why}; distillation has nothing to learn from it "
             "(was its training stable? see its metrics.jsonl)")
    if cfg.init != "transfer":
        probe = None  # calibration clips are for the weight transfer only
    seed_everything(cfg.seed)
    model, report = build_student(
        cfg, teacher, tmeta, probe, teacher_sha256=data.inputs["teacher"]["sha256"], resumed=resumed is not None
    )
    return teacher, model, report


@dataclass
class _Parts:
    """What the loop works with besides the networks: the objective and its caches, the optimiser, the
    watched loaders and the warnings about what they lost."""

    objective: Objective
    optimizer: torch.optim.Optimizer
    cache: TeacherCache | None
    eval_cache: TeacherCache | None
    train_loader: WatchedLoader
    test_loader: WatchedLoader
    reports: LoaderReports
    steps_per_epoch: int
    scaler: torch.amp.GradScaler | None = None  # --amp fp16 on CUDA: loss scaling

    @classmethod
    def build(cls, cfg: RunConfig, data: _Data, nets: _Networks, dinfo) -> _Parts:
        hint_pairs = None
        if cfg.hints:
            from ..transfer import fold_hint_pairs

            hint_pairs = fold_hint_pairs(nets.teacher, nets.model)
        crop_key = ("center", cfg.size, cfg.resize_hw)
        cache = (
            TeacherCache(crop_key=crop_key, max_bytes=int(cfg.teacher_cache_mb * 2**20)) if cfg.teacher_cache else None
        )
        eval_cache = cache
        if nets.teacher is not None and cache is None and cfg.eval_cache:
            per_clip = 4 * (unwrap(nets.teacher).feature_dim + data.num_classes)
            if per_clip * len(data.test) * (cfg.eval_clips + cfg.final_eval_clips) <= 2**30:
                eval_cache = TeacherCache(crop_key=crop_key, max_bytes=2**30)
        objective = Objective(
            cfg.loss,
            teacher=nets.teacher,
            hint_pairs=hint_pairs,
            hint_weight=cfg.hint_weight,
            temperature=cfg.temperature,
            alpha=cfg.alpha,
            cache=cache,
            amp=cfg.amp,
        )
        optimizer = build_optimizer(nets.model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
        device = dinfo.device
        train_loader = WatchedLoader(make_train_loader(cfg, data.train.items, device), cfg.stride)
        test_loader = WatchedLoader(make_eval_loader(cfg, data.test.items, device, cfg.eval_clips), cfg.stride)
        steps_per_epoch = len(train_loader)
        if steps_per_epoch == 0:
            raise ValueError(
                f"--batch-size {cfg.batch_size}: larger than the training split ({len(data.train)} videos)"
            )
        if cfg.amp and device.type != "cuda":
            notice(f"--amp {cfg.amp}: ignored on the {device.type} (autocast is used on CUDA only); the run "
                   "computes in float32")
        scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" and device.type == "cuda" else None
        return cls(objective, optimizer, cache, eval_cache, train_loader, test_loader,
                   LoaderReports(cfg, dinfo.is_main), steps_per_epoch, scaler)


def _restore(cfg, ckpt, resumed, data: _Data, nets: _Networks, parts: _Parts, *, force_resume: bool):
    """``(first epoch, step, metrics rows)``: from the checkpoint being resumed, after checking that it was
    made with these settings and inputs; ``(0, 0, [])`` for a fresh start."""
    if ckpt is None or resumed is None:
        return 0, 0, []
    src = Path(cfg.out) / CHECKPOINT_NAME
    check_resume_config(resumed, cfg, src)
    check_resume_inputs(ckpt.get("inputs"), data.inputs, src, force=force_resume)
    check_compatible(ckpt, nets.meta, source=str(src))
    load_weights(nets.model, model_state(ckpt), source=str(src))
    parts.optimizer.load_state_dict(ckpt["optimizer"])
    if parts.scaler is not None and ckpt.get("scaler"):
        parts.scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    return int(ckpt["epoch"]), int(ckpt["scheduler"]["step"]), list(ckpt["metrics"])


class _Loop:
    """The epochs of a run: train, evaluate on the test split, log, checkpoint."""

    def __init__(self, cfg: RunConfig, out: Path, data: _Data, nets: _Networks, parts: _Parts, log: MetricsLog, dinfo):
        self.cfg, self.out, self.data, self.nets, self.parts, self.log, self.dinfo = (
            cfg, out, data, nets, parts, log, dinfo
        )
        net: nn.Module = StudentNet(
            nets.model, stages=parts.objective.wants_stages, logits_grad=parts.objective.logits_grad
        )
        if cfg.compile:
            net = torch.compile(net)
        self.net = distributed.wrap_ddp(net, dinfo.device)
        self.name = out.name
        rows = log.rows
        self.t0 = time.perf_counter() - (rows[-1]["time_total"] if rows and "time_total" in rows[-1] else 0.0)
        self.progress = cfg.progress and dinfo.is_main
        self.norm = dict(mean=cfg.mean, std=cfg.std)

    def lr(self, s: int) -> float:
        c = self.cfg
        return lr_at(
            s,
            base_lr=c.lr,
            total_steps=self.parts.steps_per_epoch * c.epochs,
            steps_per_epoch=self.parts.steps_per_epoch,
            schedule=c.schedule,
            warmup_epochs=c.warmup_epochs,
            step_epochs=c.step_epochs,
            gamma=c.gamma,
        )

    def evaluate(self, loader: WatchedLoader, what: str) -> dict[str, Any]:
        res = evaluate(
            self.net,
            loader,
            self.parts.objective,
            device=self.dinfo.device,
            num_videos=len(self.data.test),
            amp=self.cfg.amp,
            channels_last=self.nets.channels_last,
            teacher_cache=self.parts.eval_cache,
            progress=self.progress,
            desc=f"{self.name} {what}",
            **self.norm,
        )
        counts = loader.counts()
        self.parts.reports(loader, counts, "test", len(self.data.test))
        return {**res, **counts}

    def epochs(self, start_epoch: int, step: int, stop_after: int | None) -> None:
        cfg, parts, log = self.cfg, self.parts, self.log
        cache_full_reported = False
        for done_now, epoch in enumerate(range(start_epoch, cfg.epochs)):
            if stop_after is not None and done_now >= stop_after:
                break
            parts.train_loader.set_epoch(epoch)
            tr, step = train_one_epoch(
                self.net,
                parts.train_loader,
                parts.objective,
                parts.optimizer,
                device=self.dinfo.device,
                step=step,
                lr_fn=self.lr,
                clip_grad=cfg.clip_grad,
                amp=cfg.amp,
                channels_last=self.nets.channels_last,
                progress=self.progress,
                desc=f"{self.name} {epoch + 1}/{cfg.epochs}",
                color_permute_seed=cfg.seed if cfg.color_permute else None,
                scaler=parts.scaler,
                freeze_bn=cfg.freeze_bn,
                **self.norm,
            )
            tr.update(parts.train_loader.counts())
            parts.reports(parts.train_loader, tr, "training", len(self.data.train))
            te = self.evaluate(parts.test_loader, "test")
            cache = parts.cache
            if cache is not None and cache.not_stored and not cache_full_reported:
                cache_full_reported = True
                warn(f"--teacher-cache: full at {cache.nbytes / 2**20:.0f} MB (--teacher-cache-mb "
                     f"{cfg.teacher_cache_mb:g}); the outputs of {cache.not_stored} clips were not stored, and "
                     "such clips run the teacher every epoch (raise --teacher-cache-mb if memory allows)")
            now = time.perf_counter() - self.t0
            base = {"run": self.name, "model": cfg.model, "epoch": epoch + 1}
            log.add({**base, "split": "train", **tr, "time_total": now})
            log.add({**base, "split": "test", **te, "time_total": now})
            stalled = check_epoch(cfg, epoch + 1, tr, self.data.num_classes)
            if stalled and self.dinfo.is_main:
                warn(f"{self.name}: {stalled}")
            if self.dinfo.is_main:
                save_checkpoint(self.state(step, epoch + 1), self.out / CHECKPOINT_NAME, previous_epoch=epoch)
                if self.progress:
                    _print_epoch(self.name, epoch + 1, cfg.epochs, tr, te)
            distributed.barrier()

    def state(self, step: int, epoch: int) -> dict[str, Any]:
        return {
            "inputs": self.data.inputs,
            "format": FORMAT,
            "model": unwrap(self.nets.model).state_dict(),
            "model_meta": self.nets.meta,
            "optimizer": self.parts.optimizer.state_dict(),
            "scheduler": {"step": int(step)},
            "epoch": int(epoch),
            "config": self.cfg.to_dict(),
            "metrics": list(self.log.rows),
            "rng": rng_state(),
            **({"scaler": self.parts.scaler.state_dict()} if self.parts.scaler is not None else {}),
        }


def _final(loop: _Loop) -> dict[str, Any]:
    """The final evaluation with more clips per video, written to ``eval.json`` and returned."""
    cfg, out, data, nets, parts, log, dinfo = loop.cfg, loop.out, loop.data, loop.nets, loop.parts, loop.log, loop.dinfo
    final_loader = WatchedLoader(
        make_eval_loader(cfg, data.test.items, dinfo.device, cfg.final_eval_clips), cfg.stride
    )
    fin = loop.evaluate(final_loader, "final")
    train_rows = [r for r in log.rows if r["split"] == "train"]
    result: dict[str, Any] = {
        "run": loop.name,
        "mode": cfg.mode,
        "model": cfg.model,
        "init": cfg.init if cfg.mode == "distill" or cfg.init not in INITS else "none",
        "loss": cfg.loss + ("+hints" if cfg.hints else ""),
        "teacher": cfg.teacher,
        "epochs": cfg.epochs,
        **model_figures(nets.model, nets.meta),
        "train_clips_per_s": float(np.median([r["clips_per_s"] for r in train_rows])),
        "eval_clips": cfg.final_eval_clips,
        "test_data": describe_test_data(cfg),
        "test_videos": len(data.test),
        "held_out": data.overlap == 0,
        "test_videos_also_in_training": data.overlap,
        "unreadable_videos": parts.reports.all_bad(),  # left out with --on-error skip (every rank's)
        "device": str(dinfo.device),
        "world_size": dinfo.world_size,
        **{f"final_{k}": v for k, v in fin.items()},
    }
    if parts.cache is not None:
        result["teacher_cache"] = parts.cache.stats()
    if dinfo.is_main:
        (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
        log.add({"run": loop.name, "model": cfg.model, "epoch": cfg.epochs, "split": "final", **fin,
                 "time_total": time.perf_counter() - loop.t0})
    return result


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
