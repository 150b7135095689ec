"""``c3d-distill export SOURCE --format F --out FILE``: a network for deployment, checked before it is kept."""

from __future__ import annotations

import argparse
import sys

from .names import EXPORT_EXTRA, FORMATS, OUTPUTS, RUNTIMES

DESCRIPTION = f"""Export the network of a run folder, a run checkpoint or a public C3D state dict as ONNX,
TorchScript or a torch.export ExportedProgram (.pt2), with a dynamic batch dimension. The plain PyTorch layers
are exported (the fast CPU paths are this package's own code). Before the command returns, the file is loaded
back as a deployment loads it ({", ".join(RUNTIMES.values())}) and compared with the eager model on random clips
at batch 1 and 3; a max relative error of 1e-4 or more is an error and keeps nothing. FILE.json records the
input and output names and shapes, the clip pipeline (frames, stride, resize, crop, channel order, mean, std)
and the source's sha256. ONNX needs the export extra: {EXPORT_EXTRA}."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a network as ONNX / TorchScript / .pt2, checked against the eager model",
        description=DESCRIPTION,
    )
    p.add_argument("source", metavar="SOURCE", help="run folder, run checkpoint or public C3D state dict")
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (and FILE.json beside it)")
    p.add_argument(
        "--output",
        choices=OUTPUTS,
        help="what the exported network returns (default: logits when it has a classifier, else pool5 features)",
    )
    p.add_argument("--frames", type=int, help="clip length (default: the source's)")
    p.add_argument(
        "--size",
        type=int,
        help="square input size (default: the source's crop); the resize of the clip pipeline scales with it",
    )
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument(
        "--width", type=float, help="width of a public state dict (default: conv1's channels / 64)"
    )
    p.add_argument(
        "--preprocess", help="clip preset of a public state dict (default: its port's, by key layout)"
    )
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..runs.source import open_source
    from .core import ExportError, export_model

    src = open_source(args.source, option="SOURCE", width=args.width, preprocess=args.preprocess)
    clip = src.clip()
    frames = clip["frames"] if args.frames is None else args.frames
    crop = int(src.preset.crop)
    size = crop if args.size is None else args.size
    if size != crop:  # the same pipeline for another crop: the resize scales with it
        clip = {**clip, **src.preset.for_crop(size).read_kwargs()}
    clip["frames"] = frames
    source = {
        "path": str(src.path),
        "kind": src.kind,
        "sha256": src.sha256(),
        "preset": src.preset.to_dict(),  # mean/std in the port's own units (pixel_range)
        "layout": src.layout,
    }
    try:
        export_model(
            src.model,
            args.format,
            args.out,
            frames=frames,
            size=size,
            output=args.output,
            opset=args.opset,
            clip=clip,
            source=source,
            log=print,
        )
    except ExportError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"c3d-distill: error: {exc}", file=sys.stderr)
        return exc.exit_status
    return 0
