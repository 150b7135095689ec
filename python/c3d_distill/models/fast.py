"""Fast execution paths: the same parameters, the same function, less time.

Plain PyTorch runs every conv of these networks on NCTHW tensors, so oneDNN reorders activations into its
own blocked layout and back around every conv, the (1,3,3) / (3,1,1) SP convs go through the general
3-D kernel, and ReLU and pooling are separate passes over memory. The fast path:

* keeps activations channels-last (``channels_last_3d``: memory order N, T, H, W, C) while frames are
  large: no reorder around those convs, pools and ReLUs;
* runs the SP spatial (1,3,3) conv as a 2-D conv over the N·T frames, on a *view* of the same memory
  ((N, C, T, H, W) channels-last-3d is (N·T, C, H, W) channels-last), and the temporal (3,1,1) conv on
  the same NDHWC memory;
* runs the wide, small 3-D convs (14², 7²) and the MC 2-D part in NCDHW / NCHW, where oneDNN's blocked
  kernels beat channels-last (one copy of a pooled tensor at the switch; the fold stays a view);
* runs an SP temporal conv with 32–128 channels that a max-pool follows (conv1 and conv2 at full
  width) together with its ReLU and that pool in one Rust AVX-512 kernel
  (``c3d_distill._native.kernel_temporal_conv_pool``, rust/conv.rs) on CPUs that have it: oneDNN's conv wrote
  a 411 MB (conv1) / 205 MB (conv2) activation a batch of 8 that the pool read again; the kernel pools
  each tile in registers and only writes the pooled output;
* fuses conv + bias + ReLU in one oneDNN primitive for CPU inference (``torch.ops.mkldnn.
  _convolution_pointwise``, the op torch.compile's CPU backend emits), and folds eval-mode BatchNorm
  into the conv weights;
* under autograd, on other devices or under autocast it uses the ordinary ops on the same layouts
  (conv, then an in-place ReLU, which autograd allows after a conv);
* makes the process keep freed large blocks for reuse (:mod:`c3d_distill.memory`): otherwise each
  batch's 200–400 MB activations come back as fresh pages that the kernel faults in and zeroes, which
  on the CPU took longer than sp's first convolutions themselves.

Every path is checked against the plain layers (tests/models/test_models_fast.py, relative error < 1e-5 in
float32). Module forward hooks only fire on the plain path, so a model with hooks on its stage modules
falls back to the plain path automatically; ``forward_stages`` is the way to read activations.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..memory import reuse_freed_memory

CL3 = torch.channels_last_3d
CL2 = torch.channels_last


def apply_fast(model: nn.Module, enabled: bool) -> None:
    """Nothing to convert: the fast path reads the same parameters in ``VideoNet._run_fast``. What it
    needs of the process: freed large blocks kept for reuse (:mod:`c3d_distill.memory`; fresh pages for
    every batch's activations cost as much as the convolutions on the CPU)."""
    if enabled:
        reuse_freed_memory()


def _pointwise_available() -> bool:
    return hasattr(torch.ops.mkldnn, "_convolution_pointwise") and torch.backends.mkldnn.is_available()


_HAS_POINTWISE = None


def _can_fuse(x: torch.Tensor, weight: torch.Tensor) -> bool:
    global _HAS_POINTWISE
    if _HAS_POINTWISE is None:
        _HAS_POINTWISE = _pointwise_available()
    return (
        _HAS_POINTWISE
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not torch.is_autocast_enabled("cpu")
    )


def conv_relu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding: tuple[int, ...],
    relu: bool = True,
) -> torch.Tensor:
    """conv (stride 1) + bias [+ ReLU] on a channels-last input; output channels-last too."""
    if _can_fuse(x, weight):
        ones = [1] * len(padding)
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, list(padding), ones, ones, 1, "relu" if relu else "none", [None], ""
        )
    conv = F.conv3d if x.dim() == 5 else F.conv2d
    y = conv(x, weight, bias, padding=padding)
    return F.relu_(y) if relu else y


def _bn_folded(conv: nn.Module, bn: nn.BatchNorm3d | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of conv followed by an eval-mode BatchNorm, as one conv."""
    if bn is None:
        return conv.weight, conv.bias
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    w = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    b = (conv.bias - bn.running_mean) * scale + bn.bias
    return w, b


def _bn_train(x2d: torch.Tensor, bn: nn.BatchNorm3d) -> torch.Tensor:
    """BatchNorm3d in training mode on the (N·T, C, H, W) view: the same statistics (over N, T, H, W) and
    the same running-stat update."""
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    momentum = bn.momentum
    if momentum is None:  # cumulative moving average, as nn.BatchNorm does
        momentum = 1.0 / float(bn.num_batches_tracked)
    return F.batch_norm(x2d, bn.running_mean, bn.running_var, bn.weight, bn.bias, True, momentum, bn.eps)


def frames_view(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) channels-last-3d → (N·T, C, H, W) channels-last: a view of the same memory."""
    n, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)


