"""The ``c3d-distill`` command. Each subsystem registers its own subcommands (``register(subparsers)``),
so this file only lists where they live; a module that fails to import is reported, not hidden.

Only the module of the command being run is imported (``probe`` and ``data`` never import torch, which
takes seconds); ``--help`` and a missing command import them all. Errors a user can fix (a bad option,
a missing file, a corrupt video or checkpoint) are printed as ``c3d-distill: error: …`` with exit status 2;
``--debug`` or ``C3D_DISTILL_DEBUG=1`` shows the traceback instead."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Modules that contribute subcommands, in the order --help lists them.
COMMAND_MODULES = [
    "c3d_distill.clips.cli",  # probe
    "c3d_distill.datasets.cli",  # data info, data synth
    "c3d_distill.models.cli",  # models
    "c3d_distill.transfer.cli",  # transfer
    "c3d_distill.train.cli",  # train, distill
    "c3d_distill.evaluate.cli",  # eval
    "c3d_distill.extract.cli",  # extract
    "c3d_distill.report.cli",  # report
    "c3d_distill.export.cli",  # export
    "c3d_distill.demo",  # demo
]
# Which module registers each command: running one imports that module alone.
COMMANDS = {
    "probe": "c3d_distill.clips.cli",
    "data": "c3d_distill.datasets.cli",
    "models": "c3d_distill.models.cli",
    "transfer": "c3d_distill.transfer.cli",
    "train": "c3d_distill.train.cli",
    "distill": "c3d_distill.train.cli",
    "eval": "c3d_distill.evaluate.cli",
    "extract": "c3d_distill.extract.cli",
    "report": "c3d_distill.report.cli",
    "export": "c3d_distill.export.cli",
    "demo": "c3d_distill.demo",
}
DEBUG_ENV = "C3D_DISTILL_DEBUG"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``command`` (one of :data:`COMMANDS`) only the module that registers it."""
    parser = argparse.ArgumentParser(
        prog="c3d-distill",
        description="Distil C3D into fast 2D / (2+1)D students, fed by a Rust clip loader.",
        epilog=f"Errors print one line (exit status 2); --debug or {DEBUG_ENV}=1 shows the traceback.",
    )
    parser.add_argument("--version", action="version", version=f"c3d-distill {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that subsystem is not part of this build
            raise
        module.register(sub)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option), if it is a known one."""
    for a in argv:
        if not a.startswith("-"):
            return a if a in COMMANDS else None
        if a in ("-h", "--help"):
            return None
    return None


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the input or the options are wrong, not the program: their message says it all.
    (CheckpointError and DatasetError are ValueErrors; VideoDecodeError is a RuntimeError.)"""
    errors: list[type[BaseException]] = [ValueError, OSError, FloatingPointError]
    try:
        from ._native import VideoDecodeError

        errors.append(VideoDecodeError)
    except ImportError:  # the extension is not built: nothing raises it
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from .log import configure_cli

    configure_cli()
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output left (`c3d-distill models --json | head`): not an error of ours. Point
        # stdout at /dev/null so that the interpreter's final flush does not fail again (Python's
        # documented recipe, "Note on SIGPIPE" in the signal module).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except _user_errors() as exc:
        if debug:
            raise
        msg = str(exc) or type(exc).__name__
        print(f"c3d-distill: error: {msg}", file=sys.stderr)
        print(f"(--debug or {DEBUG_ENV}=1 shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
