"""One ``train_one_epoch`` / ``evaluate`` pair for every mode: cross-entropy training of any model, and
feature / logit / hint distillation of a student from a frozen teacher.

Data flow of a step::

    loader → (clips (N, 3, T, H, W) uint8|float32, labels (N,), meta) → prepare_batch (device, normalise,
    channels-last) → StudentNet (features (N, D), logits (N, K), stages) ─┐
                                  teacher (eval, no_grad, cache) ───────┴→ Objective → loss parts

A loader is any iterable of ``(clips, labels)`` or ``(clips, labels, meta)`` with
``meta = {"video": LongTensor[N], "frames": LongTensor[N, T]}`` (``ClipLoader(return_meta=True)``); it may
have ``set_epoch``. The step counter drives the learning-rate schedule, so a resumed run continues it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..progress import progress_bar
from .losses import topk_correct
from .objective import Objective, TeacherCache, autocast, run_teacher


def prepare_batch(
    clips: torch.Tensor,
    device: torch.device,
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    channels_last: bool = False,
) -> torch.Tensor:
    """Clips (N, 3, T, H, W) to ``device`` as float32. uint8 clips (values 0–255) are normalised here — on
    the GPU that moves 4× fewer bytes over the bus; float32 clips are assumed normalised by the loader."""
    if clips.dim() != 5 or clips.shape[1] != 3:
        raise ValueError(
            f"clips: expected (N, 3, T, H, W), got shape {tuple(clips.shape)} "
            "(the loader must use layout='NCTHW')"
        )
    x = clips.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        m = torch.tensor(mean, device=device, dtype=torch.float32).view(1, 3, 1, 1, 1) * 255.0
        s = torch.tensor(std, device=device, dtype=torch.float32).view(1, 3, 1, 1, 1) * 255.0
        x = (x.float() - m) / s
    elif x.dtype != torch.float32:
        x = x.float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x


def permute_colours(x: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    """A random RGB channel order per clip of ``x`` (N, 3, T, H, W), the same for all its frames: appearance
    changes, motion does not. Drawn from ``(seed, step)`` alone, so a resumed run draws the same orders."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
    order = torch.argsort(torch.rand(x.shape[0], 3, generator=g), dim=1).to(x.device)
    return torch.take_along_dim(x, order[:, :, None, None, None], dim=1)



