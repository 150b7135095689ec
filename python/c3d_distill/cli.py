"""The ``c3d-distill`` command. Each subsystem registers its own subcommands (``register(subparsers)``),
so this file only lists where they live; a module that fails to import is reported, not hidden."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute subcommands, in the order --help lists them.
COMMAND_MODULES = [
    "c3d_distill.data.cli",  # probe
    "c3d_distill.datasets.cli",  # data info, data synth
    "c3d_distill.models.cli",  # models
    "c3d_distill.transfer",  # transfer
    "c3d_distill.train.cli",  # train, distill, eval, report, demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="c3d-distill",
        description="Distil C3D into fast 2D / (2+1)D students, fed by a Rust clip loader.",
    )
    parser.add_argument("--version", action="version", version=f"c3d-distill {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
