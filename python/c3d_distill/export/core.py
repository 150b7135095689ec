"""``export_model``: one network to ONNX / TorchScript / ExportedProgram, checked before it is kept.

What is exported is the plain PyTorch network: the fast paths (custom CPU executors, the Rust
``kernel_temporal_conv_pool``) are process-local code that no exporter can record, so the model is rebuilt with
``create_model(..., fast=False)`` and given the same state dict (:func:`plain_model`). The batch dimension is
dynamic in every format (the MC time fold is a ``reshape`` whose batch comes from the input's shape); clip
length and frame size are fixed, as the network's plan is.

The file is written into a temporary folder beside ``out`` and moved there only once the check passed: the
exported file, loaded back the way a deployment loads it (ONNX Runtime's CPU provider, ``torch.jit.load``,
``torch.export.load``), must give the eager model's outputs on random clips at each batch size of
``batch_sizes`` within ``tolerance`` (max |exported − eager| / max |eager|). Then ``out + ".json"`` records
how to feed it: input name and shape, output name and shape, the clip pipeline, the source's sha256.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .names import EXPORT_EXTRA, FORMATS, OUTPUTS, RUNTIMES

INPUT_NAME = "clip"
BATCH_DIM = "batch"
TOLERANCE = 1e-4
# The example input's batch: torch.export specialises a dimension of size 0 or 1 to a constant, so a batch of
# one would make the exported graph a batch-one graph.
EXAMPLE_BATCH = 2
# Above this the ONNX protobuf (2 GiB at most) cannot hold the weights: they go to FILE.data beside it.
ONNX_INLINE_BYTES = 1_800_000_000
HEAD_PREFIXES = ("fc6.", "fc7.", "fc8.")
# How the metadata's "clip" (c3d_distill.load_model's clip dict) makes the input.
CLIP_NOTE = (
    "keyword arguments of c3d_distill.clips.read_clips: every `stride`-th frame, `frames` of them, resized to "
    "`size` ((height, width), or the short side), the centre `crop`, pixel values / 255 in `channels` order, "
    "then (x - mean) / std per channel, stacked as `layout`"
)


class ExportError(RuntimeError):
    """The export could not be made (a missing package, an exporter failure). ``exit_status``: what the
    command line exits with."""

    exit_status = 2


class ExportCheckError(ExportError):
    """The exported file does not compute what the eager model does (nothing was kept)."""

    exit_status = 1


@dataclass
class Check:
    """One batch size of the check: ``rel_error`` = max |exported − eager| / max |eager|."""

    batch: int
    rel_error: float
    max_abs_error: float
    shape: tuple[int, ...]

    def line(self, fmt: str) -> str:
        return (
            f"check {fmt} ({RUNTIMES[fmt]}) batch {self.batch}: output {tuple(self.shape)}, "
            f"max relative error {self.rel_error:.2e} (max abs {self.max_abs_error:.2e})"
        )


@dataclass
class ExportResult:
    path: Path
    metadata_path: Path
    fmt: str
    output: str
    input_shape: list  # ["batch", 3, T, H, W]
    output_shape: list  # ["batch", K]
    checks: list[Check] = field(default_factory=list)
    export_seconds: float = 0.0
    check_seconds: float = 0.0
    opset: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


# -- the plain network ---------------------------------------------------------------------------------


def _video_net_class():
    from ..models import VideoNet

    return VideoNet


def plain_model(
    model: nn.Module,
    *,
    frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    head: bool = True,
) -> nn.Module:
    """``model`` as plain PyTorch layers (``fast=False``) with its weights, on the CPU, in eval mode.

    ``frames``/``size`` rebuild it for another clip shape (the convs of ``c3d``/``sp`` take any; an MC
    model's 2-D convs and a classifier's fc6 are sized for one). ``head=False`` leaves the classifier out
    (a feature network). A module that is not a zoo network is deep-copied as it is.
    """
    if not isinstance(model, _video_net_class()) or not isinstance(getattr(model, "config", None), dict):
        if frames is not None or size is not None:
            raise ValueError(
                f"frames/size: {type(model).__name__} is not a network of the zoo, it cannot be rebuilt "
                "for another clip shape"
            )
        return copy.deepcopy(model).cpu().eval()
    from ..models import create_model

    cfg = dict(model.config)
    name = cfg.pop("name")
    num_classes = cfg.pop("num_classes")
    if not head:
        num_classes = None
    cfg["fast"] = False
    if frames is not None:
        cfg["frames"] = frames
    if size is not None:
        cfg["size"] = size
    # Built on the meta device (no memory, no initialisation) and given the source's tensors.
    with torch.device("meta"):
        plain = create_model(name, num_classes, **cfg)
    state = {
        k: v.detach().cpu() for k, v in model.state_dict().items() if head or not k.startswith(HEAD_PREFIXES)
    }
    target = plain.state_dict()
    wrong = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if wrong:
        k = wrong[0]
        why = (
            f"its classifier's fc6 takes the {model.feature_dim} pool5 features of "
            f"{model.frames}-frame {_hw(model.input_hw)} clips (export the features instead)"
            if k.startswith("fc6.")
            else f"its weights (e.g. {k}: {tuple(state[k].shape)}, {tuple(target[k].shape)} needed) fit "
            f"{model.frames}-frame {_hw(model.input_hw)} clips only (an MC model's 2-D convs hold the time "
            "fold in their channels)"
        )
        raise ValueError(
            f"frames/size: {name} cannot take {cfg['frames']}-frame {_hw(plain.input_hw)} clips: {why}"
        )
    plain.load_state_dict(state, strict=True, assign=True)
    return plain.eval()


def _hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}×{hw[1]}"


class FeatureNet(nn.Module):
    """A network's ``features(x)`` (flattened pool5) as its forward, for exporters."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def _resolve_output(model: nn.Module, output: str | None) -> str:
    has_head = getattr(model, "num_classes", None) is not None
    if output in (None, "auto"):
        return "logits" if has_head or not hasattr(model, "features") else "features"
    if output not in OUTPUTS:
        raise ValueError(f"output: expected one of {', '.join(OUTPUTS)}, got {output!r}")
    name = getattr(model, "name", type(model).__name__)
    if output == "logits" and hasattr(model, "num_classes") and not has_head:
        raise ValueError(f"output logits: {name} has no classifier (it returns pool5 features): use features")
    if output == "features" and not hasattr(model, "features"):
        raise ValueError(f"output features: {type(model).__name__} has no features(x)")
    return output