def from_frames(y: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`frames_view`: (N·T, C, H, W) channels-last → (N, C, T, H, W) channels-last-3d."""
    nt, c, h, w = y.shape
    return y.reshape(n, nt // n, c, h, w).permute(0, 2, 1, 3, 4)


def _rust_pool(pool) -> int | None:
    """The temporal pool factor when ``pool`` is one the Rust kernel fuses ((1|2, 2, 2), stride = kernel,
    no padding), else None."""
    if pool is None:
        return None
    k, s, p = pool
    if tuple(k) in ((1, 2, 2), (2, 2, 2)) and tuple(s) == tuple(k) and not any(p):
        return k[0]
    return None


_RUST_CHANNELS: dict[int, bool] = {}
# Set to False to run sp's temporal convs and pools as separate oneDNN / PyTorch ops (for comparisons:
# benches/bench_fused_pool.py).
FUSE_POOL = True


def fused_pool_available() -> bool:
    """Whether this CPU runs the fused Rust kernel (AVX-512F) at all."""
    from .. import _native

    return _native.kernel_temporal_conv_pool_supported(64)


def _can_fuse_pool(y: torch.Tensor, weight: torch.Tensor, pool) -> int | None:
    """The temporal pool factor when the temporal conv on ``y`` can run fused with ``pool`` in Rust."""
    pt = _rust_pool(pool) if FUSE_POOL else None
    if pt is None or not _can_fuse(y, weight) or weight.shape[0] % 32:
        return None
    c = y.shape[1]
    if c not in _RUST_CHANNELS:
        from .. import _native

        _RUST_CHANNELS[c] = _native.kernel_temporal_conv_pool_supported(c)
    if not _RUST_CHANNELS[c] or y.shape[2] < pt or min(y.shape[3:]) < 2:
        return None
    return pt


# A torch custom op, so that torch.compile sees one opaque call with a known output shape (dynamo
# cannot trace through the numpy views the Rust function takes).
@torch.library.custom_op("c3d_distill::temporal_conv_pool", mutates_args=())
def _temporal_conv_pool_op(y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pt: int) -> torch.Tensor:
    from .. import _native

    n, _, t, h, w = y.shape
    out = torch.empty(n, t // pt, h // 2, w // 2, weight.shape[0], dtype=y.dtype)
    _native.kernel_temporal_conv_pool(
        y.contiguous(memory_format=CL3).permute(0, 2, 3, 4, 1).numpy(),
        weight.contiguous().numpy(),
        bias.contiguous().numpy(),
        out.numpy(),
        pt=pt,
        threads=torch.get_num_threads(),
    )
    return out.permute(0, 4, 1, 2, 3)


@_temporal_conv_pool_op.register_fake
def _(y, weight, bias, pt):
    n, _, t, h, w = y.shape
    return y.new_empty(n, t // pt, h // 2, w // 2, weight.shape[0]).permute(0, 4, 1, 2, 3)


def temporal_conv_pool(
    y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pt: int
) -> torch.Tensor:
    """max_pool3d(ReLU(conv3d(y, weight, bias, padding (1,0,0))), (pt,2,2)) in one pass (rust/conv.rs):
    channels-last-3d (N, C, T, H, W) in, channels-last-3d (N, Cout, T/pt, H/2, W/2) out. Inference
    only (no autograd formula): callers check :func:`_can_fuse_pool` first."""
    b = bias if bias is not None else weight.new_zeros(weight.shape[0])
    return _temporal_conv_pool_op(y, weight.detach(), b.detach(), pt)


def sp_stage(x: torch.Tensor, mod: nn.Module, pool=None) -> tuple[torch.Tensor, bool]:
    """:class:`SPConv` on a channels-last-3d (N, Cin, T, H, W) → channels-last-3d (N, Cout, T, H, W),
    and whether ``pool`` (the max-pool after the stage, if given) was applied too (fused in Rust)."""
    n = x.shape[0]
    sbn, tbn = mod.spatial_bn, mod.temporal_bn
    train_bn = sbn is not None and sbn.training
    frames = frames_view(x)
    if train_bn:
        y = F.conv2d(frames, mod.spatial.weight[:, :, 0], mod.spatial.bias, padding=1)
        y = F.relu_(_bn_train(y, sbn))
    else:
        ws, bs = _bn_folded(mod.spatial, sbn)
        y = conv_relu(frames, ws[:, :, 0], bs, (1, 1))
    y = from_frames(y, n)  # (N, Cout, T, H, W) channels-last-3d, no copy
    # The (3,1,1) conv stays a 3-D conv on the NDHWC tensor: oneDNN's kernel for it ran 2–5× faster than
    # the same conv as a (3,1) 2-D conv over the (T, H·W) plane or as three shifted GEMMs (64–128 channels).
    if train_bn:
        z = F.conv3d(y, mod.temporal.weight, mod.temporal.bias, padding=(1, 0, 0))
        z = F.relu_(_bn_train(frames_view(z), tbn))
        return from_frames(z, n), False
    wt, bt = _bn_folded(mod.temporal, tbn)
    pt = _can_fuse_pool(y, wt, pool)
    if pt is not None:
        return temporal_conv_pool(y, wt, bt, pt), True
    return conv_relu(y, wt, bt, (1, 0, 0)), False


# 3-D convs run channels-last while frames are large (oneDNN's direct NDHWC kernels win there: conv1
# 3→64 at 112² about 3× plain, 256→256 at 28² about 1.7×) and NCDHW once they are small and wide (at
# 14² and 7² with 512 channels the channels-last kernels measured 0.3–0.6× of NCDHW, single thread).
CHANNELS_LAST_MIN_HW = 28


def _layout_3d(st) -> torch.memory_format:
    return CL3 if min(st.hw) >= CHANNELS_LAST_MIN_HW else torch.contiguous_format


def run_fast(model: nn.Module, x: torch.Tensor, stages: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """The fast forward of a ``VideoNet`` up to the flattened pool5 features (N, feature_dim)."""
    for st in model.plan:
        mod = getattr(model, st.name)
        pooled = False
        if st.kind == "3d":
            x = conv_relu(x.contiguous(memory_format=_layout_3d(st)), mod.weight, mod.bias, (1, 1, 1))
        elif st.kind == "sp":
            # The pool can be fused into the stage unless the caller keeps the stage's own output (a
            # recorder that only notes when stages finish says so with ``keeps_tensors = False``).
            fusable = st.pool if stages is None or not getattr(stages, "keeps_tensors", True) else None
            x, pooled = sp_stage(x.contiguous(memory_format=CL3), mod, fusable)
        else:
            # The 2-D part is wide (1024–2048 channels) at 28² and below: NCHW kernels are faster there,
            # and the fold of a contiguous (N, C, T, H, W) tensor is a view.
            x = x.contiguous()
            if x.dim() == 5:
                x = model.fold(x)
            x = conv_relu(x, mod.weight, mod.bias, (1, 1))
        if stages is not None:
            stages[st.name] = x
        if st.pool is not None and not pooled:
            k, s, p = st.pool
            x = (F.max_pool2d if st.kind == "2d" else F.max_pool3d)(x, k, s, p)
    return x.flatten(1)


# Module attributes holding hooks that the fast path would bypass (forward and backward, per module and
# for all modules). A backward hook needs the module's own call too: the fast path computes the stage
# with the functional ops, so a hook registered on the module would never fire.
_HOOK_ATTRS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


def has_stage_hooks(model: nn.Module) -> bool:
    """True when hooks on the stage modules (forward or backward, or global module hooks) expect the plain
    path."""
    from torch.nn.modules import module as _m

    if any(getattr(_m, name, None) for name in _GLOBAL_HOOKS):
        return True

    def hooked(mod) -> bool:
        return any(getattr(mod, name, None) for name in _HOOK_ATTRS)

    for st in model.plan:
        if any(hooked(mod) for mod in getattr(model, st.name).modules()):
            return True
    for name in ("fold", "pool1", "pool2", "pool3", "pool4", "pool5"):
        mod = getattr(model, name, None)
        if mod is not None and hooked(mod):
            return True
    return False


class Executor:
    """The fast path as :class:`~c3d_distill.models.net.FastExecutor`: the factory installs it."""

    def prepare(self, model: nn.Module, enabled: bool) -> None:
        apply_fast(model, enabled)

    def forward(self, model: nn.Module, x: torch.Tensor, stages: dict[str, torch.Tensor] | None):
        return None if has_stage_hooks(model) else run_fast(model, x, stages)


EXECUTOR = Executor()
