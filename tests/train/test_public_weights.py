"""The public Sports-1M C3D layouts from the command line: train --init, distill --teacher, eval and
transfer take them; a run records the file and its preprocessing; --preprocess/--mean/--std/--resize."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from c3d_distill.cli import main
from c3d_distill.models import create_model
from c3d_distill.models.weights import SEQUENTIAL_TO_STAGE
from c3d_distill.runs.checkpoint import load_checkpoint

SHAPE = ["--size", "16", "--batch-size", "4"]
FAST = ["--eval-clips", "1", "--final-eval-clips", "1", "--no-progress", "--epochs", "1"]


@pytest.fixture(scope="module")
def synth(tiny_synth_root) -> str:
    return f"synth:{tiny_synth_root}"


@pytest.fixture(scope="module")
def public(tmp_path_factory) -> dict[str, Path]:
    """A Sports-1M-shaped C3D (487 classes) at width 1/16 and a 16×16 input, in both public layouts."""
    root = tmp_path_factory.mktemp("public")
    torch.manual_seed(1)
    sd = create_model("c3d", 487, width=0.0625, size=16, fast=False).state_dict()
    torch.save(sd, root / "c3d.pickle")
    to_seq = {v: k for k, v in SEQUENTIAL_TO_STAGE.items()}
    torch.save({f"{to_seq[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in sd.items()}, root / "c3d-pretrained.pth")
    return {"pickle": root / "c3d.pickle", "pth": root / "c3d-pretrained.pth"}


def error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "c3d-distill: error: " in err and "Traceback" not in err, err
    return err


def test_train_init_from_a_public_file(synth, public, tmp_path, capsys):
    out = tmp_path / "ft"
    argv = ["train", "--model", "c3d", "--init", str(public["pth"]), "--data", synth, "--out", str(out),
            *SHAPE, *FAST, "--lr", "1e-9", "--optimizer", "sgd", "--dropout", "0"]
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "fc8 starts from random initialisation" in err and "487 classes" in err
    conf = json.loads((out / "config.json").read_text())
    assert conf["init"] == str(public["pth"].resolve())
    assert conf["init_sha256"] == hashlib.sha256(public["pth"].read_bytes()).hexdigest()
    # the c3d-pretrained.pth port's pipeline, scaled to the 16 crop
    assert conf["preprocess"]["name"] == "c3d-pretrained" and conf["preprocess"]["channels"] == "BGR"
    assert conf["channels"] == "BGR" and conf["resize"] == [18, 24]
    assert np.allclose(np.array(conf["mean"]) * 255, (90, 98, 102))
    assert conf["width"] == 0.0625
    # the convs are the file's (a 1e-9 step moves them by nothing), the classifier the data's
    got = load_checkpoint(out)["model"]
    src = torch.load(public["pickle"], weights_only=True)
    assert torch.allclose(got["conv3a.weight"], src["conv3a.weight"], atol=1e-6)
    assert torch.allclose(got["fc6.weight"], src["fc6.weight"], atol=1e-6)
    assert got["fc8.weight"].shape[0] == 3
    eval_json = json.loads((out / "eval.json").read_text())
    assert eval_json["init"] == str(public["pth"].resolve())


def test_train_init_explicit_preprocess_and_bad_inits(synth, public, tmp_path, capsys):
    out = tmp_path / "mm"
    argv = ["train", "--model", "c3d", "--init", str(public["pickle"]), "--data", synth, "--out", str(out),
            *SHAPE, *FAST, "--preprocess", "mmaction2", "--std", "2", "2", "2"]
    assert main(argv) == 0
    conf = json.loads((out / "config.json").read_text())
    assert conf["preprocess"]["name"] == "mmaction2+std" and conf["preprocess"]["std"] == [2.0, 2.0, 2.0]
    assert np.allclose(conf["std"], 2 / 255) and conf["resize"] == 18  # short side 128 for 112 → 18 for 16
    err = error(capsys, ["train", "--model", "mc4", "--init", str(public["pickle"]), "--data", synth,
                         "--out", str(tmp_path / "x"), *SHAPE, *FAST])
    assert "a public C3D state dict, not a 'mc4' network" in err and "distill --teacher" in err
    err = error(capsys, ["train", "--model", "c3d", "--init", str(tmp_path / "none.pt"), "--data", synth,
                         "--out", str(tmp_path / "y"), *SHAPE, *FAST])
    assert "--init" in err and "none.pt" in err and "no such file" in err
    err = error(capsys, ["train", "--model", "c3d", "--data", synth, "--out", str(tmp_path / "z"),
                         "--preprocess", "imagenet", *SHAPE, *FAST])
    assert "--preprocess: unknown preset 'imagenet'" in err and "c3d-pickle" in err


def test_train_init_from_a_run_fine_tunes_it(synth, public, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["train", "--model", "c3d", "--init", str(public["pickle"]), "--data", synth, "--out", str(first),
                 *SHAPE, *FAST]) == 0
    again = tmp_path / "again"
    assert main(["train", "--model", "c3d", "--init", str(first), "--data", synth, "--out", str(again),
                 *SHAPE, *FAST, "--lr", "1e-9", "--optimizer", "sgd", "--dropout", "0"]) == 0
    a, b = load_checkpoint(first)["model"], load_checkpoint(again)["model"]
    assert torch.allclose(a["fc8.weight"], b["fc8.weight"], atol=1e-6)  # same classes: the head is kept too
    conf = json.loads((again / "config.json").read_text())
    assert conf["preprocess"]["name"] == "c3d-pickle"  # the run's own pipeline, taken over
    assert conf["init_sha256"] == hashlib.sha256((first / "checkpoint.pt").read_bytes()).hexdigest()


def test_distill_from_a_public_feature_teacher(synth, public, tmp_path, capsys):
    out = tmp_path / "student"
    # 0-255 inputs: features in the hundreds, so a gentle step
    argv = ["distill", "--teacher", str(public["pickle"]), "--student", "mc4", "--data", synth, "--out", str(out),
            *SHAPE, *FAST, "--optimizer", "adamw", "--lr", "1e-4", "--clip-grad", "1"]
    err = error(capsys, [*argv, "--loss", "kd"])
    assert "--loss kd: kd needs the teacher's logits for these 3 classes" in err
    assert main(argv) == 0  # no --loss: the default for a teacher without a classifier is feature
    assert "a feature teacher" in capsys.readouterr().err
    conf = json.loads((out / "config.json").read_text())
    assert conf["loss"] == "feature"
    assert conf["preprocess"]["name"] == "c3d-pickle" and conf["resize"] == [16, 29]
    assert json.loads((out / "eval.json").read_text())["final_feature_err"] is not None
    # another preset for a public teacher when asked; a run teacher's clips are not changed
    out2 = tmp_path / "student2"
    assert main([*argv, "--out", str(out2), "--loss", "feature", "--preprocess", "caffe"]) == 0
    assert json.loads((out2 / "config.json").read_text())["channels"] == "BGR"
    err = error(capsys, ["distill", "--teacher", str(out2), "--student", "mc4", "--data", synth,
                         "--out", str(tmp_path / "s3"), *FAST, "--loss", "feature", "--preprocess", "caffe"])
    assert "--preprocess" in err and "is a run" in err


def test_eval_and_transfer_take_public_files(synth, public, tmp_path, capsys):
    # a public classifier for other classes cannot be scored on this data; the message says what to do
    sports1m = tmp_path / "sports1m.pickle"  # the public shape: 112x112 input, 487 classes
    torch.save(create_model("c3d", 487, width=0.0625, fast=False).state_dict(), sports1m)
    err = error(capsys, ["eval", str(sports1m), "--data", synth, "--no-progress"])
    assert "3 classes, but the model was trained for 487" in err
    ft = tmp_path / "ft"
    assert main(["train", "--model", "c3d", "--init", str(public["pickle"]), "--data", synth, "--out", str(ft),
                 *SHAPE, *FAST]) == 0
    capsys.readouterr()
    assert main(["eval", str(ft), "--data", synth, "--teacher", str(public["pth"]), "--no-progress",
                 "--json", str(tmp_path / "eval.json")]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["feature_err"] >= 0  # the public teacher's pool5 on the same clips
    out = tmp_path / "s.pt"
    assert main(["transfer", "--teacher", str(public["pth"]), "--student", "sp", "--out", str(out),
                 "--size", "16", "--probe-data", synth, "--probe-clips", "2", "--no-progress"]) == 0
    assert out.exists()
