"""A run that is not learning says so once (after warm-up + 3 epochs); a learning run does not."""

from __future__ import annotations

import logging
import math

import pytest
from c3d_distill.runs.config import RunConfig
from c3d_distill.train.run import run
from c3d_distill.train.stall import check_epoch


def test_check_epoch_fires_once_and_names_the_flags():
    cfg = RunConfig(mode="train", optimizer="sgd", lr=0.01, dropout=0.5, warmup_epochs=0.0)
    flat = {"ce": math.log(5) * 1.01, "loss": math.log(5) * 1.01, "top1": 0.2}
    msg = check_epoch(cfg, 3, flat, 5)
    assert msg and "ln(5)" in msg and "--optimizer adamw" in msg and "--dropout 0" in msg and "--clip-grad" in msg
    assert [e for e in range(1, 20) if check_epoch(cfg, e, flat, 5)] == [3]  # one epoch only: said once
    cfg.warmup_epochs = 1.5
    assert [e for e in range(1, 20) if check_epoch(cfg, e, flat, 5)] == [5]  # after the warm-up
    assert check_epoch(cfg, 5, {**flat, "ce": math.log(5) * 0.9}, 5) is None  # the loss moved
    assert check_epoch(cfg, 5, {**flat, "top1": 0.5}, 5) is None  # it fits the training clips
    assert check_epoch(cfg, 5, {**flat, "ce": float("nan")}, 5) is None  # NaN stops the run elsewhere
    assert check_epoch(RunConfig(mode="distill", loss="feature", warmup_epochs=1.5), 5, flat, 5) is None


def _tiny(root, out, model="c3d", **kw) -> RunConfig:
    return RunConfig(mode="train", model=model, data=f"synth:{root}", out=str(out), width=0.0625, size=16,
                     batch_size=4, eval_clips=1, final_eval_clips=1, progress=False, warmup_epochs=0.0,
                     epochs=3, dropout=0.0, seed=3, **kw)


def _stall_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "not learning" in r.getMessage()]


@pytest.mark.filterwarnings("ignore")
def test_a_run_that_is_not_learning_says_so(tiny_synth_root, tmp_path, caplog):
    # Weight decay 0.5 at lr 1 halves every weight each step: the network decays to the constant (uniform)
    # prediction, loss ln 3, the textbook run that learns nothing.
    cfg = _tiny(tiny_synth_root, tmp_path / "flat", optimizer="sgd", lr=1.0, momentum=0.0, weight_decay=0.5)
    with caplog.at_level(logging.WARNING, logger="c3d_distill"):
        run(cfg)
    msgs = _stall_warnings(caplog)
    assert len(msgs) == 1, msgs
    assert "ln(3)" in msgs[0] and "--lr" in msgs[0]


def test_a_learning_run_does_not(tiny_synth_root, tmp_path, caplog):
    # BatchNorm (sp_bn) and fixed clips (4 per video, centre crops): it fits the training clips in 3 epochs.
    cfg = _tiny(tiny_synth_root, tmp_path / "learns", model="sp_bn", optimizer="adamw", lr=3e-3,
                weight_decay=1e-4, clip_grad=5.0, sampler="uniform", clips_per_video=4, crop_mode="center",
                flip=False)
    with caplog.at_level(logging.WARNING, logger="c3d_distill"):
        run(cfg)
    assert _stall_warnings(caplog) == []
