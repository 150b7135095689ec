"""Data-parallel runs under ``torchrun``: NCCL on GPUs, gloo on the CPU. Rank 0 writes metrics and
checkpoints; the loader shards by rank (``ClipLoader`` reads rank/world size from ``torch.distributed``).

``torchrun --nproc_per_node N -m c3d_distill train …`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR;
without them everything here is a single-process no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``cpu`` | ``cuda`` | ``cuda:N``; under torchrun ``cuda`` means this process's local GPU."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        if device == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device(device)
    if device != "cpu":
        raise ValueError(f"--device: expected cpu or cuda[:N], got {device!r}")
    return torch.device("cpu")


def setup(device: str = "cpu") -> DistInfo:
    """Join the process group when launched by torchrun (idempotent); return rank, world size, device."""
    if not launched_by_torchrun():
        return DistInfo(device=resolve_device(device))
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    dev = resolve_device(device, local)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def info() -> DistInfo:
    if not is_initialized():
        return DistInfo()
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    return not is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def _reduce(t: torch.Tensor, op) -> torch.Tensor:
    if not is_initialized():
        return t
    # NCCL reduces device tensors only; gloo CPU ones.
    dev = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
    buf = t.to(dev).clone()
    dist.all_reduce(buf, op=op)
    return buf.to(t.device)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    return _reduce(t, dist.ReduceOp.SUM)


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    return _reduce(t, dist.ReduceOp.MAX)


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` without a process group)."""
    if not is_initialized():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def sync_batchnorm(model: torch.nn.Module, device: torch.device, world_size: int) -> torch.nn.Module:
    """``--sync-bn``: every BatchNorm of ``model`` as a ``SyncBatchNorm``, so batch statistics are taken
    over the whole global batch rather than each rank's share (``convert_sync_batchnorm`` keeps the
    parameters and buffers, hence the optimiser and the checkpoint keys). Returns ``model`` unchanged, with
    a notice, where it would do nothing: one process, or a model without BatchNorm. PyTorch's
    SyncBatchNorm trains on GPUs only (its forward refuses CPU tensors under a process group), so a
    data-parallel CPU run with it is refused here, before any epoch."""
    from .log import notice

    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if world_size <= 1:
        notice("--sync-bn: does nothing without data-parallel ranks (launch with torchrun to use it)")
        return model
    if not has_bn:
        notice(f"--sync-bn: {type(model).__name__} has no BatchNorm layers; nothing to synchronise")
        return model
    if device.type != "cuda":
        raise ValueError(
            f"--sync-bn: PyTorch's SyncBatchNorm needs CUDA devices (this run is on {device.type} with "
            f"{world_size} ranks, gloo); run without --sync-bn on the CPU"
        )
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap_ddp(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around the trained network only (never the frozen teacher)."""
    if not is_initialized():
        return net
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, broadcast_buffers=True)


def cleanup() -> None:
    """Leave the process group. Every rank first waits for the others (a barrier), so that no rank's gloo
    thread is still releasing an object collective's buffers (``all_gather_object``, which hold Python
    objects) while the interpreter shuts down: that thread then needs the GIL at finalisation, gets
    ``pthread_exit`` from Python 3.11, and the process aborts ("terminate called without an active
    exception"), seen 1–3 times in 50 two-rank runs on a loaded 2-core machine."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            try:
                dist.barrier()
            except Exception:  # noqa: BLE001 - a peer already gone: leave anyway
                pass
        dist.destroy_process_group()
