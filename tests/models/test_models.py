"""The model zoo: shapes, exact parameter counts, the fold, checkpoint loading, MAC counts, the CLI."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn
from c3d_distill.models import (
    STAGE_NAMES,
    count_macs,
    count_params,
    create_model,
    fold,
    layer_macs,
    list_models,
    load_c3d_weights,
    plan_stages,
    unfold,
)
from c3d_distill.models import counting as counting_mod

TINY = dict(width=1 / 16, size=32)  # channels 4…32, 32×32 frames: every model runs in milliseconds


def meta_model(name, num_classes=None, **kw):
    with torch.device("meta"):
        return create_model(name, num_classes, **kw)


# -- registry, forward, backward ----------------------------------------------------------------------
def test_registry_lists_the_zoo():
    names = list_models()
    for n in ("c3d", "sp", "sp_bn", "mc3", "mc4", "mc5", "mc1", "mc2"):
        assert n in names
    with pytest.raises(ValueError, match="unknown model 'mc6'"):
        create_model("mc6")
    with pytest.raises(ValueError, match="name: unknown model 'resnet'"):
        create_model("resnet")


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("fast", [False, True])
def test_forward_backward_tiny(name, fast):
    torch.manual_seed(0)
    m = create_model(name, 7, fast=fast, **TINY)
    x = torch.randn(2, 3, 16, 32, 32)
    logits = m(x)
    assert logits.shape == (2, 7)
    feats = m.features(x)
    assert feats.shape == (2, m.feature_dim)
    (logits.square().mean() + feats.mean()).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list_models())
def test_backbone_only_returns_features(name):
    m = create_model(name, **TINY).eval()
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        out = m(x)
    assert out.shape == (1, m.feature_dim)
    assert not hasattr(m, "fc6")
    with pytest.raises(RuntimeError, match="without a head"):
        m.head(out)


# -- exact sizes --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, params",
    [("c3d", 27_655_936), ("sp", 12_823_616), ("mc3", 89_887_488), ("mc4", 54_790_400), ("mc5", 27_656_448)],
)
def test_backbone_parameter_counts_are_exact(name, params):
    m = meta_model(name)
    assert count_params(m) == params
    assert count_params(m, "backbone") == params
    assert m.feature_dim == 8192
    head = meta_model(name, 101)
    assert count_params(head, "backbone") == params
    # fc6 8192→4096, fc7 4096→4096, fc8 4096→101, biases included
    assert count_params(head, "head") == 8192 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 101 + 101


def test_sp_bn_adds_only_batchnorm_parameters():
    bn = sum(2 * (c + c) for c in (64, 128, 256, 256, 512, 512, 512, 512))  # two BNs per stage, γ and β
    assert count_params(meta_model("sp_bn")) == 12_823_616 + bn


def test_stage_attributes_match_the_c3d_checkpoint_names():
    c3d = meta_model("c3d", 487)
    keys = list(c3d.state_dict())
    assert keys == [f"{s}.{leaf}" for s in (*STAGE_NAMES, "fc6", "fc7", "fc8") for leaf in ("weight", "bias")]
    sp = meta_model("sp")
    for s in STAGE_NAMES:
        assert isinstance(getattr(sp, s).spatial, nn.Conv3d)
        assert getattr(sp, s).spatial.kernel_size == (1, 3, 3)
        assert getattr(sp, s).temporal.kernel_size == (3, 1, 1)
    mc4 = meta_model("mc4")
    assert isinstance(mc4.conv3b, nn.Conv3d) and isinstance(mc4.conv4a, nn.Conv2d)
    assert (mc4.conv4a.in_channels, mc4.conv4a.out_channels) == (1024, 2048)
    assert (mc4.conv4b.in_channels, mc4.conv4b.out_channels) == (2048, 1024)
    assert (mc4.conv5a.in_channels, mc4.conv5b.out_channels) == (1024, 512)


# -- the formulas: width and frames --------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("frames", [16, 32])
@pytest.mark.parametrize("width", [1.0, 0.25])
def test_mc_channel_formulas(k, frames, width):
    plan = plan_stages("3d", k, width=width, frames=frames, size=112)
    base = {
        n: round(c * width)
        for n, c in (
            ("conv1", 64),
            ("conv2", 128),
            ("conv3a", 256),
            ("conv3b", 256),
            ("conv4a", 512),
            ("conv4b", 512),
            ("conv5a", 512),
            ("conv5b", 512),
        )
    }
    t, c_prev = frames, 3
    for st in plan:
        c = base[st.name]
        if st.group >= k:
            assert st.kind == "2d"
            halves = st.name in ("conv2", "conv3b", "conv4b", "conv5b")  # the pool after it halves time
            assert st.cin == c_prev * t
            assert st.cout == c * (t // 2 if halves else t)
            t = t // 2 if halves else t
        else:
            assert (st.kind, st.cin, st.cout) == ("3d", c_prev, c)
            t = t // 2 if st.name in ("conv2", "conv3b", "conv4b") else t
        c_prev = c
    # pool5: 7×7 → 4×4 (padding 1); time 16 → 1, 32 → 2
    assert plan[-1].hw_out == (4, 4)
    assert plan[-1].channels * plan[-1].t_after_pool * 16 == base["conv5b"] * (frames // 16) * 16


@pytest.mark.parametrize("name", ["c3d", "sp", "mc3", "mc5"])
def test_frames_32_doubles_the_features(name):
    m = create_model(name, 5, width=1 / 16, frames=32, size=32).eval()
    assert m.feature_dim == 2 * create_model(name, width=1 / 16, size=32).feature_dim
    with torch.no_grad():
        assert m(torch.randn(1, 3, 32, 32, 32)).shape == (1, 5)


def test_width_scales_every_channel_count():
    full, half = meta_model("c3d", 10), meta_model("c3d", 10, width=0.5)
    for s in STAGE_NAMES:
        assert getattr(half, s).out_channels * 2 == getattr(full, s).out_channels
    assert half.fc6.out_features == 2048 and half.feature_dim == 4096


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(frames=8), "frames: expected a positive multiple of 16"),
        (dict(frames=24), "frames"),
        (dict(width=0), "width"),
        (dict(size=8), "size"),
        (dict(size="big"), "size"),
        (dict(num_classes=0), "num_classes"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("mc4", **kwargs)


def test_wrong_input_shape_is_a_clear_error():
    m = create_model("c3d", **TINY)
    with pytest.raises(ValueError, match=r"x: c3d expects \(N, 3, 16, 32, 32\)"):
        m(torch.randn(1, 3, 8, 32, 32))


# -- the fold ------------------------------------------------------------------------------------------
def test_fold_is_a_view_with_channel_c_times_t_plus_t():
    x = torch.randn(2, 3, 4, 5, 6)
    y = fold(x)
    assert y.shape == (2, 12, 5, 6)
    assert y.data_ptr() == x.data_ptr() and y._base is x
    for c in range(3):
        for t in range(4):
            assert torch.equal(y[:, c * 4 + t], x[:, c, t])
    assert torch.equal(unfold(y, 4), x)
    nc = x.transpose(3, 4)  # not contiguous: still right, as a copy
    assert torch.equal(fold(nc)[:, 5], nc[:, 1, 1])
    with pytest.raises(ValueError, match="fold: expected a 5-D tensor"):
        fold(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="does not divide"):
        unfold(torch.zeros(1, 10, 2, 2), 4)


@pytest.mark.parametrize("fast", [False, True])
def test_mc_fold_module_is_a_view_inside_the_model(fast):
    m = create_model("mc3", **TINY, fast=fast).eval()
    seen = {}
    m.fold.register_forward_hook(lambda mod, inp, out: seen.update(inp=inp[0], out=out))
    with torch.no_grad():
        m(torch.randn(1, 3, 16, 32, 32))
    assert seen["out"].data_ptr() == seen["inp"].data_ptr()


@pytest.mark.parametrize("fast", [False, True])
def test_mc1_accepts_folded_input(fast):
    m = create_model("mc1", 3, **TINY, fast=fast).eval()
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), m(fold(x)))
    with pytest.raises(ValueError, match="or folded"):
        m(torch.randn(2, 47, 32, 32))


# -- forward_stages ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["c3d", "sp_bn", "mc2", "mc4"])
def test_forward_stages(name):
    m = create_model(name, **TINY).eval()
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        stages = m.forward_stages(x)
        feats = m.features(x)
    assert list(stages) == list(STAGE_NAMES)
    for st in m.plan:
        out = stages[st.name]
        assert (out >= 0).all(), "outputs are taken after the ReLU"
        if st.kind == "2d":
            assert out.shape == (2, st.cout, *st.hw)
        else:
            assert out.shape == (2, st.cout, st.t_out, *st.hw)
    assert torch.allclose(m.pool5(stages["conv5b"]).flatten(1), feats)


# -- checkpoints ---------------------------------------------------------------------------------------
def reference_sequential(width: float, hidden: int, classes: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The c3d-pretrained.pth layout, built here from plain layers and nothing from c3d_distill."""

    def c(n):
        return max(1, round(n * width))

    conv = lambda i, o: nn.Conv3d(i, o, kernel_size=3, padding=1)  # noqa: E731
    pool = lambda k, p=(0, 0, 0): nn.MaxPool3d(k, k, p)  # noqa: E731
    features = nn.Sequential(
        conv(3, c(64)), nn.ReLU(), pool((1, 2, 2)),  # 0 1 2
        conv(c(64), c(128)), nn.ReLU(), pool(2),  # 3 4 5
        conv(c(128), c(256)), nn.ReLU(), conv(c(256), c(256)), nn.ReLU(), pool(2),  # 6 … 10
        conv(c(256), c(512)), nn.ReLU(), conv(c(512), c(512)), nn.ReLU(), pool(2),  # 11 … 15
        conv(c(512), c(512)), nn.ReLU(), conv(c(512), c(512)), nn.ReLU(), pool(2, (0, 1, 1)),  # 16 … 20
    )  # fmt: skip
    feat_dim = c(512) * 2 * 2  # 16×32×32 input: T 1, 2×2 after pool5
    classifier = nn.Sequential(
        nn.Linear(feat_dim, hidden), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(hidden, classes),
    )  # fmt: skip
    for mod in [*features, *classifier]:
        if isinstance(mod, (nn.Conv3d, nn.Linear)):
            nn.init.normal_(mod.weight, std=math.sqrt(2 / mod.weight[0].numel()))
            nn.init.normal_(mod.bias, std=0.1)
    return features, classifier


