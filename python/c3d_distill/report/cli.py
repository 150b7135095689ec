"""``c3d-distill report``: the table and the plots of finished runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="table and plots from finished runs")
    p.add_argument("runs", nargs="+", help="run folders (or folders holding run folders)")
    p.add_argument("--out", required=True, help="folder for table.md, table.json and the PNG plots")
    p.add_argument("--teacher", help="the teacher run: its name or folder (default: the first run that trains c3d)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    paths = write_report(args.runs, args.out, teacher=args.teacher)
    print((Path(args.out) / "table.md").read_text())
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0
