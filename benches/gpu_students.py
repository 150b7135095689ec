"""The students against the teacher on one GPU: which execution of sp's (2+1)D convs is fastest, and why.

Every zoo model at full width on 16×112×112 clips, in one process on one card, side by side:

1. reference work measured in the same run: a large bf16 conv (c3d's conv3b shape), a bf16 GEMM and a
   device copy, so that each conv's TFLOP/s and each pool's GB/s read against what the card does here;
2. candidate executions of sp / sp_bn, each a drop-in rewrite of the SPConv submodules that keeps the
   same parameters, checked against the plain layers before anything is timed (relative error of the
   pool5 features < 1e-5 in fp32 with TF32 off, < 1e-2 under bf16 autocast; fp32 gradients too; a
   path between 1e-5 and 1e-3 in fp32 is still timed, with ``strict_check_ok: false`` on its rows):

   - ``cl``: parameters and input channels-last-3d (NDHWC), the plain modules;
   - ``t2d`` / ``cl+t2d``: the (3,1,1) temporal conv as a Conv2d with a (3,1) kernel over
     (N, C, T, H·W), a view of the same memory in both layouts;
   - ``cl+s2d``: the (1,3,3) spatial conv as a Conv2d over the N·T frames (a view when channels-last);
   - ``cl+s2d+t2d``: both;
   - ``cl+s2d+gemm``: the temporal conv as one GEMM over the three time-shifted views (padded in time,
     concatenated along channels: K = 3·C instead of C);
   - ``fast``: the package's own fast path (``create_model(fast=True)``);

   every model also runs ``plain`` (NCDHW) and ``cl``; ``cudnn.benchmark`` is on unless
   ``--no-cudnn-benchmark`` (c3d and sp also run ``cl`` with it off, interleaved);
3. inference, batch 32, bf16 autocast: every verified path eager, the fastest eager path of each model
   replayed as a CUDA graph, and ``torch.compile`` of ``--compile-paths`` (inductor fuses each ReLU with
   the pool after it); all timed interleaved, repetition by repetition;
4. the training step (forward, cross-entropy, backward, SGD with momentum), batch 32, bf16 autocast;
5. batch-1 latency: the fastest eager path of each model, eager and as a CUDA graph (bf16 and fp32);
6. a torch.profiler pass per model and path: device time, kernel names, TFLOP/s and GB/s of every conv
   and pool (as a share of the best conv of the run and of the copy bandwidth), and the top kernels of
   the fast and compiled paths.

Writes ``benches/results/gpu/students.json`` (``{"device", "torch", "rows": [{"model", "path",
"precision", "compiled", "batch", "clips_per_s", ...}], ...}``; rewritten after every section, so a run
cut short keeps what it measured) and prints markdown tables.

    python3 benches/gpu_students.py                          # on the GPU machine, 5-6.5 minutes
    python3 benches/gpu_students.py --models c3d,sp --compile-paths cl+s2d+t2d
    .venv/bin/python benches/gpu_students.py --cpu-smoke     # here: every section, tiny, on the CPU

Only ``c3d_distill.models`` is imported from the package (the GPU machine installs it from a wheel).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import platform
import statistics
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from c3d_distill.models import count_macs, count_params, create_model

ROOT = Path(__file__).resolve().parent.parent
CL3 = torch.channels_last_3d
CL2 = torch.channels_last
MODELS = ("c3d", "sp", "sp_bn", "mc3", "mc4", "mc5")
SP_MODELS = ("sp", "sp_bn")
# label: (package fast path, channels-last, spatial rewrite, temporal rewrite)
PATHS: dict[str, tuple[bool, bool, str | None, str | None]] = {
    "plain": (False, False, None, None),
    "fast": (True, False, None, None),
    "cl": (False, True, None, None),
    "t2d": (False, False, None, "t2d"),
    "cl+t2d": (False, True, None, "t2d"),
    "cl+s2d": (False, True, "s2d", None),
    "cl+s2d+t2d": (False, True, "s2d", "t2d"),
    "cl+s2d+gemm": (False, True, "s2d", "gemm"),
}
GENERIC_PATHS = ("plain", "fast", "cl")
MAX_REL_ERR = {"fp32": 1e-5, "bf16": 1e-2}
USABLE_FP32 = 1e-3  # far above algorithm noise, far below a wrong layer
TARGETS = {"sp": 1.3, "mc4": 1.0, "mc5": 1.0}  # inference clips/s over c3d's, each at its fastest
NOBENCH_MODELS = ("c3d", "sp")
NUM_CLASSES = 101


# -- candidate rewrites of the SP convs -------------------------------------------------------------
class TemporalAs2d(nn.Module):
    """A (3,1,1) Conv3d as a Conv2d with a (3,1) kernel over (N, C, T, H·W). Merging H and W is a view
    of NCDHW and of NDHWC memory alike (NDHWC is then NHWC of the 4-D tensor), so nothing is copied."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        y = F.conv2d(x.reshape(n, c, t, h * w), self.conv.weight[..., 0], self.conv.bias, padding=(1, 0))
        return y.reshape(n, -1, t, h, w)


class TemporalGemm(nn.Module):
    """A (3,1,1) Conv3d as one GEMM (N·T·H·W, 3·C) @ (3·C, Cout) over the three time-shifted views of
    the NDHWC tensor: the deep K = 3·C keeps the tensor cores busier than three K = C products, at the
    price of writing the concatenated views once (a torch.compile prologue can fuse that away)."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        rows = x.permute(0, 2, 3, 4, 1).reshape(n, t, h * w, c)  # a view when x is channels-last-3d
        padded = F.pad(rows, (0, 0, 0, 0, 1, 1))
        cols = torch.cat([padded[:, k : k + t] for k in range(3)], dim=-1).reshape(-1, 3 * c)
        wt = self.conv.weight[:, :, :, 0, 0].permute(2, 1, 0).reshape(3 * c, -1)  # row k·C + cin
        y = torch.addmm(self.conv.bias, cols, wt) if self.conv.bias is not None else cols @ wt
        return y.reshape(n, t, h, w, -1).permute(0, 4, 1, 2, 3)


class SpatialAs2d(nn.Module):
    """A (1,3,3) Conv3d as a Conv2d over the N·T frames: (N, C, T, H, W) channels-last-3d is
    (N·T, C, H, W) channels-last in the same memory (other layouts are copied once)."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        y = F.conv2d(frames, self.conv.weight[:, :, 0], self.conv.bias, padding=(1, 1))
        return y.reshape(n, t, -1, h, w).transpose(1, 2)