def reference_forward(features, classifier, x):
    return classifier(features(x).flatten(1))


def sequential_state_dict(features, classifier):
    sd = {f"features.{k}": v for k, v in features.state_dict().items()}
    sd.update({f"classifier.{k}": v for k, v in classifier.state_dict().items()})
    return sd


def named_state_dict(features, classifier):
    names = dict(zip((0, 3, 6, 8, 11, 13, 16, 18), STAGE_NAMES, strict=True))
    sd = {}
    for k, v in features.state_dict().items():
        idx, leaf = k.split(".")
        sd[f"{names[int(idx)]}.{leaf}"] = v
    for k, v in classifier.state_dict().items():
        idx, leaf = k.split(".")
        sd[f"{ {0: 'fc6', 3: 'fc7', 6: 'fc8'}[int(idx)] }.{leaf}"] = v
    return sd


@pytest.mark.parametrize("layout", ["named", "sequential"])
@pytest.mark.parametrize("fast", [False, True])
def test_both_checkpoint_layouts_load_and_match_a_plain_reference(tmp_path, layout, fast):
    torch.manual_seed(1)
    width = 1 / 8
    features, classifier = reference_sequential(width, hidden=512, classes=11)
    sd = (named_state_dict if layout == "named" else sequential_state_dict)(features, classifier)
    path = tmp_path / "c3d.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    model = create_model("c3d", 11, width=width, size=32, fast=fast)
    report = load_c3d_weights(model, path)
    assert sorted(report.loaded) == sorted(model.state_dict()) and not report.missing and not report.skipped
    model.eval(), features.eval(), classifier.eval()
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        want = reference_forward(features, classifier, x)
        got = model(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_full_width_checkpoint_loads_without_head():
    torch.manual_seed(2)
    features, classifier = reference_sequential(1.0, hidden=64, classes=5)
    model = create_model("c3d", size=32).eval()
    report = load_c3d_weights(model, named_state_dict(features, classifier))
    assert len(report.loaded) == 16
    assert set(report.skipped) == {
        f"{n}.{leaf}" for n in ("fc6", "fc7", "fc8") for leaf in ("weight", "bias")
    }
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), features(x).flatten(1), rtol=1e-4, atol=1e-4)


