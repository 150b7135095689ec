"""``c3d-distill transfer``: a student checkpoint initialised from a C3D teacher, and the transfer report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

STUDENT_HELP = "student model: mc3, mc4, mc5 (any mcK, K in 1..5), sp, sp_bn"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "transfer",
        help="initialise a student from the C3D teacher's weights (checkpoint + per-layer report)",
        description="Build a student with the teacher's width, clip length and head, fill its weights from the "
        "teacher's (exact fold expansion for MC 'a' convs, averaged band rows for 'b' convs, SVD split for "
        "SP), and report per layer how close it starts. The teacher is a c3d-distill run checkpoint (or run "
        "folder) or a public C3D state dict (conv1…fc8 or features.N/classifier.N keys).",
    )
    p.add_argument("--teacher", required=True, help="teacher: run folder, run checkpoint or public C3D state dict")
    p.add_argument("--student", required=True, help=STUDENT_HELP)
    p.add_argument("--out", required=True, help="student checkpoint to write (.pt)")
    p.add_argument("--report", default=None, help="report JSON to write (default: OUT with suffix .transfer.json)")
    p.add_argument("--probe-data", default=None, metavar="SPEC",
                   help="take the probe clips from a data set (e.g. synth:DIR, ucf101:ROOT) instead of "
                   "synthetic smooth noise")
    p.add_argument("--probe-clips", type=int, default=4,
                   help="probe clips (≥ 2): the first half fits calibration and BatchNorm stats, the rest "
                   "are held out for the report (4)")
    p.add_argument("--sp-mode", choices=("auto", "svd", "pairs"), default="auto",
                   help="SP split: auto (per stage, the better on the probe), svd (plain rank-Cout), pairs "
                   "(signed pairs, exact through the ReLU at rank Cout/2) (auto)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the per-channel scale/shift fit of the approximate stages")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic probe and the random baseline (0)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (cpu)")
    g = p.add_argument_group("public C3D state dicts (run checkpoints carry these: a different value is refused)")
    g.add_argument("--width", type=float, default=None,
                   help="teacher width multiplier (default: conv1's channels / 64)")
    g.add_argument("--frames", type=int, default=None, help="clip length (16); a run checkpoint's own is used")
    g.add_argument("--size", type=int, default=None, help="square input size (112); a run checkpoint's own is used")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def load_teacher(path: str, *, width: float | None = None, frames: int | None = None, size: int | None = None,
                 device: str = "cpu"):
    """A ``c3d`` teacher from a c3d-distill run checkpoint / run folder, or from a public C3D state dict.

    ``width``/``frames``/``size`` shape a public state dict (default: conv1's channels / 64, 16, 112); a
    run checkpoint records its own, and a value given that differs is refused.

    Returns ``(teacher, meta)``; ``meta`` = create_model arguments (name, num_classes, width, frames, size,
    dropout). Errors name the file and the cause.
    """
    teacher, meta, _ = _load_teacher(path, width=width, frames=frames, size=size, device=device)
    return teacher, meta


def _load_teacher(path: str, *, width: float | None = None, frames: int | None = None, size: int | None = None,
                  device: str = "cpu"):
    """:func:`load_teacher` plus the clip settings (stride, resize, mean, std, channels) it reads clips with:
    a run checkpoint's own, a public state dict's port preset (``c3d_distill.models.presets``; None for a run
    checkpoint that records no config). ``width``/``frames``/``size`` shape a public state dict; for a run
    checkpoint, which records its own, a value that differs is refused."""
    from ..runs.model import teacher_clip_settings
    from ..runs.source import clip_settings, open_source

    src = open_source(path, option="--teacher", width=width, frames=frames, size=size)
    if src.meta["name"] != "c3d":
        raise ValueError(f"--teacher: {src.path} holds a {src.meta['name']!r} model; the teacher must be 'c3d'")
    clip = teacher_clip_settings(src.ckpt) if src.ckpt is not None else clip_settings(src)
    if clip is not None:
        clip.pop("preprocess", None)
    return src.model.to(device).eval(), dict(src.meta), clip


def probe_from_data(spec: str, n: int, frames: int, size: int | tuple[int, int], *, stride: int = 1,
                    resize: tuple[int, int] | int | None = None, mean=None, std=None, channels: str = "RGB"):
    """``n`` centre clips (N, 3, T, H, W), float32, from ``n`` videos of the data set ``spec`` spread over
    its train split, made the way a run makes them: every ``stride``-th frame, resized to ``resize``
    (default: C3D's 128×171 scaled with the crop ``size``), centre crop, normalised with ``mean``/``std``
    (default: the training defaults), in ``channels`` order. Give a teacher's own settings (a run checkpoint
    records them)."""
    import torch

    from ..clips import VideoReader, center_clip, read_clips
    from ..datasets import load
    from ..runs.config import DEFAULT_MEAN, DEFAULT_STD, default_resize

    items = load(spec, "train").items
    if len(items) < n:
        raise ValueError(f"--probe-data: {spec} has {len(items)} training videos, --probe-clips asks for {n}")
    picks = [items[round(i * (len(items) - 1) / max(1, n - 1))][0] for i in range(n)]
    clips = [(p, center_clip(VideoReader(p).num_frames, frames, stride)) for p in picks]
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if resize is None:
        resize = default_resize(hw)
    arr = read_clips(clips, size=resize if isinstance(resize, int) else tuple(resize), crop=hw, dtype="float32",
                     channels=channels,
                     mean=tuple(DEFAULT_MEAN if mean is None else mean), std=tuple(DEFAULT_STD if std is None else std))
    return torch.from_numpy(arr)


def checkpoint_dict(student, report, teacher=None) -> dict[str, Any]:
    """The student as a c3d-distill checkpoint (``model_meta`` lets ``train``/``eval`` rebuild it, and
    ``distill --init FILE`` start from it; ``teacher_sha256`` says which teacher it approximates)."""
    from ..runs.checkpoint import FORMAT, state_fingerprint

    cfg = dict(student.config)
    meta = {k: cfg[k] for k in ("name", "num_classes", "width", "frames", "size", "dropout")}
    if isinstance(meta["size"], tuple):
        meta["size"] = list(meta["size"])
    out = {"format": FORMAT, "model": student.state_dict(), "model_meta": meta, "transfer": report.to_dict()}
    if teacher is not None:
        out["teacher_sha256"] = state_fingerprint(teacher.state_dict())
    return out


def _output_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """``--out`` and the report path, checked before any work: not a folder, not the same file, in a
    folder that exists or can be made."""
    out = Path(args.out)
    report = Path(args.report) if args.report else out.with_suffix(".transfer.json")
    for opt, p, example in (("--out", out, "student.pt"), ("--report", report, "transfer.json")):
        if p.is_dir():
            raise ValueError(f"{opt} {p}: is a folder; give a file name (e.g. {p / example})")
        parent = next((q for q in (p.parent, *p.parent.parents) if q.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ValueError(f"{opt} {p}: {parent} is a file, not a folder")
    if out.resolve() == report.resolve():
        raise ValueError(f"--report {report}: the same file as --out (the report would replace the checkpoint)")
    return out, report


def run(args: argparse.Namespace) -> int:
    from ..distributed import resolve_device
    from ..models import list_models
    from ..runs.checkpoint import save_checkpoint
    from .core import PROGRESS_STEPS, transfer

    if args.student not in list_models() or args.student == "c3d":
        raise ValueError(f"--student: {args.student!r} is not a student model ({STUDENT_HELP})")
    if args.probe_clips < 2:
        raise ValueError(f"--probe-clips: need at least 2 (one to fit, one to check), got {args.probe_clips}")
    device = str(resolve_device(args.device))
    out, report_path = _output_paths(args)
    try:
        teacher, meta, clip = _load_teacher(args.teacher, width=args.width, frames=args.frames, size=args.size,
                                            device=device)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"--teacher: {exc}") from exc
    except ValueError as exc:
        raise ValueError(str(exc) if str(exc).startswith("--") else f"--teacher: {exc}") from exc
    probe = None
    if args.probe_data:
        try:
            # The teacher's own clips (stride, resize, normalisation) when its checkpoint records them.
            probe = probe_from_data(args.probe_data, args.probe_clips, meta["frames"], meta["size"], **(clip or {}))
        except (FileNotFoundError, ValueError, RuntimeError) as exc:  # a bad spec, too few or unreadable videos
            msg = str(exc)
            raise ValueError(msg if msg.startswith("--probe-data") else f"--probe-data: {msg}") from exc
    from tqdm.auto import tqdm

    with tqdm(total=len(PROGRESS_STEPS), desc=f"transfer → {args.student}", unit="step", leave=False,
              disable=not args.progress, dynamic_ncols=True) as bar:
        def advance(step: str) -> None:
            bar.set_postfix_str(step)
            bar.update()

        student, report = transfer(teacher, args.student, probe=probe, probe_size=args.probe_clips,
                                   calibrate=not args.no_calibrate, sp_mode=args.sp_mode, seed=args.seed,
                                   progress=advance)
    if args.probe_data:
        report.probe["source"] = f"--probe-data {args.probe_data}"
    save_checkpoint(checkpoint_dict(student.to("cpu"), report, teacher), out)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table())
    print(f"wrote {out} and {report_path}", file=sys.stderr)
    return 0
