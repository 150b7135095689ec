"""``c3d-distill eval``: a run folder or checkpoint evaluated on a data set split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..log import warn
from ..runs.config import ON_ERROR, SHORT, RunConfig


def evaluate_checkpoint(
    path: str | Path,
    data: str,
    *,
    split: str | None = None,
    teacher: str | Path | None = None,
    clips: int = 10,
    batch_size: int = 16,
    device: str = "cpu",
    amp: bool = False,
    threads: int | None = None,
    progress: bool = True,
    on_error: str = "raise",
    short: str | None = None,
) -> dict[str, Any]:
    """Clip accuracy (top-1, top-5) over ``clips`` uniformly spaced clips per video, video accuracy (softmax
    averaged over them), CE loss, clips/s, and with ``teacher`` the relative pool5 feature error.

    The clip pipeline (resize, crop, normalisation) is the one the run was trained with, read from the
    checkpoint's config.

    ``split``: of the fold (default ``"test"``); a ``list:`` spec is one split and takes none. When the
    videos are the ones the run was trained on (its checkpoint records their fingerprint), a warning says
    so and the result has ``held_out: false``.

    ``on_error="skip"`` leaves the clips of unreadable videos out (named in a warning, counted in
    ``skipped_clips``); ``short`` (default: the run's) says what a video shorter than a clip gives;
    ``short_videos`` counts them.
    """
    from .. import distributed
    from ..datasets import is_list_spec, load, split_of
    from ..runs.model import CLIP_SETTINGS, model_figures, teacher_clip_settings
    from ..runs.source import clip_settings, open_source
    from ..train.data import LoaderReports, WatchedLoader, check_short_videos, make_eval_loader
    from ..train.engine import evaluate
    from ..train.objective import StudentNet, to_channels_last

    if clips < 1:
        raise ValueError(f"--clips: must be at least 1, got {clips}")
    split = split_of(data, split, "--split", None if is_list_spec(data) else "test")  # a list: is its own split
    dev = distributed.resolve_device(device)
    src = open_source(path, option="eval")
    model, meta, ckpt = src.model, src.meta, src.ckpt or {}
    if "config" in ckpt:
        cfg = RunConfig.from_dict(ckpt["config"])
    else:  # a public state dict (its port's preset) or a checkpoint that records no config
        cfg = RunConfig(**{k: meta[k] for k in ("width", "frames", "size")})
        cfg.use_preset(src.preset)
        cfg.stride = src.stride
    if meta["num_classes"] is None:
        raise ValueError(f"eval {path}: the network has no classifier (pool5 features only); fine-tune one "
                         f"with `c3d-distill train --model {meta['name']} --init {path}`")
    if on_error not in ON_ERROR:
        raise ValueError(f"--on-error: {on_error!r} is not one of {ON_ERROR}")
    if short is not None and short not in SHORT:
        raise ValueError(f"--short: {short!r} is not one of {SHORT}")
    cfg.batch_size, cfg.threads, cfg.device, cfg.on_error = batch_size, threads, device, on_error
    if short is not None:
        cfg.short = short
    vids = load(data, split or "train")
    overlap = training_overlap((ckpt.get("inputs") or {}).get("train_data"), vids)
    held_out = None if overlap is None else overlap == 0  # None: unknown (an older checkpoint)
    if overlap:
        where = data if split is None else f"{data} ({split})"
        which = ("these are the videos" if overlap == len(vids)
                 else f"{overlap} of these {len(vids)} videos are videos")
        warn(f"--data {where}: {which} {path} was trained on; the accuracy below is not a held-out "
              "score")
    if len(vids.classes) != meta["num_classes"]:
        raise ValueError(
            f"--data {data}: {len(vids.classes)} classes, but the model was trained for {meta['num_classes']}"
        )
    t_model = None
    if teacher is not None:
        # a public teacher takes the evaluated model's shape (a run's own is compared below)
        tsrc = open_source(teacher, option="--teacher", check_run_shape=False,
                           **{k: meta[k] for k in ("width", "frames", "size")})
        t_model, tmeta, tckpt = tsrc.model, tsrc.meta, tsrc.ckpt
        diffs = [f"{k}={tmeta[k]} but the evaluated model has {k}={meta[k]}"
                 for k in ("width", "frames", "size") if tmeta[k] != meta[k]]
        t_dim, s_dim = getattr(t_model, "feature_dim", None), getattr(model, "feature_dim", None)
        if t_dim != s_dim:
            diffs.append(f"its pool5 features have {t_dim} values, the evaluated model's {s_dim}")
        if diffs:
            raise ValueError(f"--teacher {teacher}: " + "; ".join(diffs)
                             + " (the feature error compares the two models' pool5 features on the same clips)")
        clip = teacher_clip_settings(tckpt) if tckpt is not None else clip_settings(tsrc)
        other = [k for k in CLIP_SETTINGS if clip is not None and clip[k] != _clip_value(cfg, k)]
        if other:
            warn(f"--teacher {teacher}: trained with other clip settings ({', '.join(other)}) than "
                  f"{path}; it sees {path}'s clips here, so the feature error includes that difference")
        t_model.to(dev).eval()
    model.to(dev)
    channels_last = dev.type == "cuda"
    if channels_last:
        to_channels_last(model)
        if t_model is not None:
            to_channels_last(t_model)
    check_short_videos(cfg, [vids])
    loader = WatchedLoader(make_eval_loader(cfg, vids.items, dev, clips), cfg.stride)
    res = evaluate(
        StudentNet(model),
        loader,
        None,
        device=dev,
        mean=cfg.mean,
        std=cfg.std,
        num_videos=len(vids),
        amp=amp,
        channels_last=channels_last,
        teacher=t_model,
        progress=progress,
        desc="eval",
    )
    res.update(loader.counts())
    LoaderReports(cfg, True)(loader, res, "evaluated", len(vids))
    out = {
        "checkpoint": str(path),
        "model": meta["name"],
        "data": data,
        "split": split,
        "held_out": held_out,
        "test_videos_also_in_training": overlap,
        "clips_per_video": clips,
        "epoch": ckpt.get("epoch"),
        **model_figures(model, meta),
        **res,
    }
    return out


def training_overlap(trained_on: dict[str, Any] | None, vids) -> int | None:
    """How many of ``vids`` a run was trained on, from its checkpoint's ``inputs["train_data"]``: all of them
    when the fingerprints match, else counted by the per-video hashes (a video counts when its name under
    the data set's root or its absolute path is among the training videos'); None (unknown) for a
    checkpoint that records neither (older ones only have the whole set's fingerprint)."""
    if not trained_on:
        return None
    if vids.fingerprint()["sha256"] == trained_on.get("sha256"):
        return len(vids)
    hashes = trained_on.get("video_hashes")
    if hashes is None:
        return None
    by_name, by_path = set(hashes), set(trained_on.get("video_path_hashes") or ())
    return sum(a in by_name or b in by_path for a, b in vids.video_hash_pairs())


def _clip_value(cfg: RunConfig, k: str):
    v = getattr(cfg, k)
    return tuple(v) if isinstance(v, list) else v