def test_fc8_with_another_class_count_is_reported():
    features, classifier = reference_sequential(1 / 8, hidden=512, classes=487)
    model = create_model("c3d", 101, width=1 / 8, size=32)
    before = model.fc8.weight.clone()
    with pytest.warns(UserWarning, match="fc8 not loaded.*class count differs"):
        report = load_c3d_weights(model, sequential_state_dict(features, classifier))
    assert set(report.skipped) == {"fc8.weight", "fc8.bias"}
    assert "487" in report.skipped["fc8.weight"] and "fc8.weight" in report.missing
    assert torch.equal(model.fc8.weight, before)
    assert torch.equal(model.fc7.weight, classifier[3].weight)


def test_missing_fc8_is_reported():
    features, classifier = reference_sequential(1 / 8, hidden=512, classes=7)
    sd = {
        k: v
        for k, v in sequential_state_dict(features, classifier).items()
        if not k.startswith("classifier.6")
    }
    model = create_model("c3d", 7, width=1 / 8, size=32)
    with pytest.warns(UserWarning, match="not in checkpoint"):
        report = load_c3d_weights(model, sd)
    assert report.missing == ["fc8.weight", "fc8.bias"]


def test_shape_mismatch_lists_the_keys():
    features, classifier = reference_sequential(1 / 8, hidden=512, classes=7)
    model = create_model("c3d", 7, width=1 / 4, size=32)
    with pytest.raises(
        ValueError, match=r"shape mismatch .*conv1\.weight \(checkpoint \(8, 3, 3, 3, 3\), model "
    ):
        load_c3d_weights(model, named_state_dict(features, classifier))


