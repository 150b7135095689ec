"""Warnings and notices of the library go to the ``c3d_distill`` logger; the command line shows them in one
format (``WARNING: …`` on stderr, notices as they are). Under ``torchrun`` only rank 0 speaks, unless a
message is about that rank's own share of the work (``every_rank=True``)."""

from __future__ import annotations

import logging
import os
import sys
import warnings

logger = logging.getLogger("c3d_distill")

_EVERY_RANK = "c3d_distill_every_rank"


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def warn(message: str, *, every_rank: bool = False) -> None:
    """A warning: something the user should know and may want to change."""
    logger.warning(message, extra={_EVERY_RANK: every_rank})


def notice(message: str, *, every_rank: bool = False) -> None:
    """A plain notice (what a run decided, nothing to fix)."""
    logger.info(message, extra={_EVERY_RANK: every_rank})


class _RankFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _rank() == 0 or bool(getattr(record, _EVERY_RANK, False))


class _CliFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return text if record.levelno < logging.WARNING else f"{record.levelname}: {text}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a test's captured stream, a redirected one)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it once; the property ignores that
        pass


def configure_cli() -> None:
    """One handler for the command line (idempotent): notices and warnings on stderr, rank 0 only."""
    if any(isinstance(h, _StderrHandler) for h in logger.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(_CliFormatter())
    handler.addFilter(_RankFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # ``warnings.warn`` of the library (and of torch) in the same one-line format, not with file and line.
    warnings.showwarning = _show_warning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logger.warning(str(message), extra={_EVERY_RANK: False})