REWRITES = {"t2d": TemporalAs2d, "gemm": TemporalGemm, "s2d": SpatialAs2d}


def paths_of(name: str) -> list[str]:
    return list(PATHS) if name in SP_MODELS else list(GENERIC_PATHS)


def to_channels_last(model: nn.Module) -> nn.Module:
    """5-D parameters NDHWC, 4-D ones NHWC (the MC models hold both)."""
    for p in model.parameters():
        if p.dim() == 5:
            p.data = p.data.contiguous(memory_format=CL3)
        elif p.dim() == 4:
            p.data = p.data.contiguous(memory_format=CL2)
    return model


_BASE: dict[tuple, nn.Module] = {}


def build(name: str, path: str, state: dict, cfg, device, num_classes=None) -> nn.Module:
    """A fresh copy of model ``name`` with the weights ``state``, executing as ``path`` on ``device``.
    Copies of one CPU model per (name, fast, head): the full-width initialisation took longer than
    the rest of building, a hundred times over in a run."""
    fast, cl, s_rw, t_rw = PATHS[path]
    key = (name, fast, num_classes, id(state))
    if key not in _BASE:
        base = create_model(name, num_classes, width=cfg.width, frames=cfg.frames, size=cfg.size, fast=fast)
        base.load_state_dict(state)
        _BASE[key] = base
    m = copy.deepcopy(_BASE[key])
    for st in m.plan:
        mod = getattr(m, st.name)
        if st.kind == "sp":
            if s_rw:
                mod.spatial = REWRITES[s_rw](mod.spatial)
            if t_rw:
                mod.temporal = REWRITES[t_rw](mod.temporal)
    m = m.to(device)
    return to_channels_last(m) if cl else m


def layout(path: str, x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=CL3) if PATHS[path][1] else x.contiguous()


# -- small helpers ----------------------------------------------------------------------------------
class Clock:
    """The run's wall-clock budget: work that would overrun it is skipped and says so."""

    def __init__(self, budget_s: float):
        self.t0, self.budget = time.perf_counter(), budget_s

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def make_sync(device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def amp(device, precision: str, cache: bool = True):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


@contextlib.contextmanager
def strict_fp32():
    """TF32 off for convs and matmuls: the fp32 check compares against IEEE fp32, not 10-bit mantissas.
    The flags of older torch first; where a torch refuses them, its fp32_precision settings."""
    saved = None
    try:
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    except Exception:
        saved = None
        with contextlib.suppress(Exception):
            saved_new = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
            torch.backends.cuda.matmul.fp32_precision = "ieee"
            torch.backends.cudnn.conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        if saved is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
        else:
            with contextlib.suppress(Exception):
                torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved_new


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool):
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().float(), want.detach().float()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def grads_of(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.detach().float().flatten() for p in model.parameters() if p.grad is not None])


def record_error(errors: list, section: str, what: str, exc: BaseException) -> None:
    errors.append({"section": section, "what": what, "error": repr(exc), "trace": traceback.format_exc()[-2500:]})
    print(f"  {section} {what} FAILED: {exc!r}", file=sys.stderr, flush=True)


