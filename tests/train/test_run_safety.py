"""Training as people run it: one run per --out (the lock), a checkpoint write that fails, --amp bf16|fp16,
--sync-bn, TensorBoard scalars and the running loss in the progress bar — on a tiny synthetic set."""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from c3d_distill.cli import main
from c3d_distill.runs.checkpoint import load_checkpoint
from c3d_distill.runs.config import RunConfig
from c3d_distill.runs.folder import LOCK_NAME

SHAPE = ["--width", "0.0625", "--size", "16", "--batch-size", "4"]
FAST = ["--eval-clips", "1", "--final-eval-clips", "1", "--no-progress", "--lr", "0.002", "--optimizer", "adamw"]
PYTHON_ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "python"), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def synth(tiny_synth_root) -> str:
    return f"synth:{tiny_synth_root}"


def train_args(synth: str, out: Path, *extra: str, epochs: int = 1) -> list[str]:
    return ["train", "--model", "c3d", "--data", synth, "--out", str(out), *SHAPE, *FAST, "--epochs", str(epochs),
            *extra]


def failing(capsys, argv: list[str], status: int = 2) -> str:
    capsys.readouterr()
    assert main(argv) == status
    return capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# the lock


def test_a_second_run_in_a_busy_folder_is_refused_naming_the_holder(synth, tmp_path, capsys):
    out = tmp_path / "run"
    code = (
        "import time; from pathlib import Path; from c3d_distill.runs.folder import RunLock; "
        f"RunLock.acquire(Path({str(out)!r})); print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=PYTHON_ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        # --resume too: the busy run's checkpoint must not be read while it is being replaced
        for extra in ([], ["--resume"], ["--overwrite"]):
            err = failing(capsys, train_args(synth, out, *extra))
            assert f"another run is using this folder (pid {holder.pid} on host {socket.gethostname()}" in err
            assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: the next run takes the folder over, says so once, and finishes
    assert main(train_args(synth, out)) == 0
    err = capsys.readouterr().err
    assert err.count("took over the lock of a run that is no longer running") == 1, err
    assert (out / "eval.json").exists() and not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("exc,status", [(KeyboardInterrupt, 130), (FloatingPointError("loss became nan"), 2)])
def test_the_lock_is_released_on_ctrl_c_and_on_error(synth, tmp_path, monkeypatch, capsys, exc, status):
    import c3d_distill.train.run as run_mod

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(run_mod, "train_one_epoch", boom)
    out = tmp_path / "run"
    failing(capsys, train_args(synth, out), status)
    assert out.is_dir() and not (out / LOCK_NAME).exists()


def test_a_run_refused_by_its_checks_leaves_no_folder(synth, tmp_path, capsys):
    out = tmp_path / "new" / "run"
    err = failing(capsys, train_args(synth, out, "--lr", "-1"))
    assert "--lr" in err and not (tmp_path / "new").exists()


# --------------------------------------------------------------------------------------------------
# a checkpoint write that fails


def test_a_full_disk_at_a_checkpoint_keeps_the_previous_one_and_says_so(synth, tmp_path, monkeypatch, capsys):
    import c3d_distill.runs.checkpoint as ck

    real_save, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"x" * 1000)  # part of the file written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ck.torch, "save", save)
    out = tmp_path / "run"
    err = failing(capsys, train_args(synth, out, epochs=3))
    path = out / "checkpoint.pt"
    assert (
        f"{path}: could not write epoch 2 (No space left on device); the previous checkpoint (epoch 1) is kept"
        in err
    ), err
    assert load_checkpoint(out)["epoch"] == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")] and not (out / LOCK_NAME).exists()
    monkeypatch.setattr(ck.torch, "save", real_save)
    assert main([*train_args(synth, out, epochs=3), "--resume"]) == 0  # room again: it continues from epoch 1
    assert load_checkpoint(out)["epoch"] == 3


# --------------------------------------------------------------------------------------------------
# --amp, --sync-bn, TensorBoard


