"""What a step computes: the network wrapper that exposes features, logits and stages (``StudentNet``), the
frozen teacher's outputs (optionally cached per clip), and the loss of every mode (``Objective``).

    StudentNet (features (N, D), logits (N, K), stages) ─┐
    teacher (eval, no_grad, cache) ─────────────────────┴→ Objective → loss parts
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .losses import feature_loss, hint_loss, kd_loss

# --------------------------------------------------------------------------------------------------
# model plumbing


class StudentNet(nn.Module):
    """Wraps the trained network so one ``forward`` gives everything a loss may need; DDP wraps *this*,
    so gradients are synchronised whichever outputs the loss uses.

    ``forward(x)`` → ``{"features": (N, D) pool5, "logits": (N, K) or None, "stages": {name: act} or None}``.
    ``logits_grad=False`` computes the logits under ``no_grad`` (monitoring only: feature distillation
    trains the backbone and leaves the head frozen).
    """

    def __init__(self, model: nn.Module, *, stages: bool = False, logits_grad: bool = True):
        super().__init__()
        self.model = model
        self.want_stages = stages
        self.logits_grad = logits_grad

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        model = self.model
        stages = None
        if self.want_stages:
            stages = model.forward_stages(x)
            # forward_stages stops before pool5; applying it here avoids a second pass for the features.
            feats = model.pool5(stages["conv5b"]).flatten(1)
        else:
            feats = model.features(x)
        logits = None
        if getattr(model, "num_classes", None) is not None:
            if self.logits_grad:
                logits = model.head(feats)
            else:
                with torch.no_grad():
                    logits = model.head(feats.detach())
        return {"features": feats, "logits": logits, "stages": stages}


def unwrap(net: nn.Module) -> nn.Module:
    """The bare model under DDP / StudentNet / torch.compile wrappers."""
    while True:
        if hasattr(net, "module") and isinstance(net.module, nn.Module):
            net = net.module
        elif isinstance(net, StudentNet):
            net = net.model
        elif hasattr(net, "_orig_mod"):
            net = net._orig_mod
        else:
            return net


def to_channels_last(model: nn.Module) -> nn.Module:
    """channels-last for every conv weight (3-D and 2-D: MC models hold both), in place."""
    for p in model.parameters():
        if p.dim() == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
        elif p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
    return model



def autocast(device: torch.device, amp: str | bool | None):
    """Autocast on CUDA: ``"bf16"`` (or ``True``) needs no loss scaling, ``"fp16"`` is for cards without
    bf16 and needs a ``GradScaler`` in training; a no-op elsewhere — CPU bf16 is slower here."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------------------------------
# teacher outputs, optionally cached


class TeacherCache:
    """Teacher pool5 features and logits per clip, keyed by (video, frame indices, crop key).

    Valid only when a clip's pixels are a function of that key — deterministic crops without random
    flips (the run config checks it) — and useful only when later epochs draw the same clips (a
    deterministic sampler: the run config checks that too), so they skip the teacher. Values are kept on
    the CPU in ``dtype`` (float32: bit-identical to recomputing).

    ``max_bytes`` caps the memory of the stored values (plus a per-entry overhead estimate): once full,
    new clips are no longer stored (nothing is evicted; such clips run the teacher every time) and
    ``not_stored`` counts them. ``hits`` / ``misses`` count lookups.
    """

    ENTRY_OVERHEAD = 512  # bytes per entry beyond the tensors' data: key tuple, tensor objects, dict slot

    def __init__(self, crop_key: Any = None, dtype: torch.dtype = torch.float32, max_bytes: int | None = None):
        self.crop_key = crop_key
        self.dtype = dtype
        self.max_bytes = max_bytes
        self.store: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.hits = 0
        self.misses = 0
        self.not_stored = 0
        self.nbytes = 0

    def key(self, video: int, frames: torch.Tensor, namespace: str = "train") -> tuple:
        # ``video`` indexes one split's item list: the namespace keeps train and test clips apart.
        return (namespace, int(video), tuple(int(f) for f in frames.tolist()), self.crop_key)

    def add(self, key: tuple, features: torch.Tensor, logits: torch.Tensor | None) -> bool:
        """Store one clip's outputs (copied to the CPU in ``dtype``) unless that would pass ``max_bytes``."""
        size = features.numel() * self.dtype.itemsize + self.ENTRY_OVERHEAD
        if logits is not None:
            size += logits.numel() * self.dtype.itemsize
        if key in self.store:  # the same clip twice in one batch
            return True
        if self.max_bytes is not None and self.nbytes + size > self.max_bytes:
            self.not_stored += 1
            return False
        lg = logits.to("cpu", self.dtype).clone() if logits is not None else None
        self.store[key] = (features.to("cpu", self.dtype).clone(), lg)
        self.nbytes += size
        return True

    @property
    def full(self) -> bool:
        return self.not_stored > 0

    def stats(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "entries": len(self.store),
            "mb": round(self.nbytes / 2**20, 3),
            "limit_mb": None if self.max_bytes is None else round(self.max_bytes / 2**20, 3),
            "not_stored": self.not_stored,
        }

    def __len__(self) -> int:
        return len(self.store)


@dataclass
class TeacherOut:
    features: torch.Tensor
    logits: torch.Tensor | None
    stages: dict[str, torch.Tensor] | None


