"""Subcommands ``train`` and ``distill`` of ``c3d-distill``."""

from __future__ import annotations

import argparse

from ..datasets import SPEC_HELP as DATA_HELP
from ..models.presets import PRESETS
from ..runs.config import (
    AMP,
    DEFAULT_MEAN,
    DEFAULT_STD,
    LOSSES,
    ON_ERROR,
    OPTIMIZERS,
    SCHEDULES,
    SHORT,
    RunConfig,
)
from ..runs.recipes import defaults_help
from . import configfile


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train any model with cross-entropy (the teacher)",
        description="Train a model with cross-entropy. Writes RUN_DIR/{config.json, checkpoint.pt, "
        "metrics.jsonl, eval.json}. Under torchrun it runs data-parallel.",
    )
    p.add_argument("--model", default="c3d", help="c3d, sp, sp_bn, mc3, mc4, mc5 (default c3d)")
    p.add_argument(
        "--init",
        metavar="FILE|RUN",
        help="start from these weights instead of random initialisation: a public C3D state dict (the "
        "c3d.pickle or c3d-pretrained.pth layout; --model c3d), a run folder or a run checkpoint of --model. "
        "The network takes its width, clip length, input size and clip pipeline; fc8 is replaced when the "
        "class count differs. Recorded in config.json (init, init_sha256)",
    )
    _common(p)
    configfile.prepare(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "distill",
        help="distil a student from a trained teacher",
        description="Distil a student from a frozen teacher: feature = MSE on pool5 (no labels), "
        "kd = alpha·T²·KL + (1-alpha)·CE, --hints adds the fold-hint losses.",
    )
    p.add_argument("--teacher", required=True, help="teacher: run folder, run checkpoint or public C3D state dict")
    p.add_argument("--student", "--model", dest="model", default="mc4", help="student model (default mc4)")
    p.add_argument(
        "--init",
        default="transfer",
        metavar="{transfer,random,FILE}",
        help="where the student starts: transfer (the teacher's weights, transferred now; default), random, "
        "or FILE, a student written by `c3d-distill transfer --out FILE` (its student, width, frames, size "
        "and classes must be this run's)",
    )
    p.add_argument(
        "--loss",
        choices=[x for x in LOSSES if x != "ce"],
        default=None,
        help="default: feature+kd when the teacher has a classifier for the data's classes (a run, or a "
        "public file with a head for them), feature for a feature teacher (a public file without one)",
    )
    p.add_argument("--hints", action="store_true", help="add fold-hint MSE losses at every matching stage")
    p.add_argument("--hint-weight", type=float, default=1.0)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument(
        "--teacher-cache",
        action="store_true",
        help="cache the teacher's pool5 features and logits per clip, so later epochs skip the teacher "
        "(needs the same clips every epoch: --sampler center or uniform, --crop-mode center --no-flip)",
    )
    p.add_argument(
        "--teacher-cache-mb",
        type=float,
        default=RunConfig().teacher_cache_mb,
        help="memory cap of --teacher-cache in MB (default %(default)g): beyond it no new clip is stored "
        "(those clips run the teacher every epoch; eval.json counts them)",
    )
    _common(p, distill=True)
    configfile.prepare(p)
    p.set_defaults(func=cmd_distill)


