"""Data-parallel training on the CPU with gloo: two processes see different clips and keep identical
models; ``torchrun … -m c3d_distill train`` writes one set of metrics and checkpoints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def synth(tiny_synth_root) -> Path:
    return tiny_synth_root


def _worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from c3d_distill import distributed
    from c3d_distill.clips import ClipLoader
    from c3d_distill.datasets import load
    from c3d_distill.models import create_model
    from c3d_distill.train.engine import build_optimizer, train_one_epoch
    from c3d_distill.train.objective import Objective, StudentNet

    info = distributed.setup("cpu")
    assert info.rank == rank and info.world_size == world
    items = load(f"synth:{root}", "train").items
    loader = ClipLoader(
        items,
        clip_len=16,
        batch_size=2,
        seed=0,
        shuffle=True,
        drop_last=True,
        return_meta=True,
        size=(18, 24),
        crop=16,
        crop_mode="random",
        flip="random",
        dtype="float32",
    )
    torch.manual_seed(100 + rank)  # different starting weights: DDP must broadcast rank 0's
    model = create_model("c3d", 3, width=0.0625, frames=16, size=16, dropout=0.5)
    net = distributed.wrap_ddp(StudentNet(model), info.device)
    opt = build_optimizer(model.parameters(), "sgd", 0.05, 0.9, 5e-4)
    seen: list[int] = []
    loader.set_epoch(0)
    res, step = train_one_epoch(
        net,
        loader,
        Objective("ce"),
        opt,
        device=info.device,
        max_steps=3,
        batch_hook=lambda s, x, y, meta: seen.extend(meta["video"].tolist()),
    )
    torch.save(
        {"videos": seen, "state": model.state_dict(), "clips": res["clips"], "step": step},
        Path(out) / f"rank{rank}.pt",
    )
    distributed.cleanup()


def test_two_gloo_ranks_see_different_clips_and_stay_identical(synth, tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(synth), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["step"] == r1["step"] == 3
    assert len(r0["videos"]) == len(r1["videos"]) == 6
    assert not set(r0["videos"]) & set(r1["videos"])  # disjoint shards
    assert r0["clips"] == r1["clips"] == 12  # the metrics are reduced over both ranks
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
    # and they did train (dropout differs per rank, the averaged gradients keep the weights equal)
    torch.manual_seed(100)
    from c3d_distill.models import create_model

    start = create_model("c3d", 3, width=0.0625, frames=16, size=16, dropout=0.5).state_dict()
    assert not torch.equal(start["conv1.weight"], r0["state"]["conv1.weight"])


@pytest.mark.slow  # two fresh processes under torchrun
def test_torchrun_train_command(synth, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "c3d_distill",
        "train",
        "--model",
        "c3d",
        "--data",
        f"synth:{synth}",
        "--out",
        str(out),
        "--width",
        "0.0625",
        "--size",
        "16",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--eval-clips",
        "1",
        "--final-eval-clips",
        "1",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in rows] == ["train", "test", "final"]  # written once, by rank 0
    assert rows[0]["clips"] == 16  # 18 videos → 9 per rank → 2 batches of 4 on each rank
    assert rows[1]["clips"] == 6 and rows[1]["videos"] == 6  # every test video evaluated once over both ranks
    assert json.loads((out / "eval.json").read_text())["world_size"] == 2
    assert proc.stdout.count("clip acc") == 1


def _gather_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from c3d_distill import distributed
    from c3d_distill.runs.config import RunConfig
    from c3d_distill.train.data import LoaderReports

    distributed.setup("cpu")
    reports = LoaderReports(RunConfig(), rank == 0)
    reports.bad = {f"/v/rank{rank}.avi": "broken"}  # each rank reads (and skips) its own shard's files
    Path(out, f"bad{rank}.json").write_text(json.dumps(reports.all_bad()))
    distributed.cleanup()


def test_every_ranks_unreadable_videos_reach_eval_json(tmp_path):
    mp.spawn(_gather_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        assert json.loads((tmp_path / f"bad{rank}.json").read_text()) == ["/v/rank0.avi", "/v/rank1.avi"]
