"""The progress bar of every long job (training, evaluation, checks over many videos): tqdm, shown only
where asked for (``--no-progress``, rank 0 under torchrun), redrawn at most twice a second."""

from __future__ import annotations

from collections.abc import Iterable


def progress_bar(iterable: Iterable, total: int | None, desc: str, enabled: bool, **kw):
    """``iterable`` itself when ``enabled`` is false, else a tqdm over it (which needs a terminal or a log)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5, **kw)