def test_unknown_layout_and_bad_inputs(tmp_path):
    model = create_model("c3d", 7, width=1 / 8, size=32)
    with pytest.raises(ValueError, match="unknown C3D checkpoint layout.*layer1.0.conv.weight"):
        load_c3d_weights(model, {"layer1.0.conv.weight": torch.zeros(1), "conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="lacks conv weights: .*conv5b.bias"):
        load_c3d_weights(model, {"conv1.weight": torch.zeros(8, 3, 3, 3, 3)})
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_c3d_weights(model, tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: not a loadable PyTorch checkpoint"):
        load_c3d_weights(model, junk)
    with pytest.raises(ValueError, match="students get the teacher's weights"):
        load_c3d_weights(create_model("mc5", **TINY), {})


# -- MAC counts ----------------------------------------------------------------------------------------
def test_c3d_macs_match_a_hand_count():
    # out channels · in channels · 27 · output voxels, stage by stage (T, H, W after the previous pools)
    hand = (
        64 * 3 * 27 * 16 * 112 * 112
        + 128 * 64 * 27 * 16 * 56 * 56
        + (256 * 128 + 256 * 256) * 27 * 8 * 28 * 28
        + (512 * 256 + 512 * 512) * 27 * 4 * 14 * 14
        + (512 * 512 * 2) * 27 * 2 * 7 * 7
    )
    m = meta_model("c3d")
    assert count_macs(m, (1, 3, 16, 112, 112)) == hand
    assert count_macs(m, (3, 16, 112, 112)) == hand
    assert count_macs(m, (4, 3, 16, 112, 112)) == 4 * hand
    assert abs(hand / 1e9 - 38.5) < 0.01
    head = meta_model("c3d", 101)
    assert count_macs(head, (1, 3, 16, 112, 112)) == hand + 8192 * 4096 + 4096 * 4096 + 4096 * 101
    with pytest.raises(ValueError, match="input_shape: c3d is built for"):
        count_macs(m, (1, 3, 8, 112, 112))


@pytest.mark.parametrize("name", list_models())
def test_analytic_macs_agree_with_forward_hooks(name):
    m = create_model(name, 4, **TINY, fast=False)
    analytic = layer_macs(m, (2, 3, 16, 32, 32))
    hooked = counting_mod._hooked_macs(m, (2, 3, 16, 32, 32))
    assert [(r["layer"], r["macs"]) for r in analytic] == [(r["layer"], r["macs"]) for r in hooked]
    assert [tuple(r["out_shape"]) for r in analytic] == [tuple(r["out_shape"]) for r in hooked]


def test_student_mac_ratios():
    base = count_macs(meta_model("c3d"), (1, 3, 16, 112, 112))
    assert count_macs(meta_model("sp"), (1, 3, 16, 112, 112)) / base == pytest.approx(0.5616, abs=1e-3)
    assert count_macs(meta_model("mc4"), (1, 3, 16, 112, 112)) / base == pytest.approx(0.958, abs=1e-3)


# -- the command ---------------------------------------------------------------------------------------
def test_models_command_prints_the_table(capsys):
    import argparse

    from c3d_distill.models import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["models"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| c3d | 27,655,936 | 50,753,637 | 38.55 | 8192 | (N, 101) |" in out
    assert "| mc4 | 54,790,400 |" in out and "| sp | 12,823,616 |" in out
    args = parser.parse_args(["models", "--json", "--num-classes", "10", "--width", "0.5"])
    assert args.func(args) == 0
    import json

    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["c3d"]["output_shape"] == [1, 10] and rows["c3d"]["feature_dim"] == 4096


def test_no_warning_on_clean_load():
    features, classifier = reference_sequential(1 / 8, hidden=512, classes=7)
    model = create_model("c3d", 7, width=1 / 8, size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_c3d_weights(model, sequential_state_dict(features, classifier))
