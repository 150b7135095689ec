"""``c3d-distill data info SPEC`` and ``c3d-distill data synth OUT``."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="data sets: inspect one (info), make the synthetic one (synth)")
    dsub = p.add_subparsers(dest="data_command", metavar="{info,synth}")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    info = dsub.add_parser("info", help="classes, counts per split and a probe of a few files of a data set")
    info.add_argument("spec", help="ucf101:ROOT[:FOLD], hmdb51:ROOT[:FOLD], list:FILE or synth:DIR")
    info.add_argument("--lists", help="folder of the split lists, when not inside or beside ROOT")
    info.add_argument("--probe", type=int, default=3, metavar="N", help="probe N files (default 3; 0: none)")
    info.set_defaults(func=run_info)

    synth = dsub.add_parser("synth", help="write the synthetic action set (UCF101 layout)")
    synth.add_argument("out", help="output folder (reused when it already holds the same set)")
    synth.add_argument("--classes", type=int, default=10, help="number of classes, 2-14 (default 10)")
    synth.add_argument("--videos-per-class", type=int, default=40, help="default 40")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--codec", choices=["mpeg4", "h264"], default="mpeg4",
                       help="mpeg4: MPEG-4 part 2 in AVI, like UCF101 (default); h264: H.264 in MP4")
    synth.add_argument("--size", default="320x240", help="WIDTHxHEIGHT (default 320x240)")
    synth.add_argument("--fps", type=int, default=25)
    synth.add_argument("--duration", type=float, nargs=2, default=(2.0, 4.0), metavar=("MIN", "MAX"),
                       help="video length in seconds, uniform in [MIN, MAX] (default 2 4)")
    synth.add_argument("--clips-per-group", type=int, default=4, help="clips sharing a scene (default 4)")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    synth.add_argument("--force", action="store_true", help="replace a set made with other parameters")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=run_synth)


def _counts_table(classes, splits: dict[str, list[int]]) -> list[str]:
    width = max([len(c) for c in classes] + [5])
    names = list(splits)
    lines = [f"  {'#':>3}  {'class':<{width}}  " + "  ".join(f"{n:>6}" for n in names)]
    for i, c in enumerate(classes):
        lines.append(f"  {i:>3}  {c:<{width}}  " + "  ".join(f"{splits[n][i]:>6}" for n in names))
    lines.append(f"  {'':>3}  {'total':<{width}}  " + "  ".join(f"{sum(splits[n]):>6}" for n in names))
    return lines


def run_info(args: argparse.Namespace) -> int:
    from . import hmdb51 as hmdb
    from . import load, parse_spec
    from . import ucf101 as ucf

    # a bad spec or data set (DatasetError, a ValueError) is a user error: cli.main prints it, exit 2
    kind, path, fold = parse_spec(args.spec)
    parts = ["train"] if kind == "list" else ["train", "test"]
    lists = {s: load(args.spec, s, lists=args.lists) for s in parts}
    first = lists[parts[0]]
    label = "videos" if kind == "list" else None
    splits = {(label or s): vl.counts() for s, vl in lists.items()}
    nc = len(first.classes)
    print(f"{args.spec}: {nc} class{'es' if nc != 1 else ''}" + ("" if kind == "list" else f", fold {fold}"))
    if first.root:
        print(f"  root: {first.root}")
    if kind != "list":
        folds = (hmdb.available_folds(path, args.lists) if kind == "hmdb51"
                 else ucf.available_folds(path, args.lists))
        print(f"  folds with lists: {', '.join(map(str, folds)) or 'none'}")
    print("\n".join(_counts_table(first.classes, splits)))

    n = max(0, args.probe)
    if n == 0 or not len(first):
        return 0
    from c3d_distill.clips import VideoDecodeError, probe

    step = max(1, len(first) // n)
    failed = 0
    print(f"probe ({min(n, len(first))} of {len(first)} {parts[0]} videos):")
    for path_, lab in first.items[::step][:n]:
        try:
            info = probe(path_)
        except (FileNotFoundError, VideoDecodeError) as exc:
            print(f"  error: {exc}")
            failed += 1
            continue
        print(f"  {path_}  [{first.classes[lab]}]\n    {info['codec']} {info['width']}x{info['height']} "
              f"@ {info['fps']:.2f} fps, {info['num_frames']} frames, {info['duration']:.2f} s, "
              f"{len(info['keyframes'])} keyframes")
    return 1 if failed else 0


def run_synth(args: argparse.Namespace) -> int:
    from . import make_synthetic

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
    t0 = time.perf_counter()
    # its arguments (the seed too) are checked before anything is written; ValueError and FileExistsError
    # are user errors that cli.main prints (exit 2)
    out = make_synthetic(args.out, classes=args.classes, videos_per_class=args.videos_per_class,
                         seed=args.seed, codec=args.codec, width=w, height=h, fps=args.fps,
                         duration=tuple(args.duration), clips_per_group=args.clips_per_group,
                         workers=args.workers, progress=not args.quiet, force=args.force)
    print(f"{out}: {args.classes} classes x {args.videos_per_class} videos ({args.codec}) "
          f"in {time.perf_counter() - t0:.1f} s; load it with synth:{out}")
    return 0
