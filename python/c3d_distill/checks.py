"""The argument checks every layer shares, so that a wrong number is refused the same way wherever it is
given: a wrong type is an :class:`ArgumentTypeError` (both a ``TypeError`` and a ``ValueError``: a caller
catching either sees it, and the command line reports it as a user error), a value out of range a
``ValueError``; both messages start with the argument's name."""

from __future__ import annotations

import operator
from typing import Any


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a float, a bool or a string where an integer is needed)."""


def integer(value: Any, name: str, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as an int in ``minimum..maximum``. Accepts numpy integers (``operator.index``); rejects
    bools and floats, which are always a mistake here."""
    if isinstance(value, bool):
        raise ArgumentTypeError(f"{name}: expected an integer, got bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ArgumentTypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}") from None
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name}: must be at most {maximum}, got {v}")
    return v