# -- the exporters -------------------------------------------------------------------------------------


def _require(modules: Sequence[str], fmt: str) -> None:
    """The packages a format needs, or an ExportError that says how to install them."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(
            f"format {fmt}: needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed: {EXPORT_EXTRA}"
        )


# ONNX export runs torch.export, onnxscript translates the graph, onnx checks and serialises it; the check
# runs it in ONNX Runtime.
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' progress chatter off (torch.onnx's "torchvision is not installed" and version
    converter logs, TorchScript's deprecation and tracer warnings): the check says what matters."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _dynamic_batch() -> tuple[dict[int, Any]]:
    return ({0: torch.export.Dim(BATCH_DIM, min=1)},)


def _export_onnx(net: nn.Module, x: torch.Tensor, path: Path, output: str, opset: int | None) -> int:
    import onnx

    nbytes = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    torch.onnx.export(
        net,
        (x,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[output],
        opset_version=opset,
        dynamic_shapes=_dynamic_batch(),
        external_data=nbytes > ONNX_INLINE_BYTES,
        verbose=False,
    )
    proto = onnx.load(str(path), load_external_data=False)
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and written != opset:
        raise ExportError(
            f"opset {opset}: the ONNX exporter could not convert the graph to opset {opset} (it wrote "
            f"opset {written}; it translates to {_native_opset()} and converts from there)"
        )
    return int(written) if written is not None else None


def _native_opset() -> int | str:
    try:
        from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET

        return TORCHLIB_OPSET
    except ImportError:
        return "its own opset"


def _export_torchscript(net: nn.Module, x: torch.Tensor, path: Path) -> None:
    # Traced, not scripted: VideoNet.forward picks its path in Python (input check, fast executor, hooks);
    # the trace records the plain path it takes, and the shapes it reads (the fold's batch) as graph ops.
    traced = torch.jit.trace(net, (x,), check_trace=False)
    torch.jit.save(traced, str(path))


def _export_pt2(net: nn.Module, x: torch.Tensor, path: Path) -> None:
    program = torch.export.export(net, (x,), dynamic_shapes=_dynamic_batch())
    program.example_inputs = None  # else the random example clip is saved with the program
    torch.export.save(program, str(path))


def _runner(fmt: str, path: Path, output: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The exported file loaded back the way a deployment loads it."""
    if fmt == "onnx":
        import onnxruntime as ort

        ort_model = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(ort_model.run([output], {INPUT_NAME: x.numpy()})[0])
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu")
        return module
    module = torch.export.load(str(path)).module()
    return module


