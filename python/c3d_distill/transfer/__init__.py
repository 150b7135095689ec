"""Weight transfer: start every student as an approximation of the pretrained C3D teacher.

``transfer(teacher, name, **model_kwargs) -> (student, report)`` builds and fills the student;
``fold_hint_pairs(teacher, student)`` names the stages whose outputs share a space after folding;
The kernel arithmetic lives in :mod:`.kernels`.
Everything is imported on first use (it needs torch, which takes seconds to import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_WHERE = {
    "TransferReport": ".summary",
    "align": ".stages",
    "fold_hint_pairs": ".stages",
    "make_probe": ".summary",
    "transfer": ".core",
    "band_expand": ".kernels",
    "band_pool": ".kernels",
    "rel_err": ".kernels",
    "sp_compose": ".kernels",
    "sp_matrix": ".kernels",
    "sp_split": ".kernels",
}

if TYPE_CHECKING:
    from .core import transfer
    from .kernels import band_expand, band_pool, rel_err, sp_compose, sp_matrix, sp_split
    from .stages import align, fold_hint_pairs
    from .summary import TransferReport, make_probe

__getattr__ = lazy_attributes(__name__, _WHERE)


__all__ = [
    "TransferReport",
    "align",
    "band_expand",
    "band_pool",
    "fold_hint_pairs",
    "make_probe",
    "rel_err",
    "sp_compose",
    "sp_matrix",
    "sp_split",
    "transfer",
]
