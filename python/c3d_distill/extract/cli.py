"""``c3d-distill extract``: features of every clip of every video, to .npy files or one HDF5 file."""

from __future__ import annotations

import argparse
import json

from ..datasets import SPEC_HELP as DATA_HELP

LAYERS = ("pool5", "fc6", "fc7", "logits")  # the same as extract.core.LAYERS (which imports torch)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="features (pool5, fc6, fc7, logits) of every clip of every video",
        description="Dense clips (starts 0, STRIDE, 2·STRIDE, … while a whole clip fits), each video decoded in "
        "one pass, the network in batches. Writes OUT/<video path relative to the data root or to the common "
        "folder of --videos>.npy of shape (clips, dim) (NAME.LAYER.npy for several layers) or OUT/features.h5, "
        "and OUT/manifest.jsonl (frames, fps, starts, times, shape, status per video). A rerun with the same "
        "source and settings finishes what is missing; under torchrun each rank takes its share of the videos.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("source", help="run folder, run checkpoint or public C3D state dict (its clip pipeline is used)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--videos", nargs="+", metavar="PATH", help="video files")
    g.add_argument("--data", metavar="SPEC", help=DATA_HELP)
    p.add_argument("--split", default=None, help="split of --data (default: train and test, every video)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--layer", nargs="+", default=["pool5"], choices=LAYERS, help="layers to write")
    p.add_argument("--clip-len", type=int, default=None, help="frames per clip (default: the network's)")
    p.add_argument("--stride", type=int, default=None,
                   help="frames between clip starts (default: one clip, clip-len × the network's frame step)")
    p.add_argument("--format", choices=("npy", "h5"), default="npy")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="of the stored arrays")
    p.add_argument("--preprocess", metavar="NAME", help="the clip pipeline of a public state dict (default: its "
                   "port's, by its key layout)")
    p.add_argument("--short", choices=("repeat", "loop", "error"), default="repeat",
                   help="a video shorter than one clip: one clip repeating its last frame, looping, or an error")
    p.add_argument("--stream", type=int, default=None, help="video stream index (default: FFmpeg's best)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    p.add_argument("--threads", type=int, default=None, help="decode threads (default: the cores available)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="an unreadable video: stop naming it, or record it as failed in the manifest and go on")
    p.add_argument("--overwrite", action="store_true", help="replace features made with other settings in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_extract)


def _videos(args: argparse.Namespace) -> tuple[list[str], str | None]:
    if args.videos:
        if args.split is not None:
            raise ValueError("--split: only with --data")
        return list(args.videos), None
    from ..datasets import is_list_spec, load

    if is_list_spec(args.data):
        if args.split is not None:
            raise ValueError("--split: a list: spec is one split and takes none")
        vids = load(args.data)
        return vids.paths, vids.root
    splits = [args.split] if args.split else ["train", "test"]
    paths, root, seen = [], None, set()
    for s in splits:
        vids = load(args.data, s)
        root = vids.root
        paths += [p for p in vids.paths if p not in seen]
        seen.update(vids.paths)
    return paths, root


def cmd_extract(args: argparse.Namespace) -> int:
    from .. import distributed
    from .core import extract

    paths, root = _videos(args)
    try:
        res = extract(
            args.source, paths, args.out, root=root, layers=args.layer, clip_len=args.clip_len, step=args.stride,
            fmt=args.format, dtype=args.dtype, batch_size=args.batch_size, device=args.device, amp=args.amp,
            threads=args.threads, on_error=args.on_error, short=args.short, stream=args.stream,
            preprocess=args.preprocess, overwrite=args.overwrite, progress=args.progress,
        )
        if distributed.is_main():
            print(json.dumps(res, indent=2))
    finally:
        distributed.cleanup()
    return 0
