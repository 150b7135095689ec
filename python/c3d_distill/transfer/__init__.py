"""Weight transfer: start every student as an approximation of the pretrained C3D teacher (DESIGN.md §3).

``transfer(teacher, name, **model_kwargs) -> (student, report)`` builds and fills the student;
``fold_hint_pairs(teacher, student)`` names the stages whose outputs share a space after folding;
``register(subparsers)`` adds ``c3d-distill transfer``. The kernel arithmetic lives in :mod:`.kernels`.
"""

from .cli import register
from .core import TransferReport, align, fold_hint_pairs, make_probe, transfer
from .kernels import band_expand, band_pool, rel_err, sp_compose, sp_matrix, sp_split

__all__ = [
    "TransferReport",
    "align",
    "band_expand",
    "band_pool",
    "fold_hint_pairs",
    "make_probe",
    "register",
    "rel_err",
    "sp_compose",
    "sp_matrix",
    "sp_split",
    "transfer",
]
