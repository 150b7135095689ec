"""Initialise a student from the C3D teacher's weights and report how close it starts.

Per conv stage (``conv1 … conv5b``), by what the student has there:

- ``nn.Conv3d``: copied (kind ``copied``).
- ``nn.Conv2d`` on the folded tensor with ``C'·T`` outputs (an "a" conv): the block-banded expansion of
  :func:`~c3d_distill.transfer.kernels.band_expand`; the fold identity makes it ``exact``.
- ``nn.Conv2d`` with ``C'·T/2`` outputs (a "b" conv, taking over the temporal half of the next pool): the
  band rows ``t' = 2s, 2s+1`` averaged (:func:`~c3d_distill.transfer.kernels.band_pool`). That is the conv
  followed by a temporal *average* pool exactly; the teacher max-pools after its ReLU, so ``approx``.
- an SP pair (``.spatial`` then ``.temporal``, ReLU between, BatchNorm after each for ``sp_bn``): an SVD
  split of the kernel (:func:`~c3d_distill.transfer.kernels.sp_split`), ``approx`` unless the split is
  exact through the ReLU. BatchNorm starts as the identity with running statistics from the probe batch.

Beyond the closed-form weights, two steps use a probe batch (the ``fit`` half; see :func:`transfer`):

- ``sp_mode="auto"`` chooses per SP stage between the plain rank-``Cout`` SVD (the ReLU between the two
  convs clips every component's negative half) and *signed pairs* (each component twice, ``+`` and ``−``,
  so ``relu(z) − relu(−z) = z`` passes it exactly, at rank ``Cout/2``): whichever reproduces the
  teacher's stage output better on the probe.
- ``calibrate=True``: for each ``approx`` stage, a per-output-channel scale and shift of its last conv,
  fitted by least squares of the student's pre-activation on the teacher's (``max`` over the temporal
  pair for a "b" conv), kept only when it lowers the stage's error on the probe. For a "b" conv this is
  mostly the bias ``E|z₁ − z₂|/2`` by which ``max(z₁, z₂)`` exceeds the mean. The stages are fitted in
  order, each on the input the already-transferred student really gives it, so errors do not pile up
  unchecked.

The report is measured on the ``check`` half of the probe batch, which none of the fitting saw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..models import create_model, fold
from .kernels import band_expand, band_pool, cosine, rel_err, sp_compose, sp_matrix, sp_split
from .stages import HEAD, STAGES, align, batchnorms_of, conv3d_of, stage_kind, tmax
from .summary import TransferReport, make_probe

# What transfer(progress=...) is told, in order.
PROGRESS_STEPS = (*STAGES, "report", "baseline")
SP_MODES = ("auto", "svd", "pairs")


def _teacher_config(teacher: nn.Module) -> dict[str, Any]:
    cfg = dict(getattr(teacher, "config", None) or {})
    conv1 = conv3d_of(teacher, "conv1")
    cfg.setdefault("width", conv1.out_channels / 64)
    cfg.setdefault("frames", getattr(teacher, "frames", 16))
    cfg.setdefault("size", tuple(getattr(teacher, "input_hw", (112, 112))))
    fc8 = getattr(teacher, "fc8", None)
    cfg.setdefault("num_classes", fc8.out_features if isinstance(fc8, nn.Linear) else None)
    cfg.setdefault("dropout", 0.5)
    return {k: cfg[k] for k in ("num_classes", "width", "frames", "size", "dropout")}


# ---------------------------------------------------------------------------------------- stage fitting
@dataclass
class _Fit:
    """Weights for one student stage, before they are written. ``last`` is the conv whose output channels
    get the calibration (the 2D conv, or SP's temporal conv)."""

    method: str
    kind: str
    w: Tensor  # 2D kernel, or SP temporal kernel
    b: Tensor | None
    ref: Tensor  # the linear kernel this stage stands for (for weight_rel_err)
    spatial: Tensor | None = None
    spatial_bias: Tensor | None = None
    pairs: bool = False
    rank: int = 0

    def effective(self) -> Tensor:
        if self.spatial is None:
            return self.w
        # Through the ReLU a signed pair (+v, −v) passes v once: the effective kernel is the "+" half,
        # channels [0, rank).
        m = self.rank if self.pairs else self.spatial.shape[0]
        return sp_compose(self.spatial[:m], self.w[:, :m])

    def pre(self, x: Tensor, spatial_bn: nn.Module | None = None) -> Tensor:
        """The stage's output before its final ReLU for input ``x`` (its BatchNorms are the identity)."""
        if self.spatial is None:
            return F.conv2d(x, self.w, self.b, padding=self.w.shape[-1] // 2)
        z = F.relu(F.conv3d(x, self.spatial, self.spatial_bias, padding=(0, 1, 1)))
        return F.conv3d(z, self.w, self.b, padding=(self.w.shape[2] // 2, 0, 0))


# Values per output channel below which the calibration is not fitted: two parameters per channel fitted
# to two values reproduce them exactly and nothing else (a 16×16 probe of 2 fit clips leaves 2 values per
# channel at conv5b; its fitted scales made mc4's features 3× further from the teacher's than a random
# init's, where without them they are 2× closer). Four per parameter: on held-out clips the fit still
# helped with 8 values per channel (conv4b there) and with 16 (tests/transfer/test_transfer.py's 32×32 probes);
# a 112×112 probe of 2 fit clips gives 98 at conv5b.
MIN_CALIBRATION_VALUES = 8


def _calibrate(fit: _Fit, pre: Tensor, target_pre: Tensor) -> tuple[_Fit, bool]:
    """Per output channel ``α·pre + β`` fitted to ``target_pre`` by least squares; kept if it lowers the
    post-ReLU error. Returns the (possibly) updated fit and whether it was kept. Not fitted (the method
    says so) with fewer than ``MIN_CALIBRATION_VALUES`` values per channel."""
    per_channel = pre.numel() // max(1, pre.shape[1])
    if per_channel < MIN_CALIBRATION_VALUES:
        return dataclasses.replace(
            fit, method=f"{fit.method} (not calibrated: {per_channel} values per channel, fewer than "
            f"{MIN_CALIBRATION_VALUES}; more or larger probe clips)"), False
    dims = [d for d in range(pre.dim()) if d != 1]
    p, y = pre.double(), target_pre.double()
    pm, ym = p.mean(dims, keepdim=True), y.mean(dims, keepdim=True)
    var = ((p - pm) ** 2).mean(dims)
    cov = ((p - pm) * (y - ym)).mean(dims)
    alpha = torch.where(var > 1e-12 * var.max().clamp_min(1e-30), cov / var.clamp_min(1e-30), torch.ones_like(var))
    beta = ym.flatten() - alpha * pm.flatten()
    shape = [1, -1] + [1] * (pre.dim() - 2)
    new = F.relu(alpha.view(shape) * p + beta.view(shape))
    if rel_err(new, F.relu(y)) >= rel_err(F.relu(p), F.relu(y)):
        return fit, False
    a = alpha.to(fit.w.dtype)
    w = fit.w * a.view([-1] + [1] * (fit.w.dim() - 1))
    b0 = fit.b if fit.b is not None else torch.zeros_like(a)
    b = a * b0 + beta.to(fit.w.dtype)
    return _Fit(fit.method + " + calibrated", fit.kind, w, b, fit.ref, fit.spatial, fit.spatial_bias, fit.pairs,
                fit.rank), True


def _fit_stage(kind: str, t_in: int, tconv: nn.Conv3d, sconv: nn.Module, x_s: Tensor, x_t: Tensor, *,
               sp_mode: str, calibrate: bool) -> _Fit | None:
    """Weights for one student stage given its real input ``x_s`` and the teacher's stage input ``x_t``
    (both from the fit batch). ``None`` for a 3D stage (copied as is)."""
    w3, b3 = tconv.weight.detach(), None if tconv.bias is None else tconv.bias.detach()
    if kind == "3d":
        return None
    target = F.conv3d(x_t, w3, b3, padding=tconv.padding)  # the teacher's pre-activation
    if kind == "a":
        w2, b2 = band_expand(w3, b3, t_in)
        return _Fit("band expansion", "exact", w2, b2, w2)
    if kind == "b":
        w2, b2 = band_expand(w3, b3, t_in)
        w, b = band_pool(w2, b2, t_in)
        fit = _Fit("band rows averaged (max→mean pool)", "approx", w, b, w)
        if calibrate:
            fit, _ = _calibrate(fit, fit.pre(x_s), fold(tmax(target)))
        return fit
    # SP
    mid = sconv.spatial.out_channels
    cands = []
    modes = ("svd", "pairs") if sp_mode == "auto" else (sp_mode,)
    svd = torch.linalg.svd(sp_matrix(w3).double(), full_matrices=False)
    for mode in modes:
        sp = sp_split(w3, b3, mid, signed_pairs=mode == "pairs", svd=svd)
        full = sp.rank >= int((sp.singular_values > sp.singular_values[0] * 1e-6).sum())
        label = f"SVD rank {sp.rank}" + (" signed pairs" if mode == "pairs" else "") + f" of {sp.singular_values.numel()}"
        exact = full and mode == "pairs"
        fit = _Fit(label, "exact" if exact else "approx", sp.temporal, sp.temporal_bias, w3, sp.spatial,
                   sp.spatial_bias, mode == "pairs", sp.rank)
        if calibrate and not exact:
            fit, _ = _calibrate(fit, fit.pre(x_s), target)
        err = rel_err(F.relu(fit.pre(x_s)), F.relu(target))
        cands.append((err, fit))
    return min(cands, key=lambda c: c[0])[1]


@torch.no_grad()
def _write(student: nn.Module, name: str, kind: str, fit: _Fit | None, tconv: nn.Conv3d) -> None:
    s = getattr(student, name)
    if kind == "3d":
        s.weight.copy_(tconv.weight)
        if s.bias is not None:
            s.bias.copy_(tconv.bias)
        return
    if kind in ("a", "b"):
        s.weight.copy_(fit.w)
        if s.bias is not None:
            s.bias.copy_(fit.b)
        return
    s.spatial.weight.copy_(fit.spatial)
    s.spatial.bias.copy_(fit.spatial_bias)
    s.temporal.weight.copy_(fit.w)
    s.temporal.bias.copy_(fit.b if fit.b is not None else torch.zeros_like(s.temporal.bias))
    for bn in batchnorms_of(s):
        if bn is not None:
            _bn_identity(bn)


@torch.no_grad()
def _bn_identity(bn: nn.modules.batchnorm._BatchNorm, mean: Tensor | None = None, var: Tensor | None = None):
    """Make ``bn`` the identity in eval mode; with ``mean``/``var`` (its input's statistics) also close to
    the identity in train mode: running stats = the statistics, weight = sqrt(var + eps), bias = mean."""
    c = bn.num_features
    mean = torch.zeros(c) if mean is None else mean
    var = torch.full((c,), 1.0 - bn.eps) if var is None else var
    mean, var = mean.to(bn.running_mean), var.to(bn.running_var)
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    if bn.affine:
        bn.weight.copy_((var + bn.eps).sqrt())
        bn.bias.copy_(mean)
    elif mean.abs().max() > 0 or (var + bn.eps - 1).abs().max() > 0:
        _bn_identity(bn)  # without affine parameters only the plain identity is exact


def _run_with_hooks(model: nn.Module, x: Tensor, hooks: dict[str, Callable[[Tensor], None]]) -> None:
    handles = [getattr(model, n).register_forward_pre_hook(lambda m, args, f=f: f(args[0]))
               for n, f in hooks.items()]
    try:
        model.features(x)
    finally:
        for h in handles:
            h.remove()


def _stage_inputs(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    got: dict[str, Tensor] = {}
    _run_with_hooks(model, x, {n: (lambda t, n=n: got.__setitem__(n, t)) for n in STAGES})
    return got


# ------------------------------------------------------------------------------------------- transfer
@torch.no_grad()
def transfer(
    teacher: nn.Module,
    name: str,
    *,
    probe: Tensor | None = None,
    probe_size: int = 4,
    calibrate: bool = True,
    sp_mode: str = "auto",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    **model_kwargs,
) -> tuple[nn.Module, TransferReport]:
    """Build student ``name`` (``mcK``, ``sp``, ``sp_bn``; ``c3d`` gives a copy) with the teacher's width,
    clip length, input size and head, and fill its weights from the teacher's.

    Args:
        teacher: a ``c3d`` model (conv stages ``conv1 … conv5b`` as ``nn.Conv3d``, ``forward_stages``,
            ``features``; optional head ``fc6 … fc8``).
        name: the student's registry name.
        probe: (N, 3, T, H, W) clips, N ≥ 2, normalised as the teacher's input; the first ⌈N/2⌉ fit
            (``sp_mode="auto"``, ``calibrate``, BatchNorm statistics), the rest are held out for the
            report. Default: :func:`make_probe` with ``probe_size`` clips.
        calibrate: per-channel affine correction of the ``approx`` stages (see the module docstring).
        sp_mode: ``"auto"`` | ``"svd"`` (plain rank-Cout split) | ``"pairs"`` (signed pairs).
        seed: for the default probe and the randomly initialised baseline student.
        progress: called with the name of each step as it finishes (the 8 conv stages, then ``"report"`` and
            ``"baseline"``: ``PROGRESS_STEPS``), e.g. to advance a progress bar.
        model_kwargs: override ``create_model`` arguments (``num_classes``, ``width``, ``frames``, ``size``,
            ``dropout``, ``fast``); width, frames and size must still fit the teacher's weights.
    Returns:
        ``(student, report)``: the student in eval mode, on the teacher's device; a :class:`TransferReport`.
    """
    if sp_mode not in SP_MODES:
        raise ValueError(f"sp_mode: expected one of {SP_MODES}, got {sp_mode!r}")
    cfg = _teacher_config(teacher)
    unknown = set(model_kwargs) - {"num_classes", "width", "frames", "size", "dropout", "fast"}
    if unknown:
        raise TypeError(f"transfer: unexpected keyword arguments {sorted(unknown)}")
    cfg.update(model_kwargs)
    param = next(teacher.parameters())
    device, dtype = param.device, param.dtype
    student = create_model(name, **cfg).to(device=device, dtype=dtype)
    size = cfg["size"]
    given = probe is not None
    if probe is None:
        if probe_size < 2:
            raise ValueError(f"probe_size: need at least 2 clips (one to fit, one to check), got {probe_size}")
        probe = make_probe(probe_size, cfg["frames"], size, seed=seed, device=device)
    if not isinstance(probe, Tensor) or probe.dim() != 5 or probe.shape[0] < 2:
        raise ValueError(f"probe: expected a (N ≥ 2, 3, T, H, W) tensor, got "
                         f"{tuple(probe.shape) if isinstance(probe, Tensor) else type(probe).__name__}")
    probe = probe.to(device=device, dtype=dtype)
    n_fit = (probe.shape[0] + 1) // 2
    fit_x, check_x = probe[:n_fit], probe[n_fit:]

    def step(name: str) -> None:
        if progress is not None:
            progress(name)

    was_training = teacher.training
    teacher.eval()
    student.eval()
    try:
        kinds = {n: stage_kind(teacher, student, n) for n in STAGES}
        for n, (k, _) in kinds.items():
            if k == "sp":
                for bn in batchnorms_of(getattr(student, n)):
                    if bn is not None:
                        _bn_identity(bn)
        t_in = _stage_inputs(teacher, fit_x)
        fits: dict[str, _Fit | None] = {}

        # One pass over the fit batch: each stage's pre-hook fits that stage on the input the student
        # (already transferred up to there) really gives it, writes the weights, and lets it run.
        def fitter(n: str):
            def hook(x_s: Tensor) -> None:
                kind, t = kinds[n]
                fits[n] = _fit_stage(kind, t, conv3d_of(teacher, n), getattr(student, n), x_s, t_in[n],
                                     sp_mode=sp_mode, calibrate=calibrate)
                _write(student, n, kind, fits[n], conv3d_of(teacher, n))
                step(n)
            return hook

        _run_with_hooks(student, fit_x, {n: fitter(n) for n in STAGES})
        _copy_head(teacher, student)
        _set_bn_stats(student, fit_x, kinds)

        report = TransferReport(student=name, teacher=dict(cfg))
        report.probe = {"fit_clips": int(fit_x.shape[0]), "check_clips": int(check_x.shape[0]),
                        "shape": list(probe.shape[1:]), "source": "given" if given else f"make_probe(seed={seed})",
                        "calibrate": calibrate, "sp_mode": sp_mode}
        t_stages = teacher.forward_stages(check_x)
        s_stages = student.forward_stages(check_x)
        for n in STAGES:
            kind, t = kinds[n]
            fit = fits[n]
            ref = align(t_stages[n], s_stages[n])  # folded, and max-pooled over frame pairs for a "b" conv
            if fit is None:
                row = {"layer": n, "kind": "copied", "method": "3D kernel copied",
                       "weight_rel_err": rel_err(getattr(student, n).weight, conv3d_of(teacher, n).weight)}
            else:
                row = {"layer": n, "kind": fit.kind, "method": fit.method,
                       "weight_rel_err": rel_err(fit.effective(), fit.ref)}
            row["act_rel_err"] = rel_err(s_stages[n], ref)
            report.rows.append(row)
        f_t, f_s = teacher.features(check_x), student.features(check_x)
        report.rows += _head_rows(teacher, student, f_t, f_s)
        report.feature_rel_err, report.feature_cosine = rel_err(f_s, f_t), cosine(f_s, f_t)
        step("report")
        with torch.random.fork_rng(devices=[]):  # a seeded baseline without touching the caller's RNG
            torch.manual_seed(seed)
            baseline = create_model(name, **cfg)
        baseline = baseline.to(device=device, dtype=dtype).eval()
        f_r = baseline.features(check_x)
        report.random_feature_rel_err, report.random_feature_cosine = rel_err(f_r, f_t), cosine(f_r, f_t)
        step("baseline")
    finally:
        teacher.train(was_training)
    return student, report


def _copy_head(teacher: nn.Module, student: nn.Module) -> None:
    for n in HEAD:
        t, s = getattr(teacher, n, None), getattr(student, n, None)
        if t is None or s is None:
            continue
        if t.weight.shape != s.weight.shape:
            raise ValueError(f"student: {n} is {tuple(s.weight.shape)}, the teacher's {tuple(t.weight.shape)} "
                             "(build the student with the teacher's num_classes, or without a head)")
        s.weight.copy_(t.weight)
        s.bias.copy_(t.bias)


def _head_rows(teacher: nn.Module, student: nn.Module, f_t: Tensor, f_s: Tensor) -> list[dict[str, Any]]:
    rows = []
    for n in HEAD:
        t, s = getattr(teacher, n, None), getattr(student, n, None)
        if t is None or s is None:
            break
        f_t, f_s = t(f_t), s(f_s)
        rows.append({"layer": n, "kind": "copied", "method": "linear copied",
                     "weight_rel_err": rel_err(s.weight, t.weight), "act_rel_err": rel_err(f_s, f_t)})
        if n != HEAD[-1]:
            f_t, f_s = F.relu(f_t), F.relu(f_s)
    return rows


def _set_bn_stats(student: nn.Module, x: Tensor, kinds: dict[str, tuple[str, int]]) -> None:
    """Running statistics of every SP BatchNorm from the fit batch, keeping each the identity in eval.

    The variance stored is the biased one, the one train mode normalises with, so that on the fit batch
    each BatchNorm is the identity in train mode too."""
    bns = [bn for n, (k, _) in kinds.items() if k == "sp" for bn in batchnorms_of(getattr(student, n)) if bn is not None]
    if not bns:
        return
    stats: dict[int, tuple[Tensor, Tensor]] = {}
    handles = [bn.register_forward_pre_hook(
        lambda m, args, i=i: stats.__setitem__(
            i, (args[0].mean((0, 2, 3, 4)), args[0].var((0, 2, 3, 4), unbiased=False))))
        for i, bn in enumerate(bns)]
    try:
        student.features(x)  # every BN is the identity, so one pass sees each one's true input
    finally:
        for h in handles:
            h.remove()
    for i, bn in enumerate(bns):
        _bn_identity(bn, *stats[i])
