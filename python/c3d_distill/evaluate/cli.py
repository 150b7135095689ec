"""``c3d-distill eval``: clip and video accuracy of a run or checkpoint on a data set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..datasets import SPEC_HELP as DATA_HELP
from ..runs.config import ON_ERROR, SHORT


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="clip and video accuracy of a run or checkpoint")
    p.add_argument("run", help="run folder, run checkpoint or public C3D state dict")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument(
        "--split",
        default=None,
        help="train or test (HMDB51 also unused) split of the fold (default test); not for list:FILE, which "
        "is one split",
    )
    p.add_argument("--teacher", help="a teacher (run folder, run checkpoint or public C3D state dict): adds the pool5 feature error")
    p.add_argument("--clips", type=int, default=10, help="uniformly spaced clips per video (default 10)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", help="also write the result to this file")
    p.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="raise",
        help="an unreadable video: raise (default) or skip (its clips are left out, named and counted)",
    )
    p.add_argument(
        "--short",
        choices=SHORT,
        default=None,
        help="a video shorter than a clip: repeat, loop or error (default: what the run was trained with)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_checkpoint

    res = evaluate_checkpoint(
        args.run,
        args.data,
        split=args.split,
        teacher=args.teacher,
        clips=args.clips,
        batch_size=args.batch_size,
        device=args.device,
        amp=args.amp,
        threads=args.threads,
        progress=args.progress,
        on_error=args.on_error,
        short=args.short,
    )
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0
