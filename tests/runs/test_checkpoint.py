"""Checkpoints: atomic writes, weights_only loading, clear errors for bad files and other models."""

from __future__ import annotations

import os
import pickle
import zipfile

import pytest
import torch
from c3d_distill.models import create_model
from c3d_distill.runs.checkpoint import (
    FORMAT,
    CheckpointError,
    check_compatible,
    load_checkpoint,
    load_weights,
    model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from c3d_distill.runs.model import load_run_model

TINY = dict(width=0.0625, frames=16, size=16)


def run_ckpt(name="c3d", width=0.0625, num_classes=5):
    model = create_model(name, num_classes, width=width, frames=16, size=16)
    meta = {
        "name": name,
        "num_classes": num_classes,
        "width": width,
        "frames": 16,
        "size": 16,
        "dropout": 0.5,
    }
    return model, {
        "format": FORMAT,
        "model": model.state_dict(),
        "model_meta": meta,
        "epoch": 1,
        "optimizer": {},
        "scheduler": {"step": 3},
        "config": {},
        "metrics": [],
        "rng": rng_state(),
    }


class Evil:
    """Unpickling this runs code (writes a marker file) — unless the loader refuses it first."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    model, state = run_ckpt()
    path = save_checkpoint(state, tmp_path / "run" / "checkpoint.pt")
    assert path.exists() and sorted(os.listdir(path.parent)) == ["checkpoint.pt"]
    back = load_checkpoint(tmp_path / "run")  # a run folder means its checkpoint.pt
    assert back["scheduler"]["step"] == 3
    assert all(torch.equal(back["model"][k], v) for k, v in model.state_dict().items())


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    _, state = run_ckpt()
    path = save_checkpoint(state, tmp_path / "checkpoint.pt")
    before = path.read_bytes()

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("disk full, say")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({**state, "bad": Unsaveable()}, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_without_running_code(tmp_path, legacy):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    if legacy:
        path.write_bytes(pickle.dumps({"model": Evil(marker)}, protocol=2))
    else:
        torch.save({"model": {"w": torch.zeros(2)}, "x": Evil(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="weights_only") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_run_model(path)
    assert not marker.exists()


def test_truncated_and_garbage_files_give_clear_errors(tmp_path):
    _, state = run_ckpt()
    good = save_checkpoint(state, tmp_path / "good.pt")
    data = good.read_bytes()
    for name, blob, why in [
        ("half.pt", data[: len(data) // 2], "truncated or corrupt"),
        ("head.pt", data[:100], "truncated or corrupt"),
        ("empty.pt", b"", "an empty file, not a checkpoint"),
        ("text.pt", b"hello, not a checkpoint\n", "not a PyTorch checkpoint (it starts with b'hello, n', text"),
        ("json.pt", b'{"model": 1}', "not a PyTorch checkpoint (it starts with b'{\"model\"', text"),
        ("bytes.pt", bytes(range(7, 200)), "not a PyTorch checkpoint"),
    ]:
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(p)
        assert name in str(info.value) and why in str(info.value), str(info.value)
        assert "weights_only=False" not in str(info.value)  # torch's advice to run the file's code
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        load_checkpoint(tmp_path)  # a folder without checkpoint.pt
    assert zipfile.is_zipfile(good)


def test_checkpoint_of_another_model_or_width_is_rejected_by_name(tmp_path):
    _, state = run_ckpt("c3d", width=0.0625)
    p = save_checkpoint(state, tmp_path / "c3d.pt")
    with pytest.raises(CheckpointError, match=r"name: checkpoint has 'c3d', this run wants 'mc4'"):
        load_run_model(p, expected={"name": "mc4", "width": 0.0625})
    with pytest.raises(CheckpointError, match=r"width: checkpoint has 0.0625, this run wants 0.125"):
        check_compatible(state, {"name": "c3d", "width": 0.125})
    # Bare state dicts carry no meta: the weights themselves are checked key by key and shape by shape.
    sp = create_model("sp", 5, **TINY)
    with pytest.raises(CheckpointError, match="missing .* keys: conv1.spatial.weight"):
        load_weights(sp, model_state(state), source="c3d.pt")
    wide = create_model("c3d", 5, width=0.125, frames=16, size=16)
    with pytest.raises(
        CheckpointError, match=r"shape mismatch .* conv1.weight \(4, 3, 3, 3, 3\) vs \(8, 3, 3, 3, 3\)"
    ):
        load_weights(wide, model_state(state), source="c3d.pt")
    with pytest.raises(CheckpointError, match="not a c3d-distill run checkpoint"):
        load_run_model(save_checkpoint(model_state(state), tmp_path / "bare.pt"))


def test_load_run_model_round_trip(tmp_path):
    model, state = run_ckpt("sp_bn")
    p = save_checkpoint(state, tmp_path / "ckpt.pt")
    back, meta, _ = load_run_model(p)
    assert meta["name"] == "sp_bn"
    x = torch.randn(2, 3, 16, 16, 16)
    model.eval(), back.eval()
    assert torch.equal(model(x), back(x))


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    save_checkpoint({"rng": rng_state()}, tmp_path / "rng.pt")
    a = (torch.rand(3), random.random(), np.random.rand())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    b = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