# -- the check -------------------------------------------------------------------------------------------


def _compare(got: torch.Tensor, ref: torch.Tensor, batch: int) -> Check:
    if tuple(got.shape) != tuple(ref.shape):
        return Check(batch, float("inf"), float("inf"), tuple(got.shape))
    got, ref = got.double(), ref.double()
    abs_err = float((got - ref).abs().max())
    scale = float(ref.abs().max())
    rel = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else float("inf"))
    return Check(batch, rel, abs_err, tuple(got.shape))


def _reference(model: nn.Module, plain: nn.Module, same_shape: bool, output: str):
    """The eager model the export is checked against: the source model itself (fast paths and all) where it
    can run these clips as they are (eval mode, on the CPU, the same shape), else its plain rebuild."""
    on_cpu = all(t.device.type == "cpu" for t in model.state_dict().values())
    ref = model if (same_shape and on_cpu and not model.training) else plain
    return ref.features if output == "features" else ref


# -- the writer ------------------------------------------------------------------------------------------


def _staging(out: Path) -> Path:
    """A temporary folder beside ``out`` (so that the final move is a rename): fails early, naming ``out``,
    when it cannot be written there."""
    if out.is_dir():
        raise IsADirectoryError(f"{out}: is a folder; give the file to write, e.g. {out / 'model.onnx'}")
    parent = out.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise FileNotFoundError(f"{out}: cannot write there: {parent} {what}")
    try:
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as exc:
        raise type(exc)(exc.errno, f"{out}: cannot write there: {exc.strerror}", str(parent)) from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return _jsonable(value.tolist())
    return str(value)  # a dtype, an enum: its name


