"""One run's settings: a flat dataclass written to ``RUN_DIR/config.json`` and stored in every checkpoint,
so a run can be resumed, evaluated or reported from its folder alone."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..log import warn
from ..models.presets import KINETICS_MEAN, KINETICS_STD, Preset, custom_preset, get_preset

MODES = ("train", "distill")
LOSSES = ("ce", "feature", "kd", "feature+kd")
INITS = ("transfer", "random")  # or the path of a student checkpoint (what `c3d-distill transfer` writes)
OPTIMIZERS = ("sgd", "adamw")
SAMPLERS = ("random", "uniform", "center")
ON_ERROR = ("raise", "skip")  # an unreadable video: stop the run, or leave its clips out (counted, named)
SHORT = ("repeat", "loop", "error")  # a video shorter than a clip: pad with its last frame, loop, or refuse
SCHEDULES = ("cosine", "step", "constant")
AMP = ("bf16", "fp16")  # autocast dtypes on CUDA; fp16 with a gradient scaler (cards without bf16)

# Kinetics-400 statistics as torchvision's video models use them (0-1 scale, RGB): the default preset's.
DEFAULT_MEAN = KINETICS_MEAN
DEFAULT_STD = KINETICS_STD


def default_resize(crop_hw: tuple[int, int]) -> tuple[int, int]:
    """The frame size clips are resized to before a ``crop_hw`` crop: C3D's 128×171 for 112×112, scaled
    with the crop."""
    return (round(crop_hw[0] * 128 / 112), round(crop_hw[1] * 171 / 112))


@dataclass
class RunConfig:
    """Everything that decides what a run computes. ``resize`` follows C3D's 128×171 for a 112 crop and
    scales with ``size`` (the crop) when left at ``None``."""

    mode: str = "train"
    model: str = "c3d"  # the trained network: the teacher in "train", the student in "distill"
    data: str = ""
    out: str = ""
    train_split: str = "train"
    test_split: str = "test"
    # Where the test videos come from when not from ``data`` (needed with a ``list:`` spec, one split).
    test_data: str | None = None
    num_classes: int | None = None  # taken from the data set when None
    # model shape
    width: float = 1.0
    frames: int = 16
    size: int = 112
    resize: tuple[int, int] | int | None = None  # (h, w), or an int: the short side (aspect kept)
    dropout: float = 0.5
    fast: bool = True
    # distillation
    teacher: str | None = None
    init: str = "transfer"
    loss: str = "ce"
    hints: bool = False
    hint_weight: float = 1.0
    temperature: float = 4.0
    alpha: float = 0.9
    teacher_cache: bool = False
    teacher_cache_mb: float = 2048.0  # the training-clip cache stops storing beyond this (it never evicts)
    eval_cache: bool = True  # teacher outputs on the (fixed) evaluation clips, kept when they fit in 1 GiB
    # sampling
    sampler: str = "random"  # training clips: random start per clip, uniform (evenly spaced) or center
    stride: int = 1
    clips_per_video: int = 1
    crop_mode: str = "random"
    flip: bool = True
    color_permute: bool = False  # shuffle RGB per training clip (appearance augmentation)
    eval_clips: int = 1  # uniformly spaced clips per test video during training (curves)
    final_eval_clips: int = 10  # clips per video for the final video accuracy
    mean: tuple[float, float, float] = DEFAULT_MEAN  # in the reader's 0-1 units and ``channels`` order
    std: tuple[float, float, float] = DEFAULT_STD
    channels: str = "RGB"  # the channel order of the clips (BGR for the OpenCV/Caffe-trained weights)
    # The clip pipeline by name and values (see c3d_distill.models.presets), in the preset's own units;
    # filled when the run starts, from --preprocess/--mean/--std/--resize, the teacher or the --init file.
    preprocess: dict[str, Any] | None = None
    init_sha256: str | None = None  # train --init FILE|RUN: the file's SHA-256 (init is its absolute path)
    short: str = "repeat"  # a video shorter than a clip (see SHORT)
    on_error: str = "raise"  # an unreadable video (see ON_ERROR)
    # optimisation (the CLI fills these from the recipe named here: c3d_distill.runs.recipes)
    recipe: str | None = None
    epochs: int = 10
    batch_size: int = 16
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_epochs: int = 4
    gamma: float = 0.1
    clip_grad: float | None = None
    # execution
    device: str = "cpu"
    amp: str | None = None  # "bf16" or "fp16" autocast (CUDA; fp16 with loss scaling); ignored on the CPU
    sync_bn: bool = False  # SyncBatchNorm across ranks under DDP (students with BatchNorm)
    freeze_bn: bool = False  # BatchNorm in eval mode while training: running statistics kept, affine learnt
    compile: bool = False
    channels_last: bool = True  # on CUDA only
    seed: int = 0
    threads: int | None = None  # decode threads of the loader
    prefetch: int = 2
    progress: bool = True
    tensorboard: bool = True  # TensorBoard scalars in RUN_DIR/tensorboard/
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # amp was a bool when --amp meant bf16 only: configs and checkpoints of that time (and callers
        # passing amp=True) mean bf16 by it, False none.
        if isinstance(self.amp, bool):
            self.amp = "bf16" if self.amp else None

    def validate(self, resumed: RunConfig | None = None) -> RunConfig:
        """Raise ``ValueError`` naming the option for settings that cannot work together.

        ``resumed``: the config of the checkpoint this run continues. Its ``--init`` file is not needed
        (the checkpoint holds the weights), and a combination that it already has, refused only since
        it was started (``--teacher-cache`` with ``--sampler random``), is a warning: the run can be
        finished the way it began."""

        def bad(name: str, why: str) -> None:
            raise ValueError(f"--{name.replace('_', '-')}: {why}")

        if self.mode not in MODES:
            bad("mode", f"{self.mode!r} is not one of {MODES}")
        from ..models import list_models  # the names, before any data is read

        known = list_models()
        if self.model not in known:
            flag = "student" if self.mode == "distill" else "model"
            bad(flag, f"unknown model {self.model!r}; known: {', '.join(known)}")
        if self.loss not in LOSSES:
            bad("loss", f"{self.loss!r} is not one of {LOSSES}")
        if self.init not in INITS and resumed is None and not Path(self.init).exists():
            if self.mode == "train":
                bad("init", f"{self.init!r}: no such file or run folder (a public C3D state dict, a run folder "
                    "or a run checkpoint)")
            bad(
                "init",
                f"{self.init!r} is neither transfer, random nor a student checkpoint file or run folder (as "
                "written by `c3d-distill transfer --out FILE`)",
            )
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"{self.optimizer!r} is not one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"{self.schedule!r} is not one of {SCHEDULES}")
        if self.mode == "train" and self.loss != "ce":
            bad("loss", "plain training uses cross-entropy; use `distill` for feature/kd losses")
        if self.mode == "distill":
            if not self.teacher:
                bad("teacher", "distillation needs a teacher run folder or checkpoint")
            if self.loss == "ce":
                bad("loss", "distillation needs feature, kd or feature+kd")
        if self.teacher_cache and self.hints:
            bad("teacher_cache", "cannot be combined with --hints (stage activations are not cached)")
        if self.on_error not in ON_ERROR:
            bad("on_error", f"{self.on_error!r} is not one of {ON_ERROR}")
        if self.short not in SHORT:
            bad("short", f"{self.short!r} is not one of {SHORT}")
        if self.sampler not in SAMPLERS:
            bad("sampler", f"{self.sampler!r} is not one of {SAMPLERS}")
        if self.teacher_cache and (self.crop_mode != "center" or self.flip or self.color_permute):
            bad(
                "teacher_cache",
                "needs deterministic crops (--crop-mode center --no-flip, no --color-permute): the cache key is "
                "(video, frame indices, crop)",
            )
        if self.teacher_cache and self.sampler == "random" and resumed is not None and (
            resumed.teacher_cache and resumed.sampler == "random"
        ):
            if os.environ.get("RANK", "0") == "0":  # once per run under torchrun (before its process group)
                warn("--teacher-cache with --sampler random: the resumed run was started so (allowed then); "
                    "it continues as it began, though the cache almost never hits with random frames")
        elif self.teacher_cache and self.sampler == "random":
            bad(
                "teacher_cache",
                "needs a deterministic sampler (--sampler center or uniform): the cache key is (video, frame "
                "indices, crop), and --sampler random draws new frames for every clip every epoch, so the "
                "cache would almost never hit while growing by one entry per clip",
            )
        if self.teacher_cache_mb <= 0:
            bad("teacher_cache_mb", f"must be positive, got {self.teacher_cache_mb}")
        for name in (
            "epochs",
            "batch_size",
            "frames",
            "size",
            "clips_per_video",
            "eval_clips",
            "final_eval_clips",
            "stride",
        ):
            if int(getattr(self, name)) < 1:
                bad(name, f"must be at least 1, got {getattr(self, name)}")
        if self.width <= 0:
            bad("width", f"must be positive, got {self.width}")
        if self.lr <= 0:
            bad("lr", f"must be positive, got {self.lr}")
        if not 0.0 <= self.alpha <= 1.0:
            bad("alpha", f"must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            bad("temperature", f"must be positive, got {self.temperature}")
        if self.clip_grad is not None and self.clip_grad <= 0:
            bad("clip_grad", f"must be positive, got {self.clip_grad}")
        if self.amp not in (None, *AMP):
            bad("amp", f"{self.amp!r} is not one of {AMP}")
        if self.crop_mode not in ("center", "random"):
            bad("crop_mode", f"{self.crop_mode!r} is not center or random")
        return self

    @property
    def resize_hw(self) -> tuple[int, int] | int:
        """What frames are resized to before the crop: (h, w), or an int short side."""
        if isinstance(self.resize, int):
            return int(self.resize)
        if self.resize is not None:
            return (int(self.resize[0]), int(self.resize[1]))
        return default_resize((self.size, self.size))

    def preset(self) -> Preset:
        """This run's clip pipeline as a preset: the recorded one, or one made from the fields."""
        if isinstance(self.preprocess, dict):
            return Preset.from_dict(self.preprocess)
        default = (tuple(self.mean), tuple(self.std), self.channels) == (DEFAULT_MEAN, DEFAULT_STD, "RGB")
        return Preset("kinetics" if default else "custom", self.resize_hw, self.size, tuple(self.mean),
                      tuple(self.std), self.channels, 1)

    def use_preset(self, preset: Preset) -> None:
        """Read clips ``preset``'s way (for this run's crop size) and record it."""
        p = preset.for_crop(self.size)
        kw = p.read_kwargs()
        self.resize, self.mean, self.std, self.channels = kw["size"], kw["mean"], kw["std"], kw["channels"]
        self.preprocess = p.to_dict()

    def requested_preset(self, base: Preset) -> Preset | None:
        """``base`` with what ``--preprocess/--mean/--std/--resize`` asked for (recorded by the command line
        in ``extra["preprocess_given"]``); None when nothing was asked."""
        req = self.extra.get("preprocess_given")
        if not req:
            return None
        if req.get("name"):
            base = get_preset(req["name"])
        return custom_preset(base, mean=req.get("mean"), std=req.get("std"), resize=req.get("resize"))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        d = dict(d)
        extra = dict(d.get("extra") or {})
        if "sampler" not in d and "sampler" in extra:  # configs written before sampler was a field
            d["sampler"] = extra.pop("sampler")
            d["extra"] = extra
        for k in ("resize", "mean", "std"):
            if isinstance(d.get(k), list):
                d[k] = tuple(d[k])
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable run config ({exc})") from exc
        return cls.from_dict(d)

    def model_meta(self, num_classes: int) -> dict[str, Any]:
        """What ``create_model`` needs to rebuild the trained network (stored in checkpoints)."""
        return {
            "name": self.model,
            "num_classes": int(num_classes),
            "width": float(self.width),
            "frames": int(self.frames),
            "size": int(self.size),
            "dropout": float(self.dropout),
        }