def lr_at(
    step: int,
    *,
    base_lr: float,
    total_steps: int,
    steps_per_epoch: int,
    schedule: str = "cosine",
    warmup_epochs: float = 0.0,
    step_epochs: int = 4,
    gamma: float = 0.1,
) -> float:
    """Learning rate for optimiser step ``step`` (0-based): linear warm-up over ``warmup_epochs``, then
    cosine to zero, step decay by ``gamma`` every ``step_epochs``, or constant. A pure function of the step
    so a resumed run continues the same curve."""
    warm = int(round(warmup_epochs * steps_per_epoch))
    if step < warm:
        return base_lr * (step + 1) / warm
    if schedule == "cosine":
        span = max(1, total_steps - warm)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(step - warm, span) / span))
    if schedule == "step":
        return base_lr * gamma ** ((step // max(1, steps_per_epoch)) // max(1, step_epochs))
    return base_lr


def build_optimizer(params, name: str, lr: float, momentum: float, weight_decay: float):
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("optimizer: the model has no trainable parameters")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer: {name!r} is not sgd or adamw")


# --------------------------------------------------------------------------------------------------
# the two loops


def _split_batch(batch) -> tuple[torch.Tensor, torch.Tensor, dict | None]:
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[0], batch[1], batch[2]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1], None
    raise ValueError("loader: each batch must be (clips, labels) or (clips, labels, meta)")


PART_NAMES = ("loss", "ce", "feature", "kl", "hint")


class _Sums:
    """Running sums of loss parts and hits, reducible across DDP ranks in one all_reduce (every rank
    reduces the same fixed list, so a rank that saw no batch cannot hang the others)."""

    def __init__(self):
        self.parts: dict[str, float] = {}
        self.n = 0
        self.top1 = 0
        self.top5 = 0
        self.n_logits = 0

    def add(self, n: int, parts: dict[str, torch.Tensor], logits: torch.Tensor | None, labels: torch.Tensor):
        self.n += n
        for k, v in parts.items():
            if k not in PART_NAMES:
                raise KeyError(f"unknown loss part {k!r}")
            self.parts[k] = self.parts.get(k, 0.0) + float(v.detach()) * n
        if logits is not None:
            c1, c5 = topk_correct(logits.detach(), labels, (1, 5))
            self.top1 += c1
            self.top5 += c5
            self.n_logits += n

    def reduce(self) -> None:
        from .. import distributed

        if not distributed.is_initialized():
            return
        vals = [float(self.n), float(self.top1), float(self.top5), float(self.n_logits)]
        vals += [self.parts.get(k, 0.0) for k in PART_NAMES] + [float(k in self.parts) for k in PART_NAMES]
        t = distributed.all_reduce_sum(torch.tensor(vals, dtype=torch.float64)).tolist()
        self.n, self.top1, self.top5, self.n_logits = (int(round(v)) for v in t[:4])
        k = len(PART_NAMES)
        self.parts = {name: t[4 + i] for i, name in enumerate(PART_NAMES) if t[4 + k + i] > 0}

    def result(self) -> dict[str, float]:
        out = {k: v / max(1, self.n) for k, v in sorted(self.parts.items())}
        if self.n_logits:
            out["top1"] = self.top1 / self.n_logits
            out["top5"] = self.top5 / self.n_logits
        out["clips"] = self.n
        return out


def freeze_batchnorm(net: nn.Module) -> int:
    """Put every BatchNorm layer of ``net`` in eval mode (the rest stays as it is): each normalises with its
    running statistics, which no longer change, while its scale and shift still learn. Detectron2's
    ``FrozenBatchNorm2d`` and mmaction2's ``norm_eval`` do the same for fine-tuning. For a student
    initialised by weight transfer the statistics are those of the teacher's activations, so the network
    trains as the function the transfer built (in train mode each batch's own statistics replace them).
    Returns how many layers it froze."""
    n = 0
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            n += 1
    return n


def train_step(
    net: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    meta: dict | None = None,
    *,
    device: torch.device,
    amp: str | bool | None = None,
    clip_grad: float | None = None,
    where: str = "train",
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
    """One optimiser step on a prepared batch ``x`` (N, 3, T, H, W) on ``device``: teacher (if any),
    student, loss, backward, clipping, step. Returns ``(loss, parts, student outputs)``.

    ``scaler`` (fp16 autocast): the loss is scaled before ``backward`` so small fp16 gradients do not
    flush to zero, the gradients are unscaled before clipping, and a step whose gradients overflowed is
    skipped (the scale then halves)."""
    t_out = objective.teacher_outputs(x, meta)
    with autocast(device, amp):
        out = net(x)
    loss, parts = objective(out, y, t_out)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"{where}: loss became {float(loss.detach())} (lower --lr or set --clip-grad)"
        )
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if clip_grad is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip_grad)
        scaler.step(optimizer)
        scaler.update()
        return loss, parts, out
    loss.backward()
    if clip_grad is not None:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip_grad)
    optimizer.step()
    return loss, parts, out


def train_one_epoch(
    net: nn.Module,
    loader: Iterable,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    step: int = 0,
    lr_fn: Callable[[int], float] | None = None,
    clip_grad: float | None = None,
    amp: str | bool | None = None,
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "train",
    scaler: torch.amp.GradScaler | None = None,
    freeze_bn: bool = False,
    batch_hook: Callable[[int, torch.Tensor, torch.Tensor, dict | None], None] | None = None,
    max_steps: int | None = None,
    color_permute_seed: int | None = None,
) -> tuple[dict[str, float], int]:
    """One pass over ``loader``; returns ``(metrics, step)`` with the optimiser step count after the epoch.

    ``net`` is a :class:`StudentNet` (possibly inside DDP). Metrics: mean of each loss part (``loss`` is the
    minimised total), ``top1``/``top5`` on the training clips when there are logits, ``clips``,
    ``clips_per_s`` (whole step: loader wait included), ``lr`` (last), ``time`` (seconds).
    ``color_permute_seed``: when set, each clip's RGB channels are shuffled (:func:`permute_colours`).
    ``scaler``: a ``GradScaler`` for fp16 autocast (see :func:`train_step`). The progress bar shows this
    rank's running mean loss and the learning rate. ``freeze_bn``: BatchNorm layers stay in eval mode
    (:func:`freeze_batchnorm`).
    """
    net.train()
    if freeze_bn:
        freeze_batchnorm(net)
    sums = _Sums()
    t0 = time.perf_counter()
    total = len(loader) if hasattr(loader, "__len__") else None
    lr = optimizer.param_groups[0]["lr"]
    bar = progress_bar(loader, total, desc, progress)
    for i, batch in enumerate(bar):
        if max_steps is not None and i >= max_steps:
            break
        clips, labels, meta = _split_batch(batch)
        if batch_hook is not None:
            batch_hook(step, clips, labels, meta)
        x = prepare_batch(clips, device, mean=mean, std=std, channels_last=channels_last)
        if color_permute_seed is not None:
            x = permute_colours(x, color_permute_seed, step)
        y = labels.to(device, non_blocking=True)
        if lr_fn is not None:
            lr = lr_fn(step)
            for g in optimizer.param_groups:
                g["lr"] = lr
        loss, parts, out = train_step(
            net,
            objective,
            optimizer,
            x,
            y,
            meta,
            device=device,
            amp=amp,
            clip_grad=clip_grad,
            where=f"{desc} step {step}",
            scaler=scaler,
        )
        step += 1
        parts = {"loss": loss, **parts}
        sums.add(x.shape[0], parts, out["logits"], y)
        if bar is not loader:  # tqdm redraws at most twice a second; this only stores the text
            bar.set_postfix(loss=f"{sums.parts['loss'] / sums.n:.4g}", lr=f"{lr:.3g}", refresh=False)
    elapsed = time.perf_counter() - t0
    sums.reduce()
    res = sums.result()
    res.update(clips_per_s=res["clips"] / max(elapsed, 1e-9), lr=lr, time=elapsed)
    return res, step


