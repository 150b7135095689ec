"""``c3d-distill models``: the zoo as a table (parameters, GMACs, output shape)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the models: parameters, GMACs, output shape",
        description="List the registered models with backbone/head parameters, GMACs per clip and output shape.",
    )
    p.add_argument(
        "--num-classes", type=int, default=101, help="head size for the head parameter count (101)"
    )
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (1.0)")
    p.add_argument("--frames", type=int, default=16, help="clip length, a multiple of 16 (16)")
    p.add_argument("--size", type=int, default=112, help="square input size (112)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a markdown table")
    p.set_defaults(func=run)


def model_rows(num_classes: int = 101, width: float = 1.0, frames: int = 16, size: int = 112) -> list[dict]:
    """One row per registered model (built on the meta device: no memory, no initialisation cost)."""
    import torch

    from .counting import count_macs, count_params
    from .factory import create_model, list_models

    rows = []
    for name in list_models():
        with torch.device("meta"):
            m = create_model(name, num_classes, width=width, frames=frames, size=size, fast=False)
        rows.append(
            dict(
                name=name,
                backbone_params=count_params(m, "backbone"),
                head_params=count_params(m, "head"),
                gmacs=count_macs(m, (1, 3, frames, size, size)) / 1e9,
                feature_dim=m.feature_dim,
                output_shape=[1, num_classes],
            )
        )
    return rows


def run(args: argparse.Namespace) -> int:
    rows = model_rows(args.num_classes, args.width, args.frames, args.size)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    shape = f"3×{args.frames}×{args.size}×{args.size}"
    print(f"| model | backbone params | head params | GMACs ({shape}) | features | output |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['backbone_params']:,} | {r['head_params']:,} | {_gmacs(r['gmacs'])} | "
            f"{r['feature_dim']} | (N, {args.num_classes}) |"
        )
    return 0


def _gmacs(g: float) -> str:
    """Two decimals for full-size models; three significant digits below 1 (the tiny preset's models
    differ in the third)."""
    return f"{g:.2f}" if g >= 1 else f"{g:.3g}"