def _common(p: argparse.ArgumentParser, *, distill: bool = False) -> None:
    d = RunConfig()
    p.add_argument("--data", required=True, help=DATA_HELP + "; the training videos (--train-split)")
    p.add_argument(
        "--test-data",
        metavar="SPEC",
        help="where the test videos come from when not from --data (its --test-split): needed with "
        "--data list:FILE, which is one split (e.g. --data list:train.txt --test-data list:val.txt)",
    )
    p.add_argument("--out", required=True, help="run folder")
    g = p.add_argument_group("model")
    shape_default = None if distill else argparse.SUPPRESS
    g.add_argument(
        "--width",
        type=float,
        default=shape_default,
        help="channel width multiplier" + (" (default: the teacher's)" if distill else " (default 1)"),
    )
    g.add_argument("--frames", type=int, default=shape_default, help="clip length, a multiple of 16")
    g.add_argument(
        "--size", type=int, default=shape_default, help="crop size (default 112; resize scales with it)"
    )
    g.add_argument("--dropout", type=float, default=None, help=defaults_help("dropout"))
    g.add_argument("--plain", action="store_true", help="plain PyTorch layers instead of the fast paths")
    g = p.add_argument_group("preprocessing (default: " + (
        "the teacher's" if distill else "--init's, else kinetics") + ")")
    g.add_argument(
        "--preprocess",
        metavar="NAME",
        help=f"the clip pipeline by name: {', '.join(PRESETS)}. A public state dict gets its port's "
        "(c3d-pickle or c3d-pretrained, by its key layout) unless this says otherwise; a run's is recorded with it",
    )
    g.add_argument("--mean", type=float, nargs=3, metavar=("C0", "C1", "C2"),
                   help="per-channel mean, in the preset's pixel range and channel order")
    g.add_argument("--std", type=float, nargs=3, metavar=("C0", "C1", "C2"),
                   help="per-channel std, in the preset's pixel range and channel order")
    g.add_argument("--resize", type=int, nargs="+", metavar="SIDE",
                   help="H W: resize frames to this before the crop; one value: the short side (aspect kept)")
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--sampler",
        choices=("random", "uniform", "center"),
        default="random",
        help="how training clips are drawn from each video each epoch: random (a random start per clip, "
        "default), uniform (--clips-per-video evenly spaced clips, the same every epoch) or center (the "
        "middle clip); test clips are always uniform",
    )
    g.add_argument("--clips-per-video", type=int, default=d.clips_per_video)
    g.add_argument(
        "--short",
        choices=SHORT,
        default=d.short,
        help="a video shorter than a clip (frames × stride): repeat its last frame (default), loop it, or "
        "error (all such videos are named before the run starts); the count is reported once and per epoch "
        "(short_videos in metrics.jsonl)",
    )
    g.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default=d.on_error,
        help="an unreadable or corrupt video: raise stops the run (default); skip leaves its clips out, names "
        "the file in a warning and counts the lost clips (skipped_clips in metrics.jsonl)",
    )
    g.add_argument(
        "--stride",
        type=int,
        default=None,
        help="take every STRIDE-th frame of the video into a clip"
        + (" (default: the teacher's)" if distill else f" (default {d.stride})"),
    )
    g.add_argument("--crop-mode", choices=("random", "center"), default=d.crop_mode)
    g.add_argument("--no-flip", dest="flip", action="store_false")
    g.add_argument(
        "--color-permute", action="store_true", help="shuffle the RGB channels of each training clip"
    )
    g.add_argument(
        "--eval-clips", type=int, default=d.eval_clips, help="clips per test video after each epoch"
    )
    g.add_argument("--final-eval-clips", type=int, default=d.final_eval_clips)
    g.add_argument(
        "--train-split",
        default=None,
        help="split of the fold in --data to train on (default train); not for list:FILE, one split",
    )
    g.add_argument(
        "--test-split",
        default=None,
        help="split of the fold in --test-data (or --data) evaluated after each epoch and at the end "
        "(default test; HMDB51 also has unused); not for list:FILE, one split",
    )
    g = p.add_argument_group(
        "optimisation",
        "unset flags come from the run's recipe: fresh (train without --init), finetune (train --init) "
        "or distill; config.json records the recipe and its values",
    )
    g.add_argument("--epochs", type=int, default=None, help=defaults_help("epochs"))
    g.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help=defaults_help("optimizer"))
    g.add_argument("--lr", type=float, default=None, help=defaults_help("lr"))
    g.add_argument("--momentum", type=float, default=None, help="SGD's; " + defaults_help("momentum"))
    g.add_argument("--weight-decay", type=float, default=None, help=defaults_help("weight_decay"))
    g.add_argument("--schedule", choices=SCHEDULES, default=None, help=defaults_help("schedule"))
    g.add_argument("--warmup-epochs", type=float, default=None, help=defaults_help("warmup_epochs"))
    g.add_argument(
        "--step-epochs", type=int, default=None, help="--schedule step: decay every N epochs; " + defaults_help("step_epochs")
    )
    g.add_argument("--gamma", type=float, default=None, help="--schedule step: the factor; " + defaults_help("gamma"))
    g.add_argument(
        "--clip-grad",
        type=float,
        default=None,
        help="clip the gradient norm to this value (0: no clipping); " + defaults_help("clip_grad"),
    )
    g = p.add_argument_group("execution")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument(
        "--amp",
        nargs="?",
        const="bf16",
        choices=AMP,
        default=None,
        help="mixed precision on CUDA (default off; --amp alone means bf16): bf16 autocast, or fp16 autocast "
        "with loss scaling for cards without bf16; ignored on the CPU",
    )
    g.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun on GPUs, BatchNorm statistics over the global batch (SyncBatchNorm; students "
        "with BatchNorm such as sp_bn); default off, each rank normalises its own share",
    )
    g.add_argument(
        "--freeze-bn",
        action="store_true",
        help="BatchNorm layers normalise with their running statistics while training (kept fixed; scale and "
        "shift still learn), as after the weight transfer into sp_bn: the student trains as the function "
        "the transfer built. Default off: each batch's own statistics",
    )
    g.add_argument(
        "--no-tensorboard",
        dest="tensorboard",
        action="store_false",
        help="do not write TensorBoard scalars to RUN_DIR/tensorboard/ (default: written)",
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the trained network")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--threads", type=int, help="decode threads of the loader")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint.pt (from epoch 1 when there is none yet); the "
        "settings, data and teacher must be the run's",
    )
    g.add_argument(
        "--force-resume",
        action="store_true",
        help="--resume even though the training/test videos or the teacher's weights differ from the ones "
        "the checkpoint was trained with (they are compared by fingerprint; what differs is printed)",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in an --out folder that already holds a run (its checkpoint, metrics and "
        "evaluation are removed once the new run's checks pass); without --resume or --overwrite such a "
        "folder is refused",
    )
    g.add_argument(
        "--stop-after", type=int, help="leave after this many epochs (continue later with --resume)"
    )
    g.add_argument("--no-progress", dest="progress", action="store_false")


def config_from_args(args: argparse.Namespace, mode: str) -> RunConfig:
    from ..datasets import split_of
    from ..runs.recipes import FIELDS, apply_recipe

    args, file_fields = configfile.resolve(args, mode)

    test_spec = args.test_data or args.data
    cfg = RunConfig(
        mode=mode,
        model=args.model,
        data=args.data,
        out=args.out,
        train_split=split_of(args.data, args.train_split, "--train-split", "train"),
        test_split=split_of(test_spec, args.test_split, "--test-split", "test"),
        test_data=args.test_data,
        fast=not args.plain,
        stride=args.stride if args.stride is not None else RunConfig().stride,
        clips_per_video=args.clips_per_video,
        crop_mode=args.crop_mode,
        flip=args.flip,
        color_permute=args.color_permute,
        short=args.short,
        on_error=args.on_error,
        eval_clips=args.eval_clips,
        final_eval_clips=args.final_eval_clips,
        mean=DEFAULT_MEAN,
        std=DEFAULT_STD,
        batch_size=args.batch_size,
        device=args.device,
        amp=args.amp,
        sync_bn=args.sync_bn,
        freeze_bn=args.freeze_bn,
        tensorboard=args.tensorboard,
        compile=args.compile,
        seed=args.seed,
        threads=args.threads,
        progress=args.progress,
    )
    cfg.sampler = args.sampler
    for k, v in file_fields.items():  # config.json fields without a flag (mean, std, resize, ...)
        setattr(cfg, k, v)
    for k in ("width", "frames", "size"):
        v = getattr(args, k, None)
        if v is not None:
            setattr(cfg, k, v)
            cfg.extra[f"{k}_given"] = True
    if args.stride is not None:
        cfg.extra["stride_given"] = True
    if args.preprocess is not None and args.preprocess not in PRESETS:
        raise ValueError(f"--preprocess: unknown preset {args.preprocess!r}; known: {', '.join(PRESETS)}")
    if args.resize is not None and len(args.resize) > 2:
        raise ValueError(f"--resize: expected H W or one short side, got {len(args.resize)} values")
    given = {"name": args.preprocess, "mean": args.mean, "std": args.std, "resize": args.resize}
    if any(v is not None for v in given.values()):
        cfg.extra["preprocess_given"] = given
    if mode == "train" and args.init is not None:
        cfg.init = args.init
    if mode == "distill":
        cfg.teacher = args.teacher
        cfg.init = args.init
        cfg.loss = args.loss or "feature+kd"  # a feature teacher makes the default feature (run.py)
        cfg.extra["loss_given"] = args.loss is not None
        cfg.hints = args.hints
        cfg.hint_weight = args.hint_weight
        cfg.temperature = args.temperature
        cfg.alpha = args.alpha
        cfg.teacher_cache = args.teacher_cache
        cfg.teacher_cache_mb = args.teacher_cache_mb
    apply_recipe(cfg, {k: getattr(args, k) for k in FIELDS})  # after init: it picks the recipe
    return cfg


def _run(args: argparse.Namespace, mode: str) -> int:
    from .. import distributed
    from .run import run

    args, _ = configfile.resolve(args, mode)  # command line over --config FILE over defaults
    cfg = config_from_args(args, mode)
    try:
        result = run(
            cfg,
            resume=args.resume or args.force_resume,
            stop_after=args.stop_after,
            overwrite=args.overwrite,
            force_resume=args.force_resume,
        )
        if result and distributed.is_main():
            print(_summary(result))
    finally:
        distributed.cleanup()
    return 0


def _summary(r: dict) -> str:
    fe = r.get("final_feature_err")
    fe_s = f", feature error {fe:.3f}" if fe is not None else ""
    held = "" if r.get("held_out", True) else " (NOT held out: the test videos include training videos)"
    return (
        f"{r['run']}: {r['model']} ({r['init']}, {r['loss']}) clip acc {r.get('final_top1', float('nan')):.3f}, "
        f"video acc {r.get('final_video_acc', float('nan')):.3f}{fe_s}{held}"
    )


def cmd_train(args: argparse.Namespace) -> int:
    return _run(args, "train")


def cmd_distill(args: argparse.Namespace) -> int:
    return _run(args, "distill")