def test_amp_flag_and_old_configs():
    from c3d_distill.cli import build_parser
    from c3d_distill.train import configfile

    p = build_parser("train")
    base = ["train", "--data", "synth:x", "--out", "o"]

    def amp(argv):  # the flags as the command sees them: command line over --config over the defaults
        return configfile.resolve(p.parse_args(argv), "train")[0].amp

    assert amp(base) is None
    assert amp([*base, "--amp"]) == "bf16"
    assert amp([*base, "--amp", "fp16", "--sync-bn"]) == "fp16"
    with pytest.raises(SystemExit):
        p.parse_args([*base, "--amp", "fp32"])
    assert RunConfig.from_dict({"amp": True}).amp == "bf16"  # configs written when --amp was bf16 only
    assert RunConfig.from_dict({"amp": False}).amp is None
    with pytest.raises(ValueError, match="--amp: 'int8'"):
        RunConfig(amp="int8").validate()


def test_fp16_loss_scaling_gives_the_plain_step(monkeypatch):
    """The GradScaler path (scaled backward, unscale before clipping, step) moves the weights as the plain
    float32 step does; run on the CPU, where autocast is off and torch has a CPU GradScaler."""
    from c3d_distill.models import create_model
    from c3d_distill.train.engine import build_optimizer, train_step
    from c3d_distill.train.objective import Objective, StudentNet

    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 16, 16, 16), torch.tensor([0, 2])
    results = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**12)):
        torch.manual_seed(1)
        model = create_model("c3d", 3, width=0.0625, frames=16, size=16, dropout=0.0)
        opt = build_optimizer(model.parameters(), "sgd", 0.1, 0.9, 0.0)
        for _ in range(2):
            train_step(StudentNet(model), Objective("ce"), opt, x, y, device=torch.device("cpu"), amp="fp16",
                       clip_grad=0.5, scaler=scaler)
        results.append(model.state_dict())
    plain, scaled = results
    for k in plain:
        torch.testing.assert_close(scaled[k], plain[k], rtol=1e-4, atol=1e-6)


