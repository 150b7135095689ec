"""Model sources and presets: public C3D state dicts of both layouts and runs open through one loader, and
each preset's clips are the pixels its port feeds its network."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from c3d_distill import load_model
from c3d_distill.clips import read_clips
from c3d_distill.models import PRESETS, create_model, get_preset
from c3d_distill.models.presets import custom_preset
from c3d_distill.models.weights import SEQUENTIAL_TO_STAGE
from c3d_distill.runs.source import file_sha256, open_source


def public_files(tmp_path, *, classes=487, width=0.0625, size=112):
    """The same weights in the c3d.pickle layout and the c3d-pretrained.pth layout."""
    torch.manual_seed(0)
    model = create_model("c3d", classes, width=width, size=size, fast=False)
    sd = model.state_dict()
    torch.save(sd, tmp_path / "c3d.pickle")
    to_seq = {v: k for k, v in SEQUENTIAL_TO_STAGE.items()}
    seq = {f"{to_seq[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in sd.items()}
    torch.save({"state_dict": seq}, tmp_path / "c3d-pretrained.pth")
    return model, tmp_path / "c3d.pickle", tmp_path / "c3d-pretrained.pth"


def test_each_layout_gets_its_ports_preset(tmp_path):
    ref, pickle_file, pth_file = public_files(tmp_path)
    m1, c1 = load_model(pickle_file)
    m2, c2 = load_model(pth_file)
    assert not m1.training and not m2.training
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), ref.state_dict().values(), strict=True))
    assert c1["size"] == (112, 200) and c1["crop"] == 112 and c1["channels"] == "RGB"
    assert c1["mean"] == (0.0, 0.0, 0.0) and np.allclose(c1["std"], 1 / 255)
    assert c2["size"] == (128, 171) and c2["channels"] == "BGR"
    assert np.allclose(np.array(c2["mean"]) * 255, (90, 98, 102))
    assert c1["frames"] == c2["frames"] == 16 and c1["stride"] == c2["stride"] == 1
    # another preset when asked
    _, c3 = load_model(pickle_file, preprocess="mmaction2")
    assert c3["size"] == 128 and np.allclose(np.array(c3["mean"]) * 255, (104, 117, 128))
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        load_model(pickle_file, preprocess="nope")


def test_preset_pixels_are_the_ports(h264_mp4):
    """c3d-pickle: raw 0-255 RGB of a 112x200 resize's centre; c3d-pretrained: BGR minus (90, 98, 102) of
    a 128x171 resize's [8:120, 30:142] crop — computed here from the plain uint8 frames."""
    idx = list(range(16))
    for name, (h, w), (top, left) in (("c3d-pickle", (112, 200), (0, 44)), ("c3d-pretrained", (128, 171), (8, 30))):
        p = get_preset(name)
        full = read_clips([(h264_mp4, idx)], size=(h, w), crop=None, layout="NTHWC")[0].astype(np.float32)
        want = full[:, top:top + 112, left:left + 112, :]
        if p.channels == "BGR":
            want = want[..., ::-1]
        want = want - np.array(p.mean, np.float32)
        got = read_clips([(h264_mp4, idx)], layout="NTHWC", **p.read_kwargs())[0]
        assert got.shape == (16, 112, 112, 3)
        np.testing.assert_allclose(got, want, atol=2e-3)


def test_custom_preset_overrides_and_names_itself():
    p = custom_preset(PRESETS["c3d-pretrained"], mean=(1, 2, 3), resize=[140])
    assert p.name == "c3d-pretrained+mean+resize" and p.mean == (1.0, 2.0, 3.0) and p.resize == 140
    assert p.channels == "BGR" and p.pixel_range == 255
    with pytest.raises(ValueError, match="--std: every value must be positive"):
        custom_preset(PRESETS["kinetics"], std=(1, 0, 1))
    with pytest.raises(ValueError, match="--mean: expected 3 values"):
        custom_preset(PRESETS["kinetics"], mean=(1, 2))
    with pytest.raises(ValueError, match="smaller than the 112 crop"):
        custom_preset(PRESETS["kinetics"], resize=[100])
    # the resize scales with another crop
    assert PRESETS["c3d-pickle"].for_crop(56).resize == (56, 100)


def test_feature_source_when_classes_differ(tmp_path):
    _, pickle_file, _ = public_files(tmp_path)
    src = open_source(pickle_file, num_classes=5)
    assert src.head_dropped and src.meta["num_classes"] is None and src.model.num_classes is None
    assert src.sha256() == hashlib.sha256(pickle_file.read_bytes()).hexdigest() == file_sha256(pickle_file)


def test_bad_sources_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_model(tmp_path / "nothing.pt")
    bad = tmp_path / "text.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="text.pt"):
        load_model(bad)
    torch.save({"conv1.weight": torch.zeros(3), "weird": torch.zeros(1)}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="odd.pt.*unknown C3D checkpoint layout"):
        load_model(tmp_path / "odd.pt")
