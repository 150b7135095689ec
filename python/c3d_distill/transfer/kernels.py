"""Kernel arithmetic of the weight transfer, on plain tensors (no model knowledge).

Layouts used throughout:

- a 3D kernel ``W3`` is ``(Cout, Cin, kt, kh, kw)`` as in ``nn.Conv3d``;
- the fold maps ``(N, C, T, H, W)`` to ``(N, C·T, H, W)`` with channel ``c·T + t``, so a 2D kernel on
  folded tensors is ``(Cout·T_out, Cin·T_in, kh, kw)`` with output channel ``o·T_out + t'`` and input
  channel ``i·T_in + t``;
- an SP pair is a spatial kernel ``(M, Cin, 1, kh, kw)`` followed by a temporal kernel ``(Cout, M, kt, 1, 1)``.

All functions compute in float64 internally (the SVD and the sums of band rows) and return tensors in
the dtype of the input kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def band_expand(w3: Tensor, b3: Tensor | None, frames: int, *, padding: int | None = None):
    """The fold identity: a 3D conv over ``frames`` frames as one 2D conv on the folded tensor.

    ``W2[o·T + t', i·T + t] = W3[o, i, t − t' + p]`` for ``0 ≤ t − t' + p < kt`` (else 0), ``p`` the
    temporal padding (``(kt − 1) / 2`` by default, i.e. "same"), temporal stride 1. Frames outside
    ``[0, T)`` are the 3D conv's zero padding, hence the zero band edges.

    Args:
        w3: ``(Cout, Cin, kt, kh, kw)``.
        b3: ``(Cout,)`` or ``None``.
        frames: ``T``, the number of frames the 3D conv sees.
    Returns:
        ``(w2, b2)``: ``w2`` is ``(Cout·T, Cin·T, kh, kw)``; ``b2`` is ``(Cout·T,)`` (bias repeated over
        ``t'``) or ``None``.
    """
    if w3.dim() != 5:
        raise ValueError(f"band_expand: w3 must be a 5D Conv3d kernel (Cout, Cin, kt, kh, kw), got shape "
                         f"{tuple(w3.shape)}")
    if frames < 1:
        raise ValueError(f"band_expand: frames must be >= 1, got {frames}")
    cout, cin, kt, kh, kw = w3.shape
    p = (kt - 1) // 2 if padding is None else padding
    t_out = frames + 2 * p - kt + 1
    if t_out != frames:
        raise ValueError(f"band_expand: temporal kernel {kt} with padding {p} changes the number of frames "
                         f"({frames} -> {t_out}); only 'same' temporal convs fold into one 2D conv")
    w2 = w3.new_zeros(cout, frames, cin, frames, kh, kw)
    for k in range(kt):
        for tp in range(frames):
            t = tp + k - p
            if 0 <= t < frames:
                w2[:, tp, :, t] = w3[:, :, k]
    w2 = w2.reshape(cout * frames, cin * frames, kh, kw)
    b2 = None if b3 is None else b3.repeat_interleave(frames)
    return w2, b2


def band_pool(w2: Tensor, b2: Tensor | None, frames: int):
    """Absorb a temporal pool of kernel 2, stride 2 into a folded 2D conv by averaging band rows.

    Output channel ``o·S + s`` (``S = frames // 2``) is the mean of the rows ``o·T + 2s`` and
    ``o·T + 2s + 1``: the conv followed by a temporal *average* pool, exactly (an odd last frame is
    dropped, as ``MaxPool3d`` / ``AvgPool3d`` with kernel 2 do). A temporal *max* pool after the ReLU is
    approximated by it.

    Args:
        w2: ``(Cout·T, Cin_folded, kh, kw)`` (e.g. from :func:`band_expand`).
        b2: ``(Cout·T,)`` or ``None``.
        frames: ``T``.
    Returns:
        ``(w, b)``: ``(Cout·S, Cin_folded, kh, kw)`` and ``(Cout·S,)`` or ``None``.
    """
    if w2.shape[0] % frames:
        raise ValueError(f"band_pool: {w2.shape[0]} output channels are not a multiple of frames={frames}")
    if frames < 2:
        raise ValueError(f"band_pool: a temporal pool of 2 needs at least 2 frames, got {frames}")
    cout = w2.shape[0] // frames
    s = frames // 2
    w = w2.reshape(cout, frames, *w2.shape[1:])
    w = 0.5 * (w[:, 0 : 2 * s : 2] + w[:, 1 : 2 * s : 2])
    w = w.reshape(cout * s, *w2.shape[1:])
    b = None
    if b2 is not None:
        b = b2.reshape(cout, frames)
        b = (0.5 * (b[:, 0 : 2 * s : 2] + b[:, 1 : 2 * s : 2])).reshape(cout * s)
    return w, b


@dataclass
class SPSplit:
    """A 3D kernel split into a spatial and a temporal kernel (see :func:`sp_split`).

    ``spatial``: ``(M, Cin, 1, kh, kw)``; ``temporal``: ``(Cout, M, kt, 1, 1)``; ``spatial_bias`` ``(M,)``
    (zeros); ``temporal_bias`` ``(Cout,)`` or ``None``; ``singular_values``: all of them, descending;
    ``rank``: how many components were kept; ``signed_pairs``: channels ``[0, rank)`` hold them with ``+``
    sign and ``[rank, 2·rank)`` with ``−`` sign. The remaining channels are zero.
    """

    spatial: Tensor
    spatial_bias: Tensor
    temporal: Tensor
    temporal_bias: Tensor | None
    singular_values: Tensor
    rank: int
    signed_pairs: bool = False

    def effective(self) -> Tensor:
        """The 3D kernel ``(Cout, Cin, kt, kh, kw)`` the pair computes when the ReLU between passes what it
        must: the linear composite for a plain split; for signed pairs, the ``+`` half only (the linear
        composite of both halves would count each component twice, but through the ReLU it passes once)."""
        if not self.signed_pairs:
            return sp_compose(self.spatial, self.temporal)
        r = self.rank
        return sp_compose(self.spatial[:r], self.temporal[:, :r])


def sp_matrix(w3: Tensor) -> Tensor:
    """``(Cout, Cin, kt, kh, kw)`` → the ``(Cout·kt) × (Cin·kh·kw)`` matrix whose rank bounds SP's.

    Row ``o·kt + k``, column ``(i·kh + y)·kw + x``. The temporal axis goes with the *output* channel: the
    composite of a spatial kernel ``S[m, i, y, x]`` and a temporal kernel ``T[o, m, k]`` is
    ``Σ_m T[o, m, k] · S[m, i, y, x]``, a product of a ``(Cout·kt) × M`` and an ``M × (Cin·kh·kw)`` matrix.
    (A plain ``w3.reshape(Cout·kt, -1)`` would pair rows with the wrong axes.)
    """
    cout, cin, kt, kh, kw = w3.shape
    return w3.permute(0, 2, 1, 3, 4).reshape(cout * kt, cin * kh * kw)


def sp_compose(spatial: Tensor, temporal: Tensor) -> Tensor:
    """The 3D kernel ``(Cout, Cin, kt, kh, kw)`` of a spatial conv followed by a temporal conv, no ReLU."""
    m, cin, _, kh, kw = spatial.shape
    cout, m2, kt, _, _ = temporal.shape
    if m != m2:
        raise ValueError(f"sp_compose: spatial has {m} output channels but temporal takes {m2}")
    w = torch.einsum("omk,miyx->oikyx", temporal[:, :, :, 0, 0], spatial[:, :, 0])
    return w


def sp_split(
    w3: Tensor, b3: Tensor | None, mid: int | None = None, *, signed_pairs: bool = False,
    svd: tuple[Tensor, Tensor, Tensor] | None = None,
) -> SPSplit:
    """Rank-``mid`` SVD of a 3D kernel into a (1, kh, kw) spatial and a (kt, 1, 1) temporal kernel.

    ``sp_matrix(w3) ≈ U_r S_r V_rᵀ``; temporal ``= U_r·sqrt(S_r)``, spatial ``= sqrt(S_r)·V_rᵀ``, spatial
    bias 0 (so a zero-padded frame stays zero after the spatial conv, as in the 3D conv), temporal bias
    ``= b3``. Exact (up to float error) for the linear composite when ``rank(sp_matrix) ≤ r``, e.g. a
    first layer with ``Cin·kh·kw = 27 ≤ Cout``.

    ``signed_pairs``: spend two mid channels per component, ``+v`` and ``−v`` spatially and ``+u``,
    ``−u`` temporally, so that ``relu(z) − relu(−z) = z`` carries the component through the ReLU
    between the two convs exactly, at rank ``mid // 2``.

    Args:
        w3: ``(Cout, Cin, kt, kh, kw)``; b3: ``(Cout,)`` or ``None``; mid: ``M``, the number of channels
        between the two convs (default ``Cout``); svd: ``torch.linalg.svd(sp_matrix(w3).double(),
        full_matrices=False)`` when the caller already has it.
    """
    if w3.dim() != 5:
        raise ValueError(f"sp_split: w3 must be a 5D Conv3d kernel, got shape {tuple(w3.shape)}")
    cout, cin, kt, kh, kw = w3.shape
    mid = cout if mid is None else mid
    mat = sp_matrix(w3).double()
    u, s, vh = torch.linalg.svd(mat, full_matrices=False) if svd is None else svd
    r = min(mid // 2 if signed_pairs else mid, s.numel())
    root = s[:r].sqrt()
    a = u[:, :r] * root  # (Cout·kt, r)
    b = root[:, None] * vh[:r]  # (r, Cin·kh·kw)
    if signed_pairs:
        a = torch.cat([a, -a], dim=1)
        b = torch.cat([b, -b], dim=0)
    used = b.shape[0]
    spatial = mat.new_zeros(mid, cin * kh * kw)
    spatial[:used] = b
    temporal = mat.new_zeros(cout * kt, mid)
    temporal[:, :used] = a
    spatial = spatial.reshape(mid, cin, 1, kh, kw).to(w3.dtype)
    temporal = temporal.reshape(cout, kt, mid).permute(0, 2, 1).reshape(cout, mid, kt, 1, 1).to(w3.dtype)
    return SPSplit(
        spatial=spatial.contiguous(),
        spatial_bias=w3.new_zeros(mid),
        temporal=temporal.contiguous(),
        temporal_bias=None if b3 is None else b3.clone(),
        singular_values=s.to(w3.dtype),
        rank=r,
        signed_pairs=signed_pairs,
    )


def rel_err(approx: Tensor, ref: Tensor) -> float:
    """``‖approx − ref‖_F / ‖ref‖_F`` in float64 (``inf`` when ``ref`` is zero and ``approx`` is not)."""
    if approx.shape != ref.shape:
        raise ValueError(f"rel_err: shapes differ, {tuple(approx.shape)} vs {tuple(ref.shape)}")
    a, r = approx.double(), ref.double()
    den = r.norm().item()
    num = (a - r).norm().item()
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def cosine(a: Tensor, b: Tensor) -> float:
    """Mean over the batch of the cosine similarity of rows of ``a`` and ``b`` (both ``(N, D)``)."""
    return torch.nn.functional.cosine_similarity(a.double().flatten(1), b.double().flatten(1), dim=1).mean().item()