@torch.no_grad()
def evaluate(
    net: nn.Module,
    loader: Iterable,
    objective: Objective | None = None,
    *,
    device: torch.device,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    num_videos: int | None = None,
    amp: str | bool | None = None,
    channels_last: bool = False,
    teacher: nn.Module | None = None,
    teacher_cache: TeacherCache | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, float]:
    """Clip accuracy (top-1, top-5) of every clip the loader yields, video accuracy (softmax averaged over
    each video's clips, needs ``meta``), the objective's loss parts, and the relative pool5 feature error
    ``Σ‖f_s − f_t‖² / Σ‖f_t‖²`` against the objective's teacher (or ``teacher``) when there is one.
    ``clips_per_s`` counts the forward passes of the evaluated model only (loader included).
    ``teacher_cache`` (default: the objective's) keeps the teacher's outputs on the evaluation clips, which
    are the same every epoch (uniform sampler, centre crop), so only the first evaluation runs the teacher."""
    model_net = (
        net.module if hasattr(net, "module") and isinstance(net, nn.parallel.DistributedDataParallel) else net
    )
    model_net.eval()
    sums = _Sums()
    teacher = objective.teacher if objective is not None and objective.teacher is not None else teacher
    cache = (
        teacher_cache if teacher_cache is not None else (objective.cache if objective is not None else None)
    )
    err_num = err_den = 0.0
    video_scores: torch.Tensor | None = None
    video_labels: torch.Tensor | None = None
    total = len(loader) if hasattr(loader, "__len__") else None
    t0 = time.perf_counter()
    for batch in progress_bar(loader, total, desc, progress):
        clips, labels, meta = _split_batch(batch)
        x = prepare_batch(clips, device, mean=mean, std=std, channels_last=channels_last)
        y = labels.to(device, non_blocking=True)
        with autocast(device, amp):
            out = model_net(x)
        out["features"] = out["features"].float()
        if out["logits"] is not None:
            out["logits"] = out["logits"].float()
        t_out = None
        if teacher is not None:
            t_out = run_teacher(
                teacher,
                x,
                stages=bool(objective and objective.wants_stages),
                amp=amp,
                cache=cache,
                meta=meta,
                namespace="eval",
            )
            d = (out["features"] - t_out.features).pow(2).sum()
            err_num += float(d)
            err_den += float(t_out.features.pow(2).sum())
        parts: dict[str, torch.Tensor] = {}
        if objective is not None:
            loss, obj_parts = objective(out, y, t_out)
            parts = {"loss": loss, **obj_parts}
        elif out["logits"] is not None:
            parts = {"ce": F.cross_entropy(out["logits"], y)}
        sums.add(x.shape[0], parts, out["logits"], y)
        if out["logits"] is not None and meta is not None and num_videos is not None:
            if video_scores is None:
                video_scores = torch.zeros(num_videos, out["logits"].shape[1], dtype=torch.float64)
                video_labels = torch.full((num_videos,), -1, dtype=torch.long)
            probs = out["logits"].softmax(1).double().cpu()
            vid = meta["video"].long().cpu()
            video_scores.index_add_(0, vid, probs)
            video_labels[vid] = labels.cpu()
    elapsed = time.perf_counter() - t0
    from .. import distributed

    sums.reduce()
    res = sums.result()
    if teacher is not None:
        t = torch.tensor([err_num, err_den], dtype=torch.float64)
        if distributed.is_initialized():
            t = distributed.all_reduce_sum(t)
        res["feature_err"] = float(t[0] / t[1]) if t[1] > 0 else float("nan")
    if video_scores is not None:
        if distributed.is_initialized():
            video_scores = distributed.all_reduce_sum(video_scores)
            video_labels = distributed.all_reduce_max(video_labels)
        seen = video_labels >= 0
        if seen.any():
            pred = video_scores[seen].argmax(1)
            res["video_acc"] = float((pred == video_labels[seen]).double().mean())
            res["videos"] = int(seen.sum())
    res.update(clips_per_s=res["clips"] / max(elapsed, 1e-9), time=elapsed)
    return res