def free(device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def compile_module(model: nn.Module, mode: str):
    """torch.compile with room for every model of the run: VideoNet.forward is one code object for all
    of them, and with dynamo's default recompile limit the later models silently ran eager."""
    cfg = torch._dynamo.config
    for attr, value in (("recompile_limit", 256), ("cache_size_limit", 256),
                        ("accumulated_recompile_limit", 4096), ("fail_on_recompile_limit_hit", True)):
        if hasattr(cfg, attr):
            with contextlib.suppress(Exception):
                setattr(cfg, attr, value)
    return torch.compile(model, dynamic=False, mode=None if mode == "default" else mode)


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"].get("unique_graphs", 0))


class CudaGraphRunner:
    """One forward captured as a CUDA graph on a static input; ``__call__`` replays it. Launch cost is
    what batch-1 latency is made of, and what a graph removes."""

    def __init__(self, model: nn.Module, x: torch.Tensor, precision: str, device):
        self.x = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(3):  # cudnn.benchmark picks its algorithms here, before capture
                with amp(device, precision, cache=False):
                    model(self.x)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad(), amp(device, precision, cache=False):
            self.y = model(self.x)

    def __call__(self) -> torch.Tensor:
        self.graph.replay()
        return self.y


def time_interleaved(runners: list[dict], *, iters: int, repeats: int, sync, clock: Clock, floor_s: float):
    """Median seconds per call of each runner's ``fn``: every repetition times every runner once
    (``iters`` calls), the order reversed on odd repetitions, so drift hits all of them alike."""
    times: dict[int, list[float]] = defaultdict(list)
    for rep in range(repeats):
        if rep and clock.left() < floor_s:
            print(f"  stopping after {rep} repetitions (time budget)", file=sys.stderr, flush=True)
            break
        order = list(enumerate(runners))
        if rep % 2:
            order.reverse()
        for i, r in order:
            sync()
            t0 = time.perf_counter()
            for _ in range(iters):
                r["fn"]()
            sync()
            times[i].append((time.perf_counter() - t0) / iters)
    for i, r in enumerate(runners):
        r["seconds"] = statistics.median(times[i])
        r["seconds_reps"] = times[i]


# -- sections ---------------------------------------------------------------------------------------
def measure_anchors(cfg, device, sync) -> dict:
    """What this card does on work it is good at, in the same process: a bf16 3×3×3 conv of c3d's
    conv3b shape (channels-last), a square bf16 GEMM, and a device-to-device copy."""
    b, c, t, hw = cfg.batch, max(8, round(256 * cfg.width)), max(2, cfg.frames // 2), max(4, cfg.size // 4)
    g = torch.Generator(device="cpu").manual_seed(1)
    dt = torch.bfloat16
    x = torch.randn(b, c, t, hw, hw, generator=g).to(device, dt).contiguous(memory_format=CL3)
    w = (torch.randn(c, c, 3, 3, 3, generator=g) * 0.02).to(device, dt).contiguous(memory_format=CL3)
    n = cfg.gemm_n
    a = torch.randn(n, n, generator=g).to(device, dt)
    bm = torch.randn(n, n, generator=g).to(device, dt)
    big = torch.empty(cfg.copy_mib * 2**20 // 2, dtype=dt, device=device).normal_()
    out = torch.empty_like(big)
    jobs = {
        f"conv3d {c}->{c} 3x3x3 @{t}x{hw}^2 bf16 NDHWC": (lambda: F.conv3d(x, w, padding=1),
                                                          2 * b * c * c * 27 * t * hw * hw, "flop"),
        f"gemm {n}^3 bf16": (lambda: a @ bm, 2 * n**3, "flop"),
        f"copy {cfg.copy_mib} MiB": (lambda: out.copy_(big), 2 * big.numel() * big.element_size(), "byte"),
    }
    res = {}
    with torch.inference_mode():
        for label, (fn, work, unit) in jobs.items():
            for _ in range(3):
                fn()
            ts = []
            for _ in range(cfg.repeats + 2):
                sync()
                t0 = time.perf_counter()
                for _ in range(cfg.iters):
                    fn()
                sync()
                ts.append((time.perf_counter() - t0) / cfg.iters)
            s = statistics.median(ts)
            key = "tflops" if unit == "flop" else "gb_per_s"
            res[label] = {"ms": s * 1e3, key: work / s / (1e12 if unit == "flop" else 1e9)}
    res["best_conv_tflops"] = max(v["tflops"] for k, v in res.items() if k.startswith("conv"))
    res["gemm_tflops"] = next(v["tflops"] for k, v in res.items() if k.startswith("gemm"))
    res["copy_gb_per_s"] = next(v["gb_per_s"] for k, v in res.items() if k.startswith("copy"))
    return res


def run_checks(cfg, device, states, errors) -> dict[str, dict[str, dict]]:
    """Every path of every model against the plain layers on the same weights and clips."""
    out: dict[str, dict[str, dict]] = {}
    g = torch.Generator(device="cpu").manual_seed(2)
    for name in cfg.models:
        x = torch.randn(cfg.check_batch, 3, cfg.frames, cfg.size, cfg.size, generator=g).to(device)
        out[name] = {}
        try:
            plain = build(name, "plain", states[name], cfg, device).eval()
            with torch.no_grad():
                with strict_fp32():
                    want32 = plain(x)
                with amp(device, "bf16"):
                    want16 = plain(x)
            gref = None
            if name in SP_MODELS:  # the rewrites must train the same model too
                plain.zero_grad(set_to_none=True)
                with strict_fp32():
                    plain(x).square().mean().backward()
                gref = grads_of(plain)
        except Exception as exc:
            record_error(errors, "checks", f"{name} plain", exc)
            continue
        for path in paths_of(name):
            try:
                m = build(name, path, states[name], cfg, device).eval()
                xin = layout(path, x)
                with torch.no_grad():
                    with strict_fp32():
                        got32 = m(xin)
                    with amp(device, "bf16"):
                        got16 = m(xin)
                row = {"fp32": rel_err(got32, want32), "bf16": rel_err(got16, want16),
                       "bf16_vs_fp32": rel_err(got16, want32)}
                if gref is not None and not PATHS[path][0]:  # the fast path under autograd is the plain ops
                    m.zero_grad(set_to_none=True)
                    with strict_fp32():
                        m(xin).square().mean().backward()
                    row["fp32_grads"] = rel_err(grads_of(m), gref)
                row["ok"] = (row["fp32"] < MAX_REL_ERR["fp32"] and row["bf16"] < MAX_REL_ERR["bf16"]
                             and row.get("fp32_grads", 0.0) < MAX_REL_ERR["fp32"])
                # Timed unless it computes something else: an fp32 miss by cuDNN's choice of algorithm
                # (reported as such) must not cost the bf16 figures the run is for.
                row["usable"] = (row["bf16"] < MAX_REL_ERR["bf16"] and row["fp32"] < USABLE_FP32
                                 and row.get("fp32_grads", 0.0) < USABLE_FP32)
                out[name][path] = row
                flag = "ok" if row["ok"] else ("fp32 above 1e-5, timed" if row["usable"] else "FAILED")
                grads = f"  grads {row['fp32_grads']:.1e}" if "fp32_grads" in row else ""
                print(f"  check {name:6s} {path:12s} fp32 {row['fp32']:.1e}  bf16 {row['bf16']:.1e}{grads}  {flag}",
                      file=sys.stderr, flush=True)
                del m
            except Exception as exc:
                out[name][path] = {"ok": False, "usable": False, "error": repr(exc)}
                record_error(errors, "checks", f"{name} {path}", exc)
        free(device)
    return out


def verified(checks, name) -> list[str]:
    return [p for p in paths_of(name) if checks.get(name, {}).get(p, {}).get("usable")]


def bench_inference(cfg, device, sync, states, checks, clock, errors) -> tuple[list[dict], dict]:
    """Batch cfg.batch, bf16: every verified path eager, each model's fastest eager path as a CUDA
    graph, and the compiled paths; all timed interleaved."""
    g = torch.Generator(device="cpu").manual_seed(3)
    x0 = torch.randn(cfg.batch, 3, cfg.frames, cfg.size, cfg.size, generator=g).to(device)
    runners: list[dict] = []
    keep: dict = {"compiled": {}, "models": {}}
    plain_out: dict[str, torch.Tensor] = {}

    def add_eager(name, path, bench=True):
        m = build(name, path, states[name], cfg, device).eval()
        x = layout(path, x0)

        def fn(m=m, x=x, bench=bench):
            with torch.inference_mode(), amp(device, "bf16"), cudnn_benchmark(bench and cfg.cudnn_benchmark):
                return m(x)

        t0 = time.perf_counter()
        y = fn()
        sync()
        first = time.perf_counter() - t0
        for _ in range(cfg.warmup):
            fn()
        if path == "plain" and bench:
            plain_out[name] = y
        err = rel_err(y, plain_out[name]) if name in plain_out else None
        keep["models"][(name, path)] = m
        runners.append(dict(model=name, path=path, precision="bf16", compiled=False, cuda_graph=False,
                            cudnn_benchmark=bench and cfg.cudnn_benchmark, batch=cfg.batch, fn=fn,
                            first_call_s=first, rel_err_vs_plain=err,
                            strict_check_ok=checks[name].get(path, {}).get("ok")))

    for name in cfg.models:
        for path in ["plain", *[p for p in verified(checks, name) if p != "plain"]]:
            try:
                add_eager(name, path)
            except Exception as exc:
                record_error(errors, "inference", f"{name} {path}", exc)
        if cfg.cudnn_benchmark and name in NOBENCH_MODELS and "cl" in verified(checks, name):
            try:
                add_eager(name, "cl", bench=False)
            except Exception as exc:
                record_error(errors, "inference", f"{name} cl no-benchmark", exc)
        free(device)

    # One quick pass picks each model's fastest eager path: that one is captured as a graph.
    time_interleaved(runners, iters=max(1, cfg.iters // 2), repeats=1, sync=sync, clock=clock, floor_s=0)
    best_eager = {}
    for r in runners:
        if r["cudnn_benchmark"] == cfg.cudnn_benchmark:
            if r["model"] not in best_eager or r["seconds"] < best_eager[r["model"]]["seconds"]:
                best_eager[r["model"]] = r
    keep["best_eager"] = {n: r["path"] for n, r in best_eager.items()}

    if device.type == "cuda" and cfg.graphs:
        for name, r in best_eager.items():
            try:
                m = keep["models"][(name, r["path"])]
                runner = CudaGraphRunner(m, layout(r["path"], x0), "bf16", device)
                y = runner()
                sync()
                runners.append(dict(model=name, path=r["path"], precision="bf16", compiled=False,
                                    cuda_graph=True, cudnn_benchmark=cfg.cudnn_benchmark, batch=cfg.batch,
                                    fn=runner, rel_err_vs_plain=rel_err(y, plain_out[name])))
            except Exception as exc:
                record_error(errors, "inference", f"{name} {r['path']} cuda graph", exc)

    if cfg.compile:
        reserve = cfg.reserve_s
        for name in cfg.compile_models:
            for path in cfg.compile_paths:
                if name not in cfg.models or path not in verified(checks, name):
                    continue
                if clock.left() < reserve:
                    runners.append(dict(model=name, path=path, precision="bf16", compiled=True, batch=cfg.batch,
                                        skipped="time budget"))
                    continue
                try:
                    m = build(name, path, states[name], cfg, device).eval()
                    cm = compile_module(m, cfg.compile_mode)
                    x = layout(path, x0)

                    def fn(cm=cm, x=x):
                        with torch.inference_mode(), amp(device, "bf16"):
                            return cm(x)

                    before = graphs_compiled()
                    t0 = time.perf_counter()
                    y = fn()
                    sync()
                    seconds = time.perf_counter() - t0
                    graphs = graphs_compiled() - before
                    for _ in range(cfg.warmup):
                        fn()
                    err = rel_err(y, plain_out[name])
                    ok = err < MAX_REL_ERR["bf16"] and graphs > 0
                    print(f"  compiled {name} {path} in {seconds:.1f} s ({graphs} graphs), rel err {err:.1e}",
                          file=sys.stderr, flush=True)
                    keep["compiled"][(name, path)] = cm
                    row = dict(model=name, path=path, precision="bf16", compiled=True, cuda_graph=False,
                               cudnn_benchmark=cfg.cudnn_benchmark, batch=cfg.batch, fn=fn,
                               compile_s=seconds, graphs=graphs, rel_err_vs_plain=err,
                               compile_mode=cfg.compile_mode)
                    if not ok:
                        row["check_failed"] = True
                    runners.append(row)
                except Exception as exc:
                    record_error(errors, "inference", f"{name} {path} compiled", exc)
                    if isinstance(exc, torch.cuda.OutOfMemoryError):
                        break
                free(device)

    timed = [r for r in runners if "fn" in r]
    print(f"  timing {len(timed)} inference runners ({cfg.repeats} reps x {cfg.iters} iters)", file=sys.stderr)
    time_interleaved(timed, iters=cfg.iters, repeats=cfg.repeats, sync=sync, clock=clock, floor_s=cfg.reserve_s / 2)
    rows = []
    for r in runners:
        row = {k: v for k, v in r.items() if k not in ("fn", "seconds", "seconds_reps")}
        row["kind"] = "inference"
        if "seconds" in r:
            row["clips_per_s"] = r["batch"] / r["seconds"]
            row["clips_per_s_reps"] = [r["batch"] / s for s in r["seconds_reps"]]
            row["ms_per_batch"] = r["seconds"] * 1e3
            row["tflops"] = 2 * cfg.macs[r["model"]] * r["batch"] / r["seconds"] / 1e12
        rows.append(row)
    return rows, keep


def summarise(cfg, rows) -> dict:
    """Each model at its fastest (verified rows only) against c3d at its fastest; the same path against
    c3d on the same path; the MAC bound."""
    inf = [r for r in rows if r.get("kind") == "inference" and "clips_per_s" in r and not r.get("check_failed")]
    best: dict[str, dict] = {}
    for r in inf:
        if r["model"] not in best or r["clips_per_s"] > best[r["model"]]["clips_per_s"]:
            best[r["model"]] = r
    out: dict = {"best": {}, "targets": {}}
    c3d = best.get("c3d")
    for name, r in best.items():
        entry = {"path": r["path"], "compiled": r["compiled"], "cuda_graph": r.get("cuda_graph", False),
                 "clips_per_s": r["clips_per_s"], "tflops": r["tflops"],
                 "mac_bound_vs_c3d": cfg.macs["c3d"] / cfg.macs[name] if "c3d" in cfg.macs else None}
        if c3d is not None:
            entry["vs_c3d_best"] = r["clips_per_s"] / c3d["clips_per_s"]
            entry["share_of_mac_bound"] = entry["vs_c3d_best"] / entry["mac_bound_vs_c3d"]
            # Repetition by repetition against c3d's best row (they ran seconds apart).
            pairs = [a / b for a, b in zip(r["clips_per_s_reps"], c3d["clips_per_s_reps"], strict=False)]
            entry["vs_c3d_paired"] = {"median": statistics.median(pairs), "min": min(pairs), "max": max(pairs)}
        out["best"][name] = entry
    for name, want in TARGETS.items():
        if name in out["best"] and c3d is not None:
            got = out["best"][name]["vs_c3d_best"]
            out["targets"][f"{name} >= {want}x c3d (inference, batch {cfg.batch}, bf16, each at its fastest)"] = {
                "ratio": got, "met": got >= want}
    return out


def bench_train(cfg, device, sync, states, checks, best_eager, clock, errors) -> list[dict]:
    """Forward, cross-entropy, backward and SGD step per model (with the C3D head), bf16 autocast."""
    g = torch.Generator(device="cpu").manual_seed(4)
    x0 = torch.randn(cfg.train_batch, 3, cfg.frames, cfg.size, cfg.size, generator=g).to(device)
    y = torch.randint(0, NUM_CLASSES, (cfg.train_batch,), generator=g).to(device)
    runners = []
    train_states = {}
    for name in cfg.models:
        torch.manual_seed(0)
        with_head = create_model(name, NUM_CLASSES, width=cfg.width, frames=cfg.frames, size=cfg.size, fast=False)
        head = {k: v for k, v in with_head.state_dict().items() if k.split(".")[0] in ("fc6", "fc7", "fc8")}
        train_states[name] = {**states[name], **head}
    for name in cfg.models:
        paths = ["plain", "cl"] if "cl" in verified(checks, name) else ["plain"]
        if name in SP_MODELS:
            # The best eager inference rewrite, and the package's fast path, under autograd too.
            for p in (best_eager.get(name), "fast", "cl+s2d+t2d"):
                if p and p in verified(checks, name) and p not in paths:
                    paths.append(p)
        compile_here = cfg.compile and name in cfg.compile_train
        for path, compiled in [*((p, False) for p in paths), *([("cl", True)] if compile_here else [])]:
            if compiled and clock.left() < cfg.reserve_s:
                runners.append(dict(model=name, path=path, compiled=True, skipped="time budget"))
                continue
            try:
                m = build(name, path, train_states[name], cfg, device, NUM_CLASSES).train()
                opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)
                fwd = compile_module(m, cfg.compile_mode) if compiled else m
                x = layout(path, x0)

                def step(fwd=fwd, opt=opt, x=x):
                    with amp(device, "bf16"):
                        loss = F.cross_entropy(fwd(x).float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

                t0 = time.perf_counter()
                step()
                sync()
                first = time.perf_counter() - t0
                for _ in range(cfg.warmup):
                    step()
                runners.append(dict(model=name, path=path, precision="bf16", compiled=compiled, batch=cfg.train_batch,
                                    fn=step, first_call_s=first))
            except Exception as exc:
                record_error(errors, "train", f"{name} {path}{' compiled' if compiled else ''}", exc)
            free(device)
    timed = [r for r in runners if "fn" in r]
    time_interleaved(timed, iters=cfg.train_iters, repeats=cfg.repeats, sync=sync, clock=clock,
                     floor_s=cfg.reserve_s / 3)
    rows = []
    for r in runners:
        row = {k: v for k, v in r.items() if k not in ("fn", "seconds", "seconds_reps")}
        row["kind"] = "train_step"
        if "seconds" in r:
            row["clips_per_s"] = r["batch"] / r["seconds"]
            row["train_step_per_s"] = 1 / r["seconds"]
            row["ms_per_step"] = r["seconds"] * 1e3
        rows.append(row)
    return rows


def bench_latency(cfg, device, sync, states, checks, best_eager, clock, errors) -> list[dict]:
    """Batch 1: each model's fastest eager path (and plain), eager and as a CUDA graph."""
    g = torch.Generator(device="cpu").manual_seed(5)
    x0 = torch.randn(1, 3, cfg.frames, cfg.size, cfg.size, generator=g).to(device)
    runners = []
    for name in cfg.models:
        for path in dict.fromkeys(["plain", best_eager.get(name, "plain"), *(["cl"] if "cl" in verified(checks, name) else [])]):
            try:
                m = build(name, path, states[name], cfg, device).eval()
                x = layout(path, x0)
                for precision in ("bf16", "fp32"):
                    def fn(m=m, x=x, precision=precision):
                        with torch.inference_mode(), amp(device, precision):
                            return m(x)

                    for _ in range(cfg.warmup + 1):
                        fn()
                    runners.append(dict(model=name, path=path, precision=precision, compiled=False, cuda_graph=False,
                                        batch=1, fn=fn))
                    if device.type == "cuda" and cfg.graphs:
                        runners.append(dict(model=name, path=path, precision=precision, compiled=False,
                                            cuda_graph=True, batch=1, fn=CudaGraphRunner(m, x, precision, device)))
            except Exception as exc:
                record_error(errors, "latency", f"{name} {path}", exc)
    time_interleaved(runners, iters=cfg.latency_iters, repeats=cfg.repeats, sync=sync, clock=clock, floor_s=30)
    rows = []
    for r in runners:
        row = {k: v for k, v in r.items() if k not in ("fn", "seconds", "seconds_reps")}
        row.update(kind="latency", clips_per_s=1 / r["seconds"], latency_ms_b1=r["seconds"] * 1e3,
                   latency_ms_b1_reps=[s * 1e3 for s in r["seconds_reps"]])
        rows.append(row)
    return rows


# -- profile ----------------------------------------------------------------------------------------
class Region(nn.Module):
    """Runs ``inner`` inside a profiler range named ``label`` and notes the work of one call: MACs of a
    conv, bytes read and written (the least traffic the op can do)."""

    def __init__(self, label: str, inner: nn.Module, kind: str):
        super().__init__()
        self.label, self.inner, self.kind = label, inner, kind
        self.info: dict | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.profiler.record_function(self.label):
            y = self.inner(x)
        if self.info is None:
            conv = self.inner if hasattr(self.inner, "weight") else getattr(self.inner, "conv", None)
            macs = y.numel() * conv.weight[0].numel() if self.kind == "conv" and conv is not None else 0
            self.info = {"kind": self.kind, "in_shape": list(x.shape), "out_shape": list(y.shape),
                         "dtype": str(y.dtype).replace("torch.", ""), "macs": macs,
                         "bytes": x.numel() * x.element_size() + y.numel() * y.element_size()}
        return y


def add_regions(model: nn.Module) -> list[Region]:
    """Profiler ranges around every conv stage, each SP conv and every pool (plain-path modules)."""
    regions = []
    for st in model.plan:
        mod = getattr(model, st.name)
        if st.kind == "sp":
            mod.spatial = Region(f"{st.name}.spatial", mod.spatial, "conv")
            mod.temporal = Region(f"{st.name}.temporal", mod.temporal, "conv")
            regions += [mod.spatial, mod.temporal]
            outer = Region(st.name, mod, "stage")
        else:
            outer = Region(st.name, mod, "conv")
        setattr(model, st.name, outer)
        regions.append(outer)
        if st.pool is not None:
            pname = f"pool{st.group}"
            pool = Region(pname, getattr(model, pname), "pool")
            setattr(model, pname, pool)
            regions.append(pool)
    return regions


def _short(name: str, n: int = 96) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def profile_once(fn, device, iters: int, labels: set[str]) -> dict:
    """Device time per range and per kernel, per call, from ``iters`` profiled calls (CPU time of the
    leaf ops when there is no device)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync = make_sync(device)
    fn()
    sync()
    with profile(activities=acts) as prof:
        for _ in range(iters):
            fn()
        sync()
    events = prof.events()
    cuda = device.type == "cuda"

    def own(ev) -> list[tuple[str, float]]:
        """(name, µs) of the work event ``ev`` itself did: its device kernels, or on the CPU its own
        (exclusive) time."""
        if cuda:
            return [(k.name, k.duration) for k in ev.kernels]
        return [("(python inside the range)" if ev.name in labels else ev.name, ev.self_cpu_time_total)]

    def under(e) -> list[tuple[str, float]]:
        stack, out = [e], []
        while stack:
            ev = stack.pop()
            out += own(ev)
            stack += ev.cpu_children
        return out

    regions: dict[str, dict] = {}
    kernels_all: dict[str, float] = defaultdict(float)
    for e in events:
        for k, d in own(e):
            kernels_all[k] += d
        if e.name in labels:
            r = regions.setdefault(e.name, {"us": 0.0, "kernels": defaultdict(float)})
            r["us"] += e.device_time_total if cuda else e.cpu_time_total
            for k, d in under(e):
                r["kernels"][k] += d
    total_us = sum(kernels_all.values()) / iters
    top = sorted(kernels_all.items(), key=lambda kv: -kv[1])[:12]
    return {
        "device_ms_per_call" if cuda else "cpu_ms_per_call": total_us / 1e3,
        "top_kernels": [{"name": _short(k), "ms": v / iters / 1e3, "share": v / iters / max(total_us, 1e-9)}
                        for k, v in top],
        "regions": {k: {"ms": v["us"] / iters / 1e3,
                        "kernels": [{"name": _short(n), "ms": d / iters / 1e3}
                                    for n, d in sorted(v["kernels"].items(), key=lambda kv: -kv[1])[:3]]}
                    for k, v in regions.items()},
    }


def run_profile(cfg, device, states, checks, keep, anchors, clock, errors) -> dict:
    g = torch.Generator(device="cpu").manual_seed(6)
    x0 = torch.randn(cfg.batch, 3, cfg.frames, cfg.size, cfg.size, generator=g).to(device)
    out: dict = {"batch": cfg.batch, "precision": "bf16", "iters": cfg.profile_iters, "runs": []}
    for name in cfg.models:
        paths = [p for p in verified(checks, name) if not PATHS[p][0] and (name in SP_MODELS or p == "cl")]
        jobs = [(p, False) for p in paths] + ([("fast", False)] if "fast" in verified(checks, name) else [])
        jobs += [(p, True) for (n, p) in keep.get("compiled", {}) if n == name]
        for path, compiled in jobs:
            if clock.left() < 15:
                out["runs"].append({"model": name, "path": path, "compiled": compiled, "skipped": "time budget"})
                continue
            try:
                regions: list[Region] = []
                if compiled:
                    m = keep["compiled"][(name, path)]
                else:
                    m = build(name, path, states[name], cfg, device).eval()
                    if not PATHS[path][0]:
                        regions = add_regions(m)
                x = layout(path, x0)

                def fn(m=m, x=x):
                    with torch.inference_mode(), amp(device, "bf16"):
                        return m(x)

                prof = profile_once(fn, device, cfg.profile_iters, {r.label for r in regions})
                run = {"model": name, "path": path, "compiled": compiled, **prof}
                for r in regions:
                    entry = run["regions"].setdefault(r.label, {"ms": 0.0, "kernels": []})
                    entry.update(r.info or {})
                # An SP stage's own time beyond its two convs is its ReLUs (and BatchNorms).
                for r in regions:
                    if r.kind == "stage":
                        entry = run["regions"][r.label]
                        inner = [run["regions"].get(f"{r.label}.{s}", {}) for s in ("spatial", "temporal")]
                        entry["macs"] = sum(i.get("macs", 0) for i in inner)
                        entry["relu_bn_ms"] = entry["ms"] - sum(i.get("ms", 0.0) for i in inner)
                if regions:
                    top = [r.label for r in regions if "." not in r.label]
                    total = run.get("device_ms_per_call", run.get("cpu_ms_per_call", 0.0))
                    run["unattributed_ms"] = total - sum(run["regions"][k]["ms"] for k in top if k in run["regions"])
                out["runs"].append(run)
                del m
            except Exception as exc:
                record_error(errors, "profile", f"{name} {path}{' compiled' if compiled else ''}", exc)
            free(device)
    # Rates against the best conv of the run and against the copy bandwidth.
    best = anchors.get("best_conv_tflops", 0.0)
    for run in out["runs"]:
        for entry in run.get("regions", {}).values():
            if entry.get("ms", 0) > 0:
                if entry.get("macs"):
                    entry["tflops"] = 2 * entry["macs"] / (entry["ms"] / 1e3) / 1e12
                    best = max(best, entry["tflops"])
                if entry.get("bytes"):
                    entry["gb_per_s"] = entry["bytes"] / (entry["ms"] / 1e3) / 1e9
    bw = anchors.get("copy_gb_per_s")
    for run in out["runs"]:
        for entry in run.get("regions", {}).values():
            if "tflops" in entry and best:
                entry["share_of_best_conv"] = entry["tflops"] / best
            if "gb_per_s" in entry and bw:
                entry["share_of_copy_bw"] = entry["gb_per_s"] / bw
                # The least time the op could take: its FLOPs at the best conv's rate or its bytes at
                # the copy's, whichever is longer; how close the measurement comes to it.
                floor_ms = max(2 * entry.get("macs", 0) / (best * 1e12) if best else 0.0,
                               entry["bytes"] / (bw * 1e9)) * 1e3
                entry["roofline_ms"] = floor_ms
                entry["of_roofline"] = floor_ms / entry["ms"]
    out["best_conv_tflops"] = best
    return out


# -- report -----------------------------------------------------------------------------------------
def render(result: dict) -> str:
    out = [f"{result['device']}, torch {result['torch']}; batch {result['config']['batch']}, "
           f"{result['config']['frames']}x{result['config']['size']}^2, width {result['config']['width']}"]
    a = result.get("anchors", {})
    if a:
        out.append(f"Anchors: best conv {a.get('best_conv_tflops', 0):.0f} TFLOP/s, GEMM {a.get('gemm_tflops', 0):.0f} "
                   f"TFLOP/s, copy {a.get('copy_gb_per_s', 0):.0f} GB/s")
    summ = result.get("summary", {}).get("best", {})
    inf = [r for r in result["rows"] if r.get("kind") == "inference"]
    if inf:
        c3d = summ.get("c3d", {}).get("clips_per_s")
        out += ["", "| model | path | compiled | graph | cudnn bench | clips/s | vs c3d best | TFLOP/s | rel err |",
                "|---|---|---|---|---|---:|---:|---:|---:|"]
        for r in inf:
            if "clips_per_s" not in r:
                out.append(f"| {r['model']} | {r['path']} | {r.get('compiled')} | | | {r.get('skipped', '-')} | | | |")
                continue
            vs = f"{r['clips_per_s'] / c3d:.2f}x" if c3d else "-"
            err = r.get("rel_err_vs_plain")
            out.append(f"| {r['model']} | {r['path']} | {'yes' if r['compiled'] else ''} | "
                       f"{'yes' if r.get('cuda_graph') else ''} | {'on' if r.get('cudnn_benchmark') else 'off'} | "
                       f"{r['clips_per_s']:.0f} | {vs} | {r['tflops']:.0f} | "
                       f"{'-' if err is None else f'{err:.1e}'}{' FAILED' if r.get('check_failed') else ''} |")
    if summ:
        out += ["", "| model | fastest path | clips/s | vs c3d | MAC bound vs c3d | share of MAC bound |",
                "|---|---|---:|---:|---:|---:|"]
        for n, e in summ.items():
            tag = e["path"] + (" compiled" if e["compiled"] else "") + (" graph" if e["cuda_graph"] else "")
            out.append(f"| {n} | {tag} | {e['clips_per_s']:.0f} | {e.get('vs_c3d_best', float('nan')):.2f}x | "
                       f"{e['mac_bound_vs_c3d']:.2f}x | {100 * e.get('share_of_mac_bound', float('nan')):.0f}% |")
        for k, v in result["summary"].get("targets", {}).items():
            out.append(f"- {k}: {v['ratio']:.2f}x, {'met' if v['met'] else 'NOT met'}")
    tr = [r for r in result["rows"] if r.get("kind") == "train_step" and "clips_per_s" in r]
    if tr:
        out += ["", "| training step | path | compiled | clips/s | ms/step |", "|---|---|---|---:|---:|"]
        out += [f"| {r['model']} | {r['path']} | {'yes' if r['compiled'] else ''} | {r['clips_per_s']:.0f} | "
                f"{r['ms_per_step']:.1f} |" for r in tr]
    lat = [r for r in result["rows"] if r.get("kind") == "latency"]
    if lat:
        out += ["", "| batch 1 | path | precision | graph | ms |", "|---|---|---|---|---:|"]
        out += [f"| {r['model']} | {r['path']} | {r['precision']} | {'yes' if r['cuda_graph'] else ''} | "
                f"{r['latency_ms_b1']:.2f} |" for r in lat]
    prof = result.get("profile", {})
    for run in prof.get("runs", []):
        regs = run.get("regions", {})
        if not regs:
            if run.get("top_kernels"):
                tops = ", ".join(f"{k['name'][:50]} {100 * k['share']:.0f}%" for k in run["top_kernels"][:4])
                out += ["", f"Profile {run['model']} {run['path']}{' compiled' if run['compiled'] else ''}: "
                        f"{run.get('device_ms_per_call', run.get('cpu_ms_per_call', 0)):.2f} ms per batch; {tops}"]
            continue
        out += ["", f"Profile {run['model']} {run['path']}: "
                f"{run.get('device_ms_per_call', run.get('cpu_ms_per_call', 0)):.2f} ms per batch, "
                f"unattributed (ReLU outside SP, flatten) {run.get('unattributed_ms', 0):.2f} ms",
                "", "| region | ms | TFLOP/s | % best conv | GB/s | % copy BW | of roofline | top kernel |",
                "|---|---:|---:|---:|---:|---:|---:|---|"]
        for k, e in regs.items():
            kern = e["kernels"][0]["name"][:60] if e.get("kernels") else ""
            out.append(f"| {k} | {e['ms']:.3f} | {e.get('tflops', 0):.1f} | {100 * e.get('share_of_best_conv', 0):.0f}% | "
                       f"{e.get('gb_per_s', 0):.0f} | {100 * e.get('share_of_copy_bw', 0):.0f}% | "
                       f"{100 * e.get('of_roofline', 0):.0f}% | {kern} |")
    if result.get("skipped"):
        out += ["", "Skipped (time budget): " + ", ".join(
            f"{r.get('kind', r.get('section', ''))} {r['model']} {r['path']}{' compiled' if r.get('compiled') else ''}"
            for r in result["skipped"])]
    if result.get("errors"):
        out += ["", f"{len(result['errors'])} error(s): " + "; ".join(f"{e['section']} {e['what']}" for e in result["errors"])]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-smoke", action="store_true", help="every section on the CPU at a tiny width and size")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--sections", default="inference,train,latency,profile")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--compile-paths", default="fast,cl,cl+s2d+t2d,cl+s2d+gemm")
    p.add_argument("--compile-models", default="c3d,sp,mc4,mc5")
    p.add_argument("--compile-train", default="c3d,sp", help="models whose training step is also compiled")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode (e.g. max-autotune-no-cudagraphs: slower to compile)")
    p.add_argument("--no-graphs", action="store_true", help="no CUDA graph rows")
    p.add_argument("--no-cudnn-benchmark", action="store_true")
    p.add_argument("--budget", type=float, default=390, help="seconds for the whole run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", type=Path, default=None, help="default benches/results/gpu/students.json")
    args = p.parse_args(argv)

    cfg = argparse.Namespace(
        width=1.0, frames=16, size=112, batch=32, train_batch=32, check_batch=2, warmup=3,
        iters=args.iters, train_iters=max(1, args.iters // 2), latency_iters=2 * args.iters,
        repeats=args.repeats, profile_iters=3, gemm_n=8192, copy_mib=1024, reserve_s=150.0,
        models=[m for m in args.models.split(",") if m], compile=not args.no_compile,
        compile_paths=[q for q in args.compile_paths.split(",") if q],
        compile_models=[m for m in args.compile_models.split(",") if m],
        compile_train=[m for m in args.compile_train.split(",") if m], compile_mode=args.compile_mode,
        graphs=not args.no_graphs, cudnn_benchmark=not args.no_cudnn_benchmark, budget=args.budget,
    )
    unknown = [q for q in cfg.compile_paths if q not in PATHS]
    if unknown:
        p.error(f"--compile-paths: unknown {unknown}; known: {', '.join(PATHS)}")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu")
    out_path = args.out or (Path("/tmp/gpu_students_smoke.json") if args.cpu_smoke
                            else ROOT / "benches" / "results" / "gpu" / "students.json")
    if args.cpu_smoke:
        # Small enough for two shared cores; one compiled inference path keeps compile covered (a compiled
        # training step adds a minute of CPU compile: ask for it with --compile-train sp).
        cfg.width, cfg.size, cfg.batch, cfg.train_batch, cfg.check_batch = 1 / 16, 32, 2, 2, 1
        cfg.warmup, cfg.iters, cfg.train_iters, cfg.latency_iters = 1, 1, 1, 2
        cfg.repeats, cfg.profile_iters, cfg.gemm_n, cfg.copy_mib, cfg.reserve_s = 2, 1, 256, 16, 20.0
        if args.compile_paths == p.get_default("compile_paths"):
            cfg.compile_paths = ["cl+s2d+t2d"]
        if args.compile_models == p.get_default("compile_models"):
            cfg.compile_models = ["sp"]
        if args.compile_train == p.get_default("compile_train"):
            cfg.compile_train = []
    elif device.type != "cuda":
        p.error("no CUDA device: run with --cpu-smoke here, or on the GPU machine")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    sync = make_sync(device)
    clock = Clock(cfg.budget)
    sections = set(args.sections.split(","))

    torch.manual_seed(0)
    states = {}
    cfg.macs, params = {}, {}
    for name in cfg.models:
        m = create_model(name, width=cfg.width, frames=cfg.frames, size=cfg.size, fast=False)
        states[name] = m.state_dict()
        cfg.macs[name] = count_macs(m, (1, 3, cfg.frames, cfg.size, cfg.size))
        params[name] = count_params(m)
    if "c3d" not in cfg.macs:  # the MAC bound needs the teacher's count even when c3d is not timed
        cfg.macs["c3d"] = count_macs(create_model("c3d", width=cfg.width, frames=cfg.frames, size=cfg.size,
                                                  fast=False), (1, 3, cfg.frames, cfg.size, cfg.size))

    result: dict = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.processor() or 'cpu'})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "smoke": args.cpu_smoke,
        "command": " ".join([Path(sys.executable).name, *[Path(sys.argv[0]).name, *sys.argv[1:]]]),
        "config": {k: v for k, v in vars(cfg).items() if k != "macs"},
        "gmacs_per_clip": {k: v / 1e9 for k, v in cfg.macs.items()},
        "params": params,
        "rows": [], "skipped": [], "errors": [],
    }

    def add_rows(rows: list[dict]) -> None:
        # Every entry of "rows" is a measurement; what the time budget left out is listed apart.
        result["rows"] += [r for r in rows if "clips_per_s" in r]
        result["skipped"] += [r for r in rows if "clips_per_s" not in r]

    def save():
        result["elapsed_s"] = clock.elapsed()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        from _common import write_json

        write_json(out_path, result)

    print(f"device {result['device']}, torch {result['torch']}, budget {cfg.budget:.0f} s", file=sys.stderr, flush=True)
    try:
        result["anchors"] = measure_anchors(cfg, device, sync)
    except Exception as exc:
        result["anchors"] = {}
        record_error(result["errors"], "anchors", "all", exc)
    print(f"  anchors done at {clock.elapsed():.0f} s", file=sys.stderr, flush=True)
    checks = run_checks(cfg, device, states, result["errors"])
    result["checks"] = checks
    save()
    print(f"  checks done at {clock.elapsed():.0f} s", file=sys.stderr, flush=True)

    best_eager: dict[str, str] = {}
    keep: dict = {}
    if "inference" in sections:
        try:
            rows, keep = bench_inference(cfg, device, sync, states, checks, clock, result["errors"])
            best_eager = keep.get("best_eager", {})
            add_rows(rows)
            result["best_eager_path"] = best_eager
            result["summary"] = summarise(cfg, result["rows"])
        except Exception as exc:
            record_error(result["errors"], "inference", "all", exc)
        save()
        print(f"  inference done at {clock.elapsed():.0f} s", file=sys.stderr, flush=True)
        # The eager copies are rebuilt where needed; the compiled ones are profiled at the end.
        keep.pop("models", None)
        free(device)
    if "train" in sections:
        try:
            add_rows(bench_train(cfg, device, sync, states, checks, best_eager, clock, result["errors"]))
        except Exception as exc:
            record_error(result["errors"], "train", "all", exc)
        save()
        free(device)
        print(f"  train done at {clock.elapsed():.0f} s", file=sys.stderr, flush=True)
    if "latency" in sections:
        try:
            add_rows(bench_latency(cfg, device, sync, states, checks, best_eager, clock, result["errors"]))
        except Exception as exc:
            record_error(result["errors"], "latency", "all", exc)
        save()
        free(device)
        print(f"  latency done at {clock.elapsed():.0f} s", file=sys.stderr, flush=True)
    if "profile" in sections:
        try:
            result["profile"] = run_profile(cfg, device, states, checks, keep, result.get("anchors", {}), clock,
                                            result["errors"])
        except Exception as exc:
            record_error(result["errors"], "profile", "all", exc)
        save()
        print(f"  profile done at {clock.elapsed():.0f} s", file=sys.stderr, flush=True)
    print(render(result))
    print(f"\nwrote {out_path} in {clock.elapsed():.0f} s", file=sys.stderr)
    failed_checks = [f"{n} {q}" for n, c in checks.items() for q, r in c.items() if not r.get("ok")]
    if failed_checks:
        print(f"checks failed: {', '.join(failed_checks)}", file=sys.stderr)
    if result["errors"]:
        print(f"{len(result['errors'])} error(s), see {out_path}", file=sys.stderr)
    return 1 if (failed_checks or result["errors"]) and args.cpu_smoke else 0


if __name__ == "__main__":
    raise SystemExit(main())