def metadata_path_of(out: str | os.PathLike) -> Path:
    """Where the metadata of an export to ``out`` goes: ``out + ".json"``."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def export_model(
    model: nn.Module,
    fmt: str,
    out: str | os.PathLike,
    *,
    frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    output: str | None = None,
    batch_sizes: Sequence[int] = (1, 3),
    opset: int | None = None,
    tolerance: float = TOLERANCE,
    clip: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export ``model`` as ``fmt`` (``onnx``, ``torchscript``, ``pt2``) to ``out``, check it, write
    ``out + ".json"``.

    Args:
        model: a zoo network (fast paths on or off; it is not modified) or any module taking (N, 3, T, H, W).
        frames, size: the clip shape (default: the model's own).
        output: ``logits`` or ``features`` (default: logits when the model has a classifier, else features).
        batch_sizes: the batches the check runs (random clips, seeded by ``seed``).
        opset: ONNX opset (default: the exporter's own).
        tolerance: largest max |exported − eager| / max |eager| the check accepts.
        clip: the clip settings of the source (``load_model``'s dict), recorded in the metadata.
        source: what the metadata records of the source (e.g. ``{"path": ..., "sha256": ...}``).
        log: called with each line of progress and of the check (``print`` on the command line).

    Raises ValueError on bad arguments, OSError when ``out`` cannot be written, ExportError when the export
    fails, ExportCheckError when the exported file does not compute what the model does (nothing is kept).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    from ..checks import integer

    batch_sizes = [integer(b, "batch_sizes", minimum=1) for b in batch_sizes]
    if not batch_sizes:
        raise ValueError("batch_sizes: at least one batch size is needed for the check")
    if opset is not None:
        if fmt != "onnx":
            raise ValueError(f"opset: only for the onnx format, not {fmt}")
        opset = integer(opset, "opset", minimum=7)
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"tolerance: expected a positive number, got {tolerance!r}")
    output = _resolve_output(model, output)
    if fmt == "onnx":
        _require(ONNX_MODULES, fmt)
    say = log or (lambda _line: None)

    plain = plain_model(model, frames=frames, size=size, head=output == "logits")
    if hasattr(plain, "frames") and hasattr(plain, "input_hw"):
        t, (h, w) = plain.frames, plain.input_hw
    elif frames is not None and size is not None:
        t, (h, w) = frames, ((size, size) if isinstance(size, int) else tuple(size))
    else:
        raise ValueError(f"frames, size: needed to export {type(model).__name__} (not a network of the zoo)")
    same_shape = (t, (h, w)) == (getattr(model, "frames", None), getattr(model, "input_hw", None))
    net = FeatureNet(plain) if output == "features" else plain
    reference = _reference(model, plain, same_shape, output)
    name = getattr(model, "name", type(model).__name__)

    out = Path(out)
    stage = _staging(out)
    staged = stage / out.name
    try:
        gen = torch.Generator().manual_seed(seed)
        example = torch.randn(EXAMPLE_BATCH, 3, t, h, w, generator=gen)
        say(f"exporting {name} ({output}, input (batch, 3, {t}, {h}, {w})) as {fmt} to {out}")
        start = time.perf_counter()
        written_opset = None
        try:
            with _quiet(), torch.no_grad():
                if fmt == "onnx":
                    written_opset = _export_onnx(net, example, staged, output, opset)
                elif fmt == "torchscript":
                    _export_torchscript(net, example, staged)
                else:
                    _export_pt2(net, example, staged)
        except ExportError:
            raise
        except Exception as exc:  # the exporters raise many types; the message names the cause
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"exporting {name} as {fmt} failed: {type(exc).__name__}: {first}") from exc
        export_seconds = time.perf_counter() - start

        start = time.perf_counter()
        with _quiet():
            run = _runner(fmt, staged, output)
        checks = []
        with torch.no_grad():
            for b in batch_sizes:
                x = torch.randn(b, 3, t, h, w, generator=gen)
                ref = reference(x)
                with _quiet():
                    got = run(x)
                check = _compare(got, ref, b)
                checks.append(check)
                say(check.line(fmt))
        check_seconds = time.perf_counter() - start
        bad = [c for c in checks if not c.rel_error < tolerance]
        if bad:
            worst = max(bad, key=lambda c: c.rel_error)
            shape = (
                f"output {worst.shape}, the eager model's is ({worst.batch}, {ref.shape[1]})"
                if worst.shape != (worst.batch, *ref.shape[1:])
                else f"max relative error {worst.rel_error:.2e} >= {tolerance:g}"
            )
            raise ExportCheckError(
                f"{out}: the exported {fmt} model does not compute what {name} does ({RUNTIMES[fmt]}, batch "
                f"{worst.batch}: {shape}); nothing was written"
            )

        dim = int(ref.shape[1])
        meta: dict[str, Any] = {
            "format": fmt,
            "file": out.name,
            "model": name,
            "model_config": {k: v for k, v in (getattr(model, "config", None) or {}).items() if k != "fast"},
            "input": {
                "name": INPUT_NAME,
                "shape": [BATCH_DIM, 3, t, h, w],
                "dynamic_axes": {"0": BATCH_DIM},
                "dtype": "float32",
                "layout": "NCTHW",
            },
            "output": {"name": output, "shape": [BATCH_DIM, dim], "dtype": "float32"},
            "clip": clip,
            "clip_note": CLIP_NOTE if clip else None,
            "source": source,
            "opset": written_opset,
            "versions": _versions(fmt),
            "check": {
                "runtime": RUNTIMES[fmt],
                "tolerance": tolerance,
                "error": "max |exported - eager| / max |eager| on random clips",
                "batches": [{"batch": c.batch, "rel_error": c.rel_error} for c in checks],
            },
        }
        meta = _jsonable(meta)
        meta_tmp = stage / (out.name + ".json")
        meta_tmp.write_text(json.dumps(meta, indent=2) + "\n")
        for f in sorted(stage.iterdir()):  # the file, ONNX's FILE.data for a large model, the metadata
            os.replace(f, out.parent / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    say(
        f"wrote {out} and {metadata_path_of(out)} (export {export_seconds:.1f} s, check {check_seconds:.1f} s)"
    )
    return ExportResult(
        path=out,
        metadata_path=metadata_path_of(out),
        fmt=fmt,
        output=output,
        input_shape=[BATCH_DIM, 3, t, h, w],
        output_shape=[BATCH_DIM, dim],
        checks=checks,
        export_seconds=export_seconds,
        check_seconds=check_seconds,
        opset=written_opset,
        metadata=meta,
    )


def _versions(fmt: str) -> dict[str, str]:
    versions = {"torch": torch.__version__}
    if fmt == "onnx":
        for name in ("onnx", "onnxruntime"):
            with contextlib.suppress(ImportError):
                versions[name] = importlib.import_module(name).__version__
    return versions
