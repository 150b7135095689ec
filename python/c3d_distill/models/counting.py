"""Parameter and multiply-accumulate counts, computed from the layer shapes (no forward pass needed)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .net import VideoNet

HEAD_LAYERS = ("fc6", "fc7", "fc8")


def count_params(model: nn.Module, part: str = "all") -> int:
    """Number of parameters (weights and biases; BatchNorm affine included, running stats not).

    part: ``"all"``, ``"backbone"`` (everything but fc6/fc7/fc8) or ``"head"`` (fc6/fc7/fc8 only).
    """
    if part not in ("all", "backbone", "head"):
        raise ValueError(f"part: expected 'all', 'backbone' or 'head', got {part!r}")
    total = 0
    for name, p in model.named_parameters():
        is_head = name.split(".", 1)[0] in HEAD_LAYERS
        if part == "all" or (part == "head") == is_head:
            total += p.numel()
    return total


def _normalise_shape(model: VideoNet, input_shape: Sequence[int]) -> tuple[int, int, int, int, int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 4:
        shape = (1, *shape)
    if len(shape) != 5:
        raise ValueError(f"input_shape: expected (N, C, T, H, W) or (C, T, H, W), got {tuple(input_shape)}")
    n, c, t, h, w = shape
    want = (3, model.frames, *model.input_hw)
    if (c, t, h, w) != want:
        raise ValueError(
            f"input_shape: {model.name} is built for (N, {', '.join(map(str, want))}), got {shape}"
        )
    if n <= 0:
        raise ValueError(f"input_shape: batch size must be positive, got {n}")
    return shape


def layer_macs(model: nn.Module, input_shape: Sequence[int]) -> list[dict]:
    """Per-layer multiply-accumulates of convs and linears for one input of ``input_shape``.

    Rows: ``{"layer", "kind", "macs", "out_shape"}``, in execution order; ``layer`` is the parameter
    prefix (``conv1``, ``conv2.spatial``, ``fc6`` …). For a :class:`VideoNet` the counts follow from the
    plan; for any other module they come from forward hooks on its Conv/Linear layers (one zero input).
    """
    if isinstance(model, VideoNet):
        return _videonet_macs(model, input_shape)
    return _hooked_macs(model, input_shape)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Total multiply-accumulates of the convs and linears for one forward pass on ``input_shape``
    (BatchNorm, ReLU and pooling are not MACs). C3D at (1, 3, 16, 112, 112): about 38.5 G."""
    return sum(r["macs"] for r in layer_macs(model, input_shape))


def _videonet_macs(model: VideoNet, input_shape: Sequence[int]) -> list[dict]:
    n = _normalise_shape(model, input_shape)[0]
    rows = []
    for st in model.plan:
        h, w = st.hw
        if st.kind == "3d":
            rows.append(
                dict(
                    layer=st.name,
                    kind="conv3d",
                    macs=n * st.cout * st.t_out * h * w * st.cin * 27,
                    out_shape=(n, st.cout, st.t_out, h, w),
                )
            )
        elif st.kind == "sp":
            out = (n, st.cout, st.t_out, h, w)
            vol = n * st.t_out * h * w * st.cout
            rows.append(
                dict(layer=f"{st.name}.spatial", kind="conv3d(1,3,3)", macs=vol * st.cin * 9, out_shape=out)
            )
            rows.append(
                dict(layer=f"{st.name}.temporal", kind="conv3d(3,1,1)", macs=vol * st.cout * 3, out_shape=out)
            )
        else:
            rows.append(
                dict(
                    layer=st.name,
                    kind="conv2d",
                    macs=n * st.cout * h * w * st.cin * 9,
                    out_shape=(n, st.cout, h, w),
                )
            )
    if model.num_classes is not None:
        for name in HEAD_LAYERS:
            lin = getattr(model, name)
            rows.append(
                dict(
                    layer=name,
                    kind="linear",
                    macs=n * lin.in_features * lin.out_features,
                    out_shape=(n, lin.out_features),
                )
            )
    return rows


def _hooked_macs(model: nn.Module, input_shape: Sequence[int]) -> list[dict]:
    rows: list[dict] = []
    names = {m: name for name, m in model.named_modules()}

    def hook(mod, inputs, output):
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            k = 1
            for v in mod.kernel_size:
                k *= v
            macs = output.numel() * (mod.in_channels // mod.groups) * k
        else:
            macs = output.numel() // output.shape[-1] * mod.in_features * mod.out_features
        rows.append(
            dict(
                layer=names[mod],
                kind=type(mod).__name__.lower(),
                macs=int(macs),
                out_shape=tuple(output.shape),
            )
        )

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
    ]
    try:
        p = next(model.parameters(), None)
        x = torch.zeros(tuple(input_shape), device=p.device if p is not None else "cpu")
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return rows
