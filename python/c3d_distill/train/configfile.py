"""``--config FILE`` for ``train`` and ``distill``: settings from a YAML or JSON file (a run's own
``config.json`` works), under the flags given on the command line.

Precedence: a flag on the command line, then the file, then the flag's default (for the optimisation
flags: the run's recipe, :mod:`c3d_distill.runs.recipes`). To know which flags were given, :func:`prepare`
makes every option of the parser default to "absent" (``argparse.SUPPRESS``) and keeps the real defaults;
:func:`resolve` puts the three layers together into the full namespace the command reads.

Keys are the flags' names (``clip_grad`` or ``clip-grad``) or :class:`~c3d_distill.runs.config.RunConfig`
fields (what ``config.json`` holds: ``fast``, ``mean``, ``resize``, ...). An unknown key, a value of the
wrong type or outside a flag's choices is an error naming the file and the key. PyYAML reads YAML (its
``safe_load``: plain data, no object tags); a ``.json`` file is read with :mod:`json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from ..runs.config import RunConfig

_DEFAULTS = "_config_defaults"  # namespace attribute: {dest: real default}
_REQUIRED = "_config_required"  # namespace attribute: {dest: flag}
_FLAGS = "_config_flags"  # namespace attribute: {dest: action}
_FIELDS = "_config_fields"  # resolved namespace attribute: RunConfig fields from the file without a flag
# config.json keys that the run derives itself (not settings to carry over)
_DERIVED = {"extra", "recipe"}


def prepare(p: argparse.ArgumentParser) -> None:
    """Add ``--config`` to ``p`` and make its options' defaults absent (kept for :func:`resolve`)."""
    p.add_argument(
        "--config",
        metavar="FILE",
        help="settings from a YAML or JSON file (a run's config.json works): keys are flag names "
        "(clip_grad or clip-grad) or config.json fields; flags given on the command line win",
    )
    defaults: dict[str, Any] = {}
    required: dict[str, str] = {}
    flags: dict[str, argparse.Action] = {}
    for a in p._actions:
        if not a.option_strings or a.dest in ("help", "config"):
            continue
        if a.help and "%(" in a.help:  # expand %(default)… now, while the real default is known
            a.help = (a.help % {**vars(a), "prog": p.prog}).replace("%", "%%")
        if a.default is not argparse.SUPPRESS:
            defaults[a.dest] = a.default
        if a.required:
            a.required = False
            a.help = (a.help or "") + " (required: here or as a key in --config)"
            required[a.dest] = a.option_strings[0]
        flags[a.dest] = a
        a.default = argparse.SUPPRESS
    p.set_defaults(**{_DEFAULTS: defaults, _REQUIRED: required, _FLAGS: flags})


def load(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or JSON file (ValueError naming the file when it is not one)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"--config {path}: cannot read it ({exc.strerror or exc})") from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError: the parser's own message
        raise ValueError(f"--config {path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} "
                         f"({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of settings, got a {type(data).__name__}")
    return data


def resolve(args: argparse.Namespace, mode: str) -> tuple[argparse.Namespace, dict[str, Any]]:
    """``(full namespace, RunConfig fields from the file that have no flag)``: command line over
    ``--config`` over defaults. Raises ValueError naming the file and key, or a missing required flag.
    A namespace resolved already (or not made by a :func:`prepare`'d parser) is returned as it is."""
    if _DEFAULTS not in vars(args):
        return args, dict(getattr(args, _FIELDS, {}))
    given = {k: v for k, v in vars(args).items() if k not in (_DEFAULTS, _REQUIRED, _FLAGS)}
    defaults: dict[str, Any] = getattr(args, _DEFAULTS, {})
    required: dict[str, str] = getattr(args, _REQUIRED, {})
    flags: dict[str, argparse.Action] = getattr(args, _FLAGS, {})
    from_file: dict[str, Any] = {}
    fields_only: dict[str, Any] = {}
    path = given.get("config")
    if path:
        from_file, fields_only = _from_file(path, load(path), flags, mode)
    merged = {**defaults, **from_file, **given}
    missing = [flag for dest, flag in required.items() if merged.get(dest) is None]
    if missing:
        raise ValueError(f"{', '.join(missing)}: required (on the command line or as a key in --config FILE)")
    ns = argparse.Namespace(**merged)
    ns.config = path
    setattr(ns, _FIELDS, fields_only)
    return ns, fields_only


def _from_file(path: str, data: dict[str, Any], flags: dict[str, argparse.Action], mode: str):
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    to_flags: dict[str, Any] = {}
    to_fields: dict[str, Any] = {}
    for key, value in data.items():
        k = str(key).replace("-", "_")
        if k == "mode":
            if value != mode:
                raise ValueError(f"--config {path}: mode {value!r} is another command's settings (this is {mode})")
            continue
        if k in _DERIVED:
            continue
        if k == "fast" and "plain" in flags:
            k, value = "plain", not bool(value)
        # A run's config.json holds resize/mean/std in the reader's 0-1 units and preprocess as the preset's
        # values: they are the run's pipeline as recorded, not the flags (given in the preset's units).
        if k in ("resize", "mean", "std") or (k == "preprocess" and isinstance(value, dict)):
            to_fields[k] = tuple(value) if isinstance(value, list) else value
        elif k in flags:
            to_flags[k] = _check_value(path, key, value, flags[k])
        elif k in fields:
            to_fields[k] = tuple(value) if isinstance(value, list) else value
        else:
            known = sorted(set(flags) | (fields - _DERIVED))
            raise ValueError(f"--config {path}: unknown key {key!r} (known: {', '.join(known)})")
    return to_flags, to_fields


def _check_value(path: str, key: str, value: Any, action: argparse.Action) -> Any:
    if value is None:
        return None
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ValueError(f"--config {path}: {key}: expected true or false, got {value!r}")
        return value
    if action.type is not None and not isinstance(value, bool):
        try:
            value = action.type(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--config {path}: {key}: {value!r} is not a valid {action.option_strings[0]} "
                             f"value ({exc})") from exc
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"--config {path}: {key}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value
