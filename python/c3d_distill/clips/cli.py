"""``c3d-distill probe FILE...``: what the loader sees in each file."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="probe video files: size, fps, true frame count, keyframes")
    p.add_argument("paths", nargs="+", help="video files")
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.set_defaults(func=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    from . import VideoDecodeError, probe

    failed = 0
    for path in args.paths:
        try:
            info = probe(path)
        except (FileNotFoundError, VideoDecodeError) as exc:
            # The one error format of the command line; the other files are still probed.
            print(f"c3d-distill: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps(info))
            continue
        keys = info["keyframes"]
        shown = ", ".join(map(str, keys[:8])) + (f", … ({len(keys)} in all)" if len(keys) > 8 else "")
        print(
            f"{info['path']}\n  {info['codec']} {info['width']}x{info['height']} @ {info['fps']:.3f} fps, "
            f"{info['num_frames']} frames, {info['duration']:.2f} s\n  keyframes: {shown}"
        )
    return 2 if failed else 0