def run_teacher(
    teacher: nn.Module,
    x: torch.Tensor,
    *,
    stages: bool,
    amp: str | bool | None,
    cache: TeacherCache | None = None,
    meta: dict[str, torch.Tensor] | None = None,
    namespace: str = "train",
) -> TeacherOut:
    """The frozen teacher on ``x`` (N, 3, T, H, W): eval mode, no_grad, bf16 autocast on CUDA.

    With a cache and ``meta``, only clips not seen before are run through the teacher.
    """
    device = x.device
    net = StudentNet(teacher, stages=stages)

    def compute(inp: torch.Tensor) -> TeacherOut:
        with torch.no_grad(), autocast(device, amp):
            out = net(inp)
        logits = out["logits"].float() if out["logits"] is not None else None
        st = {k: v.float() for k, v in out["stages"].items()} if out["stages"] is not None else None
        return TeacherOut(out["features"].float(), logits, st)

    if cache is None or meta is None or stages:
        return compute(x)
    keys = [cache.key(v, f, namespace) for v, f in zip(meta["video"], meta["frames"], strict=True)]
    miss = [i for i, k in enumerate(keys) if k not in cache.store]
    cache.hits += len(keys) - len(miss)
    cache.misses += len(miss)
    if not miss:
        return _from_cache(cache, keys, device)
    fresh = compute(x[miss] if len(miss) < len(keys) else x)
    for j, i in enumerate(miss):
        cache.add(keys[i], fresh.features[j], fresh.logits[j] if fresh.logits is not None else None)
    if len(miss) == len(keys):
        return fresh
    # Some clips came from the cache, the others were just computed (and may not fit in it any more).
    missed = set(miss)
    hit = [i for i in range(len(keys)) if i not in missed]
    cached = _from_cache(cache, [keys[i] for i in hit], device)
    feats = torch.empty((len(keys), *fresh.features.shape[1:]), device=device, dtype=torch.float32)
    feats[miss], feats[hit] = fresh.features, cached.features
    logits = None
    if fresh.logits is not None:
        logits = torch.empty((len(keys), *fresh.logits.shape[1:]), device=device, dtype=torch.float32)
        logits[miss], logits[hit] = fresh.logits, cached.logits
    return TeacherOut(feats, logits, None)


def _from_cache(cache: TeacherCache, keys: list[tuple], device: torch.device) -> TeacherOut:
    feats = torch.stack([cache.store[k][0] for k in keys]).to(device, torch.float32)
    has_logits = cache.store[keys[0]][1] is not None
    logits = torch.stack([cache.store[k][1] for k in keys]).to(device, torch.float32) if has_logits else None
    return TeacherOut(feats, logits, None)


# --------------------------------------------------------------------------------------------------
# objective


class Objective:
    """What a step minimises. ``loss``: ``"ce"`` | ``"feature"`` | ``"kd"`` | ``"feature+kd"``; ``hint_pairs``
    adds the fold-hint term (weight ``hint_weight``). Returns ``(total, parts)`` where parts holds each
    unweighted term (``ce``, ``feature``, ``kl``, ``hint``) as a float tensor."""

    def __init__(
        self,
        loss: str = "ce",
        *,
        teacher: nn.Module | None = None,
        hint_pairs: list[tuple[str, str]] | None = None,
        hint_weight: float = 1.0,
        temperature: float = 4.0,
        alpha: float = 0.9,
        cache: TeacherCache | None = None,
        amp: str | bool | None = None,
    ):
        if loss not in ("ce", "feature", "kd", "feature+kd"):
            raise ValueError(f"loss: {loss!r} is not ce, feature, kd or feature+kd")
        if loss != "ce" and teacher is None:
            raise ValueError(f"loss {loss!r} needs a teacher")
        self.loss = loss
        self.teacher = teacher
        self.hint_pairs = list(hint_pairs or [])
        self.hint_weight = hint_weight
        self.temperature = temperature
        self.alpha = alpha
        self.cache = cache
        self.amp = amp
        if teacher is not None:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)

    @property
    def uses_teacher(self) -> bool:
        return self.teacher is not None

    @property
    def wants_stages(self) -> bool:
        return bool(self.hint_pairs)

    @property
    def logits_grad(self) -> bool:
        return self.loss != "feature"

    def teacher_outputs(self, x: torch.Tensor, meta: dict | None) -> TeacherOut | None:
        if self.teacher is None:
            return None
        return run_teacher(
            self.teacher, x, stages=self.wants_stages, amp=self.amp, cache=self.cache, meta=meta
        )

    def __call__(
        self, out: dict[str, Any], labels: torch.Tensor, t_out: TeacherOut | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        logits = out["logits"]
        if self.loss == "ce":
            total = F.cross_entropy(logits.float(), labels)
            parts["ce"] = total
            return total, parts
        total = None
        if "feature" in self.loss:
            parts["feature"] = feature_loss(out["features"], t_out.features)
            total = parts["feature"]
        if "kd" in self.loss:
            kd, kd_parts = kd_loss(
                logits, t_out.logits, labels, temperature=self.temperature, alpha=self.alpha
            )
            parts.update(kd_parts)
            total = kd if total is None else total + kd
        if self.hint_pairs:
            parts["hint"] = hint_loss(t_out.stages, out["stages"], self.hint_pairs)
            total = total + self.hint_weight * parts["hint"]
        if logits is not None and "ce" not in parts:
            parts["ce"] = F.cross_entropy(logits.detach().float(), labels)  # monitored, not trained
        return total, parts


# --------------------------------------------------------------------------------------------------
# learning-rate schedule