def test_cpu_run_with_amp_sync_bn_records_them_and_writes_tensorboard(synth, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(train_args(synth, out, "--amp", "fp16", "--sync-bn", epochs=2)) == 0
    err = capsys.readouterr().err
    assert err.count("--amp fp16: ignored on the cpu") == 1, err
    assert err.count("--sync-bn: does nothing without data-parallel ranks") == 1, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["amp"] == "fp16" and cfg["sync_bn"] is True and cfg["tensorboard"] is True
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/time", "test/top1", "test/loss", "final/top1"} <= tags, tags
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_loss = [r["loss"] for r in rows if r["split"] == "train"]
    events = acc.Scalars("train/loss")
    assert [e.step for e in events] == [1, 2]
    assert [e.value for e in events] == pytest.approx(train_loss, rel=1e-6)


def test_no_tensorboard_and_tensorboard_missing(synth, tmp_path, monkeypatch, capsys):
    out = tmp_path / "off"
    assert main(train_args(synth, out, "--no-tensorboard")) == 0
    assert not (out / "tensorboard").exists()
    assert "TensorBoard" not in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    out = tmp_path / "missing"
    assert main(train_args(synth, out, epochs=2)) == 0
    err = capsys.readouterr().err
    assert err.count("WARNING: TensorBoard: not written") == 1, err
    assert (out / "eval.json").exists() and not (out / "tensorboard").exists()


def test_sync_bn_conversion():
    from c3d_distill import distributed
    from c3d_distill.models import create_model

    model = create_model("sp_bn", 3, width=0.0625, frames=16, size=16)
    before = model.state_dict()
    params = list(model.parameters())
    assert distributed.sync_batchnorm(model, torch.device("cpu"), 1) is model  # one process: unchanged
    with pytest.raises(ValueError, match="--sync-bn: PyTorch's SyncBatchNorm needs CUDA devices"):
        distributed.sync_batchnorm(model, torch.device("cpu"), 2)
    conv = distributed.sync_batchnorm(model, torch.device("cuda", 0), 2)  # conversion itself is device-free
    kinds = {type(m) for m in conv.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm3d not in kinds
    assert conv.state_dict().keys() == before.keys()  # checkpoints keep their keys
    assert [id(p) for p in conv.parameters()] == [id(p) for p in params]  # the optimiser's parameters
    plain = create_model("c3d", 3, width=0.0625, frames=16, size=16)
    assert distributed.sync_batchnorm(plain, torch.device("cuda", 0), 2) is plain  # no BatchNorm: notice


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sync_bn_worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from c3d_distill import distributed
    from c3d_distill.train.run import run

    found = {}
    try:  # why the run refuses: torch's SyncBatchNorm itself refuses CPU tensors under gloo
        distributed.setup("cpu")
        bn = torch.nn.SyncBatchNorm(3).train()
        bn(torch.randn(2, 3, 4, 4, 4))
        found["torch"] = "ran"
    except ValueError as exc:
        found["torch"] = str(exc)
    cfg = RunConfig(mode="train", model="sp_bn", data=f"synth:{root}", out=str(Path(out) / "run"), width=0.0625,
                    size=16, batch_size=4, epochs=1, eval_clips=1, final_eval_clips=1, progress=False,
                    sync_bn=True)
    try:
        run(cfg)
        found["run"] = "ran"
    except ValueError as exc:
        found["run"] = str(exc)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(found))
    distributed.cleanup()


def test_sync_bn_under_two_gloo_ranks_is_refused_clearly(tiny_synth_root, tmp_path):
    mp.spawn(_sync_bn_worker, args=(2, _free_port(), str(tiny_synth_root), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        found = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert "SyncBatchNorm expected input tensor to be on GPU" in found["torch"], found
        assert found["run"].startswith("--sync-bn: PyTorch's SyncBatchNorm needs CUDA devices"), found
    assert not (tmp_path / "run").exists()  # refused before anything was written


# --------------------------------------------------------------------------------------------------
# the progress bar


def test_progress_bar_shows_the_running_mean_loss_and_lr(monkeypatch):
    import c3d_distill.train.engine as engine
    from c3d_distill.models import create_model
    from c3d_distill.progress import progress_bar
    from c3d_distill.train.objective import Objective, StudentNet

    bars = []

    def recorded(iterable, total, desc, enabled, **kw):
        bar = progress_bar(iterable, total, desc, enabled, file=io.StringIO(), **kw)
        bars.append(bar)
        return bar

    monkeypatch.setattr(engine, "progress_bar", recorded)
    torch.manual_seed(0)
    batches = [(torch.randn(2, 3, 16, 16, 16), torch.tensor([0, 1])) for _ in range(3)]
    model = create_model("c3d", 3, width=0.0625, frames=16, size=16, dropout=0.0)
    opt = engine.build_optimizer(model.parameters(), "sgd", 0.01, 0.9, 0.0)
    res, _ = engine.train_one_epoch(StudentNet(model), batches, Objective("ce"), opt, device=torch.device("cpu"),
                                    lr_fn=lambda s: 0.01 * (s + 1), progress=True)
    post = dict(kv.split("=") for kv in bars[0].postfix.split(", "))
    assert float(post["loss"]) == pytest.approx(res["loss"], rel=1e-3)  # after the last step: the epoch's mean
    assert float(post["lr"]) == pytest.approx(0.03)


def test_a_resumed_run_continues_its_tensorboard_curves(synth, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main([*train_args(synth, out, epochs=3), "--stop-after", "1"]) == 0
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out / "tensorboard")) as w:  # as if killed after logging epoch 2, before its checkpoint
        w.add_scalar("test/loss", 999.0, 2)
    assert main([*train_args(synth, out, epochs=3), "--resume"]) == 0
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = acc.Scalars("test/loss")
    assert [e.step for e in events] == [1, 2, 3]  # one curve, no epoch twice
    assert [e.value for e in events] == pytest.approx([r["loss"] for r in rows if r["split"] == "test"], rel=1e-6)
