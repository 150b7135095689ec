"""Weight transfer (c3d_distill.transfer): the kernel identities on plain torch layers, then the real models.

Everything runs at a tiny width on 32×32 clips: the identities do not depend on the size."""

from __future__ import annotations

import copy
import json
import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from c3d_distill.models import create_model, fold
from c3d_distill.models.layers import SPConv
from c3d_distill.transfer import (
    align,
    band_expand,
    band_pool,
    fold_hint_pairs,
    make_probe,
    rel_err,
    sp_compose,
    sp_matrix,
    sp_split,
    transfer,
)
from c3d_distill.transfer.core import PROGRESS_STEPS, STAGES
from hypothesis import given, settings
from hypothesis import strategies as st

TINY = dict(width=1 / 16, size=32)
MC = ["mc1", "mc2", "mc3", "mc4", "mc5"]
STUDENTS = [*MC, "sp", "sp_bn"]


def _conv3d(cin, cout, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(cout, cin, 3, 3, 3, generator=g) / math.sqrt(cin * 27)
    b = torch.randn(cout, generator=g) * 0.1
    return w, b


def _x(n, c, t, hw, seed):
    return torch.randn(n, c, t, hw, hw, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny convolutions: a second thread buys nothing and, on a busy machine, costs 20× in spinning.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(1)
    return create_model("c3d", 7, **TINY).eval()


# --------------------------------------------------------------------------------- kernels, plain layers
@settings(max_examples=25, deadline=None)
@given(cin=st.integers(1, 6), cout=st.integers(1, 6), frames=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_band_expand_is_the_3d_conv_folded(cin, cout, frames, seed):
    w3, b3 = _conv3d(cin, cout, seed)
    x = _x(2, cin, frames, 7, seed + 1)
    y3 = F.conv3d(x, w3, b3, padding=1)
    w2, b2 = band_expand(w3, b3, frames)
    assert w2.shape == (cout * frames, cin * frames, 3, 3)
    y2 = F.conv2d(fold(x), w2, b2, padding=1)
    assert rel_err(y2, fold(y3)) < 1e-5


def test_band_expand_layout_by_hand():
    # W2[o·T+t', i·T+t] = W3[o, i, t−t'+1] for |t−t'| ≤ 1, else 0.
    w3, b3 = _conv3d(2, 3, 0)
    T = 4
    w2, b2 = band_expand(w3, b3, T)
    for o in range(3):
        assert torch.equal(b2[o * T : (o + 1) * T], b3[o].repeat(T))
        for i in range(2):
            for tp in range(T):
                for t in range(T):
                    got = w2[o * T + tp, i * T + t]
                    if abs(t - tp) <= 1:
                        assert torch.equal(got, w3[o, i, t - tp + 1])
                    else:
                        assert not got.any()


@pytest.mark.parametrize("frames", [2, 3, 8, 9])
def test_band_pool_is_conv_then_temporal_average_pool(frames):
    w3, b3 = _conv3d(4, 5, frames)
    x = _x(2, 4, frames, 6, 7)
    w2, b2 = band_expand(w3, b3, frames)
    w, b = band_pool(w2, b2, frames)
    assert w.shape == (5 * (frames // 2), 4 * frames, 3, 3)
    ref = F.avg_pool3d(F.conv3d(x, w3, b3, padding=1), (2, 1, 1))  # average pooling before the ReLU: exact
    assert rel_err(F.conv2d(fold(x), w, b, padding=1), fold(ref)) < 1e-5


def test_band_pool_under_max_pooling_is_an_approximation_from_below():
    # The teacher max-pools after its ReLU. relu(mean) ≤ max(relu): never above, and not equal.
    w3, b3 = _conv3d(4, 5, 3)
    x = _x(2, 4, 8, 6, 4)
    w, b = band_pool(*band_expand(w3, b3, 8), 8)
    approx = F.relu(F.conv2d(fold(x), w, b, padding=1))
    exact = fold(F.max_pool3d(F.relu(F.conv3d(x, w3, b3, padding=1)), (2, 1, 1)))
    assert (approx <= exact + 1e-6).all()
    assert rel_err(approx, exact) > 0.05


def test_sp_matrix_puts_time_with_the_output_channel():
    w3, _ = _conv3d(2, 3, 5)
    m = sp_matrix(w3)
    assert m.shape == (9, 18)
    assert torch.equal(m[1 * 3 + 2, 1 * 9 + 4], w3[1, 1, 2, 1, 1])  # row o·3+kt, column i·9+ky·3+kx
    # The naive reshape is a different matrix (it pairs the rows with the wrong axes).
    assert not torch.equal(m, w3.reshape(9, 18))


def _sp_linear(x, sp):
    z = F.conv3d(x, sp.spatial, sp.spatial_bias, padding=(0, 1, 1))
    return F.conv3d(z, sp.temporal, sp.temporal_bias, padding=(1, 0, 0))


@pytest.mark.parametrize("cout", [27, 64])
def test_sp_split_of_conv1_is_exact(cout):
    # 3 input channels: the matrix is (3·Cout) × 27, rank ≤ 27 ≤ Cout. Linear stack, borders included.
    w3, b3 = _conv3d(3, cout, cout)
    sp = sp_split(w3, b3)
    assert sp.rank == 27
    assert rel_err(sp_compose(sp.spatial, sp.temporal), w3) < 1e-5
    x = _x(2, 3, 6, 8, 1)
    assert rel_err(_sp_linear(x, sp), F.conv3d(x, w3, b3, padding=1)) < 1e-5


def test_sp_split_error_is_the_discarded_singular_values():
    # Cout < rank: the best rank-Cout approximation (Eckart–Young), error = ‖discarded σ‖ / ‖σ‖.
    w3, b3 = _conv3d(8, 16, 2)
    sp = sp_split(w3, b3)
    s = sp.singular_values.double()
    expected = (s[16:].norm() / s.norm()).item()
    assert sp.rank == 16 and expected > 0.1
    assert rel_err(sp_compose(sp.spatial, sp.temporal), w3) == pytest.approx(expected, rel=1e-4)


def test_signed_pairs_carry_conv1_exactly_through_the_relu():
    # conv1 at full width: 27 components, 64 channels ≥ 2·27, so ±pairs pass the ReLU untouched — in the real
    # SPConv module. The plain split does not survive the ReLU.
    w3, b3 = _conv3d(3, 64, 9)
    x = _x(2, 3, 6, 8, 3)
    ref = F.relu(F.conv3d(x, w3, b3, padding=1))
    m = SPConv(3, 64)
    errs = {}
    for pairs in (False, True):
        sp = sp_split(w3, b3, signed_pairs=pairs)
        with torch.no_grad():
            m.spatial.weight.copy_(sp.spatial)
            m.spatial.bias.copy_(sp.spatial_bias)
            m.temporal.weight.copy_(sp.temporal)
            m.temporal.bias.copy_(sp.temporal_bias)
            errs[pairs] = rel_err(m(x), ref)
    assert errs[True] < 1e-5
    assert errs[False] > 0.1
    # the report's effective kernel of the pairs is the 3D kernel itself
    assert rel_err(sp_split(w3, b3, signed_pairs=True).effective(), w3) < 1e-5


def test_kernel_errors_name_the_problem():
    with pytest.raises(ValueError, match="w3"):
        band_expand(torch.zeros(2, 2, 3, 3), None, 4)
    with pytest.raises(ValueError, match="same"):
        band_expand(torch.zeros(2, 2, 3, 3, 3), None, 4, padding=0)
    with pytest.raises(ValueError, match="frames"):
        band_pool(torch.zeros(6, 4, 3, 3), None, 4)


# ---------------------------------------------------------------------------------------- real models
def _teacher_io(teacher, x):
    """Each teacher stage's input and its pre-activation output (the conv module's own output)."""
    io, hooks = {}, []
    for n in STAGES:
        hooks.append(getattr(teacher, n).register_forward_hook(lambda m, a, out, n=n: io.__setitem__(n, (a[0], out))))
    with torch.no_grad():
        teacher.features(x)
    for h in hooks:
        h.remove()
    return io


@pytest.mark.parametrize("name", MC)
def test_mc_first_folded_stage_and_every_a_conv_are_exact(teacher, name):
    k = int(name[2:])
    first = [s for s in STAGES if s.startswith(f"conv{k}")][0]
    student, report = transfer(teacher, name, calibrate=False)
    x = make_probe(2, 16, 32, seed=123)
    with torch.no_grad():
        t, s = teacher.forward_stages(x), student.forward_stages(x)
    for stage in STAGES[: STAGES.index(first)]:  # 3D stages before the fold are copies
        assert torch.equal(s[stage], t[stage])
    assert s[first].dim() == 4
    if first == "conv2":  # mc2 folds right before a "b" conv: exact against the average pool (pre-ReLU)
        z = _teacher_io(teacher, x)["conv2"][1]
        assert rel_err(s[first], F.relu(fold(F.avg_pool3d(z, (2, 1, 1))))) < 1e-5
    else:  # end to end: the first folded stage is exactly the teacher's, folded
        assert rel_err(s[first], fold(t[first])) < 1e-5
    # every "a" conv, fed the teacher's own input folded, gives the teacher's output folded
    io = _teacher_io(teacher, x)
    a_rows = [r for r in report.rows if r["kind"] == "exact"]
    assert a_rows and all(r["method"] == "band expansion" for r in a_rows)
    for r in a_rows:
        inp, out = io[r["layer"]]
        with torch.no_grad():
            got = getattr(student, r["layer"])(fold(inp))
        assert rel_err(got, fold(out)) < 1e-5
        assert r["weight_rel_err"] == 0.0
    assert next(r for r in report.rows if r["layer"] == first)["act_rel_err"] < 1e-5 or first == "conv2"


def test_b_conv_is_the_average_pool_exactly_without_calibration(teacher):
    # mc5: conv5b's input is exact (conv5a is), so its output must be the teacher's conv5b followed by a
    # temporal average pool, then the ReLU.
    student, report = transfer(teacher, "mc5", calibrate=False)
    x = make_probe(2, 16, 32, seed=5)
    z = _teacher_io(teacher, x)["conv5b"][1]
    with torch.no_grad():
        s = student.forward_stages(x)["conv5b"]
    assert rel_err(s, F.relu(fold(F.avg_pool3d(z, (2, 1, 1))))) < 1e-5
    row = next(r for r in report.rows if r["layer"] == "conv5b")
    assert row["kind"] == "approx" and row["weight_rel_err"] < 1e-6 and row["act_rel_err"] > 0.01


@pytest.mark.parametrize("name", STUDENTS)
def test_report_rows_and_head(teacher, name):
    student, report = transfer(teacher, name)
    assert [r["layer"] for r in report.rows] == [*STAGES, "fc6", "fc7", "fc8"]
    for r in report.rows:
        assert r["kind"] in ("copied", "exact", "approx")
        assert set(r) >= {"layer", "kind", "weight_rel_err", "act_rel_err"}
        if r["kind"] in ("copied", "exact"):
            assert r["weight_rel_err"] < 1e-6
    for fc in ("fc6", "fc7", "fc8"):
        assert torch.equal(getattr(student, fc).weight, getattr(teacher, fc).weight)
    d = report.to_dict()
    json.dumps(d)  # plain data
    assert report["feature_rel_err"] == d["feature_rel_err"] == report.feature_rel_err
    assert 0 < report.feature_rel_err < report.random_feature_rel_err
    assert "| conv5b |" in report.table()
    # the report's feature numbers are the student's and teacher's own features on its check clips
    assert student.feature_dim == teacher.feature_dim and not student.training


def test_transfer_is_deterministic_and_leaves_the_global_rng_alone(teacher):
    torch.manual_seed(42)
    create_model("mc5", 7, **TINY)  # the student's own (overwritten) init: the only draws transfer() makes
    expected = torch.rand(3)
    torch.manual_seed(42)
    _, r1 = transfer(teacher, "mc5")
    assert torch.equal(torch.rand(3), expected)  # the seeded probe and baseline neither drew nor reseeded
    _, r2 = transfer(teacher, "mc5")
    assert r1.to_dict() == r2.to_dict()


def test_sp_kinds_follow_exactness(teacher):
    _, rep = transfer(teacher, "sp", sp_mode="svd", calibrate=False)
    assert all(r["kind"] == "approx" for r in rep.rows[:8])  # the ReLU between the two convs
    assert all(r["method"].startswith("SVD rank") for r in rep.rows[:8])


def test_sp_bn_starts_as_sp_with_identity_batchnorm(teacher):
    sp, _ = transfer(teacher, "sp")
    spbn, _ = transfer(teacher, "sp_bn")
    x = make_probe(2, 16, 32, seed=77)
    with torch.no_grad():
        assert rel_err(spbn.features(x), sp.features(x)) < 1e-5
    # With the fit half's statistics, train mode is the identity there too (same default probe, seed 0).
    fit = make_probe(4, 16, 32, seed=0)[:2]
    trained = copy.deepcopy(spbn).train()
    with torch.no_grad():
        assert rel_err(trained.features(fit), spbn.features(fit)) < 1e-4
    bn = spbn.conv2.spatial_bn
    assert bn.running_var.min() > 0 and not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


@pytest.mark.parametrize("name", STUDENTS)
def test_transfer_beats_random_init(name):
    """Transferred students start closer to the teacher than randomly initialised ones. Measured on held-out
    clips with random tiny teachers, most students do not start 10× closer (docs/transfer.md
    explains: MC loses at every "b" conv, where max pooling over two frames becomes an average; SP keeps a
    rank-Cout slice of a random, full-rank kernel). What holds, with room, is asserted here: MC students
    start ≥ 3× closer to the teacher and with cosine ≥ 0.9, SP ≥ 1.25× closer."""
    ratios, cosines = [], []
    for seed in (0, 1):
        torch.manual_seed(100 + seed)
        t = create_model("c3d", **TINY).eval()
        student, _ = transfer(t, name, probe=make_probe(8, 16, 32, seed=seed))
        torch.manual_seed(500 + seed)
        rnd = create_model(name, **TINY).eval()
        x = make_probe(4, 16, 32, seed=1000 + seed)  # clips the fit never saw
        with torch.no_grad():
            ft, fs, fr = t.features(x), student.features(x), rnd.features(x)
        ratios.append(rel_err(fr, ft) / rel_err(fs, ft))
        cosines.append(F.cosine_similarity(fs, ft).mean().item())
    if name.startswith("mc"):
        assert min(ratios) >= 3.0, ratios
        assert min(cosines) >= 0.9, cosines
    else:
        assert min(ratios) >= 1.25, ratios
        assert min(cosines) >= 0.7, cosines


def test_calibration_and_pairs_help_on_held_out_clips():
    torch.manual_seed(3)
    t = create_model("c3d", **TINY).eval()
    x = make_probe(4, 16, 32, seed=999)
    errs = {}
    for name, kw in [("mc4", dict(calibrate=False)), ("mc4", {}), ("sp", dict(calibrate=False, sp_mode="svd")),
                     ("sp", {})]:
        s, _ = transfer(t, name, probe=make_probe(8, 16, 32, seed=4), **kw)
        with torch.no_grad():
            errs[(name, bool(kw))] = rel_err(s.features(x), t.features(x))
    assert errs[("mc4", False)] < errs[("mc4", True)]
    assert errs[("sp", False)] < errs[("sp", True)]


@pytest.mark.parametrize("name", ["mc3", "mc4", "mc5"])
def test_too_few_values_per_channel_are_not_calibrated(name):
    # 16×16 clips, 2 fit clips: conv5b has 2 values per channel, which two parameters per channel fit
    # exactly. Calibrated anyway, mc4's pool5 features ended 3× further from the teacher's than a random
    # init's; left out, every MC student starts closer than a random one.
    torch.manual_seed(0)
    t = create_model("c3d", width=1 / 16, frames=32, size=16).eval()
    student, report = transfer(t, name, probe_size=4)
    conv5b = next(r for r in report.rows if r["layer"] == "conv5b")
    assert "not calibrated: 2 values per channel" in conv5b["method"], conv5b
    assert report.feature_rel_err < 0.7 * report.random_feature_rel_err, report.to_dict()


def test_fold_hint_pairs(teacher):
    x = make_probe(2, 16, 32, seed=8)
    for name, left_out in [("mc3", {"conv3b", "conv4b", "conv5b"}), ("mc5", {"conv5b"}), ("sp", set()),
                           ("mc1", {"conv2", "conv3b", "conv4b", "conv5b"})]:
        student, _ = transfer(teacher, name)
        pairs = fold_hint_pairs(teacher, student)
        assert {s for _, s in pairs} == set(STAGES) - left_out
        with torch.no_grad():
            t, s = teacher.forward_stages(x), student.forward_stages(x)
        for ts, ss in pairs:
            assert align(t[ts], s[ss]).shape == s[ss].shape
        pooled = fold_hint_pairs(teacher, student, pooled=True)
        assert [p[1] for p in pooled] == list(STAGES)
        for ts, ss in pooled:
            if ss in left_out:  # a "b" conv: the teacher's output max-pooled over frame pairs, then folded
                assert torch.equal(align(t[ts], s[ss]), fold(F.max_pool3d(t[ts], (2, 1, 1))))
        if name.startswith("mc"):  # the first folded stage is exact, so its hint starts at zero
            k = int(name[2:])
            first = [st for st in STAGES if st.startswith(f"conv{k}")][0]
            assert (first, first) in pairs
            assert rel_err(s[first], align(t[first], s[first])) < 1e-5


def test_bad_arguments_are_named(teacher):
    with pytest.raises(ValueError, match="teacher"):
        transfer(create_model("mc4", **TINY), "mc5")
    with pytest.raises(ValueError, match="width"):
        transfer(teacher, "mc4", width=1 / 8)
    with pytest.raises(ValueError, match="sp_mode"):
        transfer(teacher, "sp", sp_mode="nope")
    with pytest.raises(ValueError, match="probe"):
        transfer(teacher, "mc4", probe=torch.zeros(1, 3, 16, 32, 32))
    with pytest.raises(ValueError, match="name"):
        transfer(teacher, "mc9")


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_writes_a_loadable_student_and_the_report(tmp_path, teacher, capsys):
    from c3d_distill.cli import main
    from c3d_distill.runs.checkpoint import FORMAT, save_checkpoint
    from c3d_distill.runs.model import load_run_model

    cfg = teacher.config
    meta = {k: cfg[k] for k in ("name", "num_classes", "width", "frames", "size", "dropout")}
    save_checkpoint({"format": FORMAT, "model": teacher.state_dict(), "model_meta": meta}, tmp_path / "t.pt")
    out = tmp_path / "student.pt"
    assert main(["transfer", "--teacher", str(tmp_path / "t.pt"), "--student", "mc4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| conv4a | exact |" in printed and "pool5 features" in printed
    report = json.loads((tmp_path / "student.transfer.json").read_text())
    assert report["student"] == "mc4" and len(report["rows"]) == 11
    student, smeta, _ = load_run_model(out)
    assert smeta["name"] == "mc4" and smeta["num_classes"] == 7
    x = make_probe(2, 16, 32, seed=4)
    with torch.no_grad():
        assert rel_err(student.eval().features(x), teacher.features(x)) < 0.6
    # a public state dict (conv1…fc8 keys) works too; the width comes from conv1
    torch.save(teacher.state_dict(), tmp_path / "public.pt")
    assert main(["transfer", "--teacher", str(tmp_path / "public.pt"), "--size", "32", "--student", "sp",
                 "--out", str(tmp_path / "sp.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["student"] == "sp"


def test_cli_probe_clips_from_a_data_set(tmp_path, teacher, capsys):
    from c3d_distill.cli import main
    from c3d_distill.datasets import make_synthetic

    data = make_synthetic(tmp_path / "synth", classes=2, videos_per_class=4, width=64, height=48,
                          duration=(0.8, 0.8), clips_per_group=2, workers=1, progress=False)
    torch.save(teacher.state_dict(), tmp_path / "public.pt")
    args = ["transfer", "--teacher", str(tmp_path / "public.pt"), "--size", "32", "--student", "mc5",
            "--out", str(tmp_path / "mc5.pt"), "--probe-data", f"synth:{data}"]
    assert main([*args, "--probe-clips", "4"]) == 0
    report = json.loads((tmp_path / "mc5.transfer.json").read_text())
    assert report["probe"]["source"].startswith("--probe-data synth:") and report["probe"]["check_clips"] == 2
    assert report["feature_cosine"] > 0.5
    assert main([*args, "--probe-clips", "50"]) == 2
    assert re.search("c3d-distill: error: --probe-data: .* 4 training videos, --probe-clips asks for 50",
                     capsys.readouterr().err)
    assert main([*args[:-1], f"synth:{tmp_path / 'nothing'}"]) == 2
    assert "c3d-distill: error: --probe-data" in capsys.readouterr().err


def test_cli_probe_clips_are_made_the_way_the_teacher_was_trained(tmp_path, teacher, monkeypatch, capsys):
    from c3d_distill.cli import main
    from c3d_distill.datasets import make_synthetic
    from c3d_distill.runs.checkpoint import FORMAT, save_checkpoint
    from c3d_distill.transfer import cli as tcli

    data = make_synthetic(tmp_path / "synth", classes=2, videos_per_class=4, width=64, height=48,
                          duration=(1.6, 1.6), clips_per_group=2, workers=1, progress=False)
    cfg = teacher.config
    meta = {k: cfg[k] for k in ("name", "num_classes", "width", "frames", "size", "dropout")}
    run_cfg = {"stride": 2, "resize": [40, 50], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    save_checkpoint({"format": FORMAT, "model": teacher.state_dict(), "model_meta": meta, "config": run_cfg},
                    tmp_path / "t.pt")
    seen = {}
    real = tcli.probe_from_data

    def spy(*a, **kw):
        seen.update(kw)
        return real(*a, **kw)

    monkeypatch.setattr(tcli, "probe_from_data", spy)
    args = ["transfer", "--teacher", str(tmp_path / "t.pt"), "--student", "mc5", "--out", str(tmp_path / "s.pt"),
            "--probe-data", f"synth:{data}"]
    assert main(args) == 0
    assert seen == {"stride": 2, "resize": (40, 50), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
                    "channels": "RGB"}
    # the probe clips are those clips: every 2nd frame, resized to 40x50, normalised with the teacher's stats
    from c3d_distill.clips import VideoReader, center_clip, read_clips
    from c3d_distill.datasets import load

    first = load(f"synth:{data}", "train").items[0][0]
    want = read_clips([(first, center_clip(VideoReader(first).num_frames, 16, 2))], size=(40, 50), crop=32,
                      dtype="float32", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    got = real(f"synth:{data}", 2, 16, 32, **seen)
    assert torch.equal(got[:1], torch.from_numpy(want))
    # a run checkpoint records its shape: a different explicit one is refused, the same one accepted
    capsys.readouterr()
    assert main([*args, "--frames", "32"]) == 2
    assert "--frames 32: the checkpoint's model has frames=16" in capsys.readouterr().err
    assert main([*args, "--size", "32", "--width", str(cfg["width"])]) == 0


def test_cli_errors(tmp_path, capsys):
    from c3d_distill.cli import main

    def error(argv) -> str:
        assert main(argv) == 2  # one line, no traceback
        err = capsys.readouterr().err
        assert err.startswith("c3d-distill: error: ") and "Traceback" not in err
        return err

    assert "no such checkpoint" in error(["transfer", "--teacher", str(tmp_path / "missing.pt"), "--student",
                                          "mc4", "--out", "x.pt"])
    assert "--student" in error(["transfer", "--teacher", "t.pt", "--student", "resnet", "--out", "x.pt"])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert "junk.pt" in error(["transfer", "--teacher", str(tmp_path / "junk.pt"), "--student", "mc4",
                               "--out", "x.pt"])
    with pytest.raises(ValueError, match="junk.pt"):  # --debug: the exception itself
        main(["--debug", "transfer", "--teacher", str(tmp_path / "junk.pt"), "--student", "mc4", "--out", "x.pt"])


def test_cli_checks_device_and_output_paths_before_the_work(tmp_path, teacher, capsys, monkeypatch):
    from c3d_distill.cli import main
    from c3d_distill.transfer import cli as tcli
    from c3d_distill.transfer.cli import load_teacher

    torch.save(teacher.state_dict(), tmp_path / "t.pt")
    called = []
    monkeypatch.setattr(tcli, "_load_teacher", lambda *a, **k: called.append(1))  # reached only past the checks
    (tmp_path / "folder").mkdir()
    base = ["transfer", "--teacher", str(tmp_path / "t.pt"), "--size", "32", "--student", "mc4"]
    cases = [
        (["--out", str(tmp_path / "s.pt"), "--device", "nope"], "--device: expected cpu or cuda[:N], got 'nope'"),
        (["--out", str(tmp_path / "folder")], "--out " + str(tmp_path / "folder") + ": is a folder"),
        (["--out", str(tmp_path / "s.pt"), "--report", str(tmp_path / "folder")], "--report "),
        (["--out", str(tmp_path / "s.pt"), "--report", str(tmp_path / "s.pt")], "the same file as --out"),
        (["--out", str(tmp_path / "t.pt" / "s.pt")], "is a file, not a folder"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--out", str(tmp_path / "s.pt"), "--device", "cuda"], "CUDA is not available"))
    for extra, want in cases:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("c3d-distill: error: ") and want in err, err
    assert not called
    monkeypatch.undo()
    # a public state dict: the shape options are named as such, and a mismatch says where the shape came from
    assert main([*base[:-4], "--frames", "8", "--student", "mc4", "--out", str(tmp_path / "s.pt")]) == 2
    assert capsys.readouterr().err.startswith("c3d-distill: error: --frames: expected a positive multiple of 16")
    assert main([*base[:-4], "--student", "mc4", "--out", str(tmp_path / "s.pt")]) == 2  # trained at 32, not 112
    err = capsys.readouterr().err
    assert "shape mismatch" in err and "(guessed from conv1's channels / 64), --frames 16 and --size 112" in err
    # The Python API: a run checkpoint's shape is its own (the defaults no longer ask for 16×112).
    from c3d_distill.runs.checkpoint import FORMAT, save_checkpoint

    cfg = teacher.config
    meta = {k: cfg[k] for k in ("name", "num_classes", "width", "frames", "size", "dropout")}
    save_checkpoint({"format": FORMAT, "model": teacher.state_dict(), "model_meta": meta}, tmp_path / "run.pt")
    assert load_teacher(str(tmp_path / "run.pt"))[1]["size"] == 32
    # the progress callback (the CLI's bar) is told every step
    steps = []
    transfer(teacher, "mc4", probe_size=2, progress=steps.append)
    assert tuple(steps) == PROGRESS_STEPS


def test_public_state_dict_with_fc6_fc7_but_no_fc8_is_headless_and_says_so(tmp_path, teacher, capsys):
    from c3d_distill.transfer.cli import load_teacher

    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("fc8")}
    torch.save(state, tmp_path / "nofc8.pt")
    t, meta = load_teacher(str(tmp_path / "nofc8.pt"), size=32)
    assert meta["num_classes"] is None and "fc6/fc7 without fc8" in capsys.readouterr().err


def test_nn_module_teacher_with_other_layers_is_refused():
    class NotC3D(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3)

    with pytest.raises(ValueError, match="conv1"):
        transfer(NotC3D(), "mc4")
