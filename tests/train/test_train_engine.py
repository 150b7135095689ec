"""The training engine on in-memory clips and tiny models: losses, schedule, steps, evaluation, cache."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from c3d_distill.models import create_model
from c3d_distill.train.engine import build_optimizer, evaluate, lr_at, prepare_batch, train_one_epoch
from c3d_distill.train.losses import align_hint, feature_loss, hint_loss, kd_loss, topk_correct
from c3d_distill.train.objective import Objective, StudentNet, TeacherCache, run_teacher

CPU = torch.device("cpu")
TINY = dict(width=0.0625, frames=16, size=16)


def batches(n=24, bs=8, classes=4, seed=0, videos=None):
    """Clips whose class is visible in the mean intensity of a moving half, so a tiny model can learn it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, 16, generator=g) * 0.5
    y = torch.arange(n) % classes
    x += y.view(-1, 1, 1, 1, 1).float() * 0.7
    vids = torch.arange(n) if videos is None else videos
    out = []
    for i in range(0, n, bs):
        meta = {"video": vids[i : i + bs], "frames": torch.arange(16).repeat(min(bs, n - i), 1)}
        out.append((x[i : i + bs], y[i : i + bs], meta))
    return out


def test_kd_loss_matches_hand_formula():
    torch.manual_seed(0)
    zs, zt = torch.randn(5, 7), torch.randn(5, 7)
    y = torch.randint(0, 7, (5,))
    t, a = 3.0, 0.7
    total, parts = kd_loss(zs, zt, y, temperature=t, alpha=a)
    p_t = F.softmax(zt / t, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(zs / t, 1))).sum(1).mean()
    ref = a * t * t * kl + (1 - a) * F.cross_entropy(zs, y)
    assert torch.allclose(total, ref, atol=1e-6)
    assert torch.allclose(parts["kl"], kl, atol=1e-6)
    # alpha = 1 needs no labels; alpha < 1 does.
    kd_loss(zs, zt, None, alpha=1.0)
    with pytest.raises(ValueError, match="labels"):
        kd_loss(zs, zt, None, alpha=0.5)
    # identical logits: no KL
    assert float(kd_loss(zs, zs, None, alpha=1.0)[0]) == pytest.approx(0.0, abs=1e-6)


def test_feature_and_hint_losses():
    a, b = torch.randn(4, 10), torch.randn(4, 10)
    assert torch.allclose(feature_loss(a, b), ((a - b) ** 2).mean())
    with pytest.raises(ValueError, match="differ"):
        feature_loss(a, torch.randn(4, 11))
    t = torch.randn(2, 3, 4, 5, 5)
    # 2D student stage: folded, channel c*T + t
    folded = align_hint(t, torch.empty(2, 12, 5, 5))
    assert torch.equal(folded[:, 1 * 4 + 2], t[:, 1, 2])
    # a "b" conv: max over temporal pairs, then folded
    pooled = align_hint(t, torch.empty(2, 6, 5, 5))
    assert torch.equal(pooled[:, 1 * 2 + 1], torch.maximum(t[:, 1, 2], t[:, 1, 3]))
    with pytest.raises(ValueError, match="cannot be folded"):
        align_hint(t, torch.empty(2, 7, 5, 5))
    loss = hint_loss({"a": t}, {"a": t.reshape(2, 12, 5, 5) + 1}, [("a", "a")])
    assert float(loss) == pytest.approx(1.0)


def test_topk_correct():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    assert topk_correct(logits, torch.tensor([1, 1, 0]), (1, 2, 5)) == [1, 2, 3]


def test_lr_schedule_warmup_cosine_step():
    kw = dict(base_lr=0.1, total_steps=100, steps_per_epoch=10)
    assert lr_at(0, warmup_epochs=1, **kw) == pytest.approx(0.01)
    assert lr_at(9, warmup_epochs=1, **kw) == pytest.approx(0.1)
    assert lr_at(10, warmup_epochs=1, **kw) == pytest.approx(0.1)
    assert lr_at(55, warmup_epochs=1, **kw) == pytest.approx(0.05)
    assert lr_at(100, warmup_epochs=1, **kw) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(39, schedule="step", step_epochs=4, gamma=0.5, **kw) == pytest.approx(0.1)
    assert lr_at(40, schedule="step", step_epochs=4, gamma=0.5, **kw) == pytest.approx(0.05)
    assert lr_at(77, schedule="constant", **kw) == 0.1


def test_prepare_batch_normalises_uint8_like_the_loader():
    u8 = torch.randint(0, 256, (2, 3, 16, 4, 4), dtype=torch.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    x = prepare_batch(u8, CPU, mean=mean, std=std)
    ref = (u8.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1, 1)
    assert torch.allclose(x, ref, atol=1e-5)
    with pytest.raises(ValueError, match="NCTHW"):
        prepare_batch(torch.zeros(2, 16, 3, 4, 4), CPU, mean=mean, std=std)


def test_training_lowers_the_loss_and_learns():
    torch.manual_seed(0)
    model = create_model("c3d", 4, dropout=0.0, **TINY)
    data = batches(n=16)
    net, obj = StudentNet(model), Objective("ce")
    opt = build_optimizer(model.parameters(), "adamw", 3e-3, 0.9, 0.0)
    first = evaluate(net, data, obj, device=CPU, num_videos=16)
    step = 0
    for _ in range(5):
        res, step = train_one_epoch(net, data, obj, opt, device=CPU, step=step, clip_grad=1.0)
    last = evaluate(net, data, obj, device=CPU, num_videos=16)
    assert step == 5 * len(data)
    assert last["loss"] < first["loss"] * 0.7
    assert last["top1"] > 0.5
    assert set(res) >= {"loss", "ce", "top1", "top5", "clips", "clips_per_s", "lr", "time"}
    assert res["clips"] == 16


def test_video_accuracy_averages_the_clips_of_a_video():
    model = create_model("c3d", 4, **TINY)

    class Fixed(torch.nn.Module):  # logits chosen per clip: video 0 right on 2 of 3 clips
        def forward(self, x):
            return {"features": torch.zeros(x.shape[0], 2), "logits": x[:, 0, 0, 0, :4], "stages": None}

    del model
    x = torch.zeros(3, 3, 16, 1, 4)
    x[0, 0, 0, 0] = torch.tensor([5.0, 0, 0, 0])
    x[1, 0, 0, 0] = torch.tensor([5.0, 0, 0, 0])
    x[2, 0, 0, 0] = torch.tensor([0, 9.0, 0, 0])
    data = [(x, torch.tensor([0, 0, 0]), {"video": torch.tensor([0, 0, 0]), "frames": torch.zeros(3, 16)})]
    res = evaluate(Fixed(), data, None, device=CPU, num_videos=1)
    assert res["top1"] == pytest.approx(2 / 3)
    assert res["video_acc"] == 1.0 and res["videos"] == 1


@pytest.mark.parametrize("student", ["mc4", "sp_bn"])
@pytest.mark.parametrize("loss", ["feature", "kd", "feature+kd"])
def test_distillation_steps_train_only_the_student(student, loss):
    torch.manual_seed(0)
    teacher = create_model("c3d", 4, **TINY)
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    s = create_model(student, 4, **TINY)
    from c3d_distill.transfer import fold_hint_pairs

    obj = Objective(loss, teacher=teacher, hint_pairs=fold_hint_pairs(teacher, s))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    net = StudentNet(s, stages=True, logits_grad=loss != "feature")
    s_before = {k: v.clone() for k, v in s.state_dict().items()}
    opt = build_optimizer(s.parameters(), "sgd", 0.01, 0.9, 0.0)
    res, _ = train_one_epoch(net, batches(n=8), obj, opt, device=CPU)
    assert "hint" in res and ("feature" in res) == ("feature" in loss) and ("kl" in res) == ("kd" in loss)
    assert all(torch.equal(t_before[k], v) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(s_before[k], v) for k, v in s.state_dict().items())
    assert math.isfinite(res["loss"])


def test_teacher_cache_gives_the_same_training_and_skips_the_teacher():
    def train(cache):
        torch.manual_seed(1)
        teacher = create_model("c3d", 4, **TINY)
        student = create_model("sp", 4, dropout=0.0, **TINY)
        calls = []
        teacher.conv1.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
        obj = Objective("feature+kd", teacher=teacher, cache=cache)
        opt = build_optimizer(student.parameters(), "sgd", 0.01, 0.9, 0.0)
        net = StudentNet(student)
        hist = [train_one_epoch(net, batches(n=16), obj, opt, device=CPU)[0]["loss"] for _ in range(3)]
        return hist, student.state_dict(), calls

    h0, w0, calls0 = train(None)
    cache = TeacherCache(crop_key="center")
    h1, w1, calls1 = train(cache)
    assert h0 == h1
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert cache.misses == 16 and cache.hits == 32 and len(cache) == 16
    assert sum(calls0) == 48 and sum(calls1) == 16  # epochs 2 and 3 never ran the teacher


def test_cache_runs_the_teacher_on_misses_only():
    teacher = create_model("c3d", 4, **TINY).eval()
    x = torch.randn(4, 3, 16, 16, 16)
    cache = TeacherCache()
    meta = {"video": torch.tensor([0, 1, 2, 3]), "frames": torch.arange(16).repeat(4, 1)}
    full = run_teacher(teacher, x, stages=False, amp=False, cache=cache, meta=meta)
    meta2 = {"video": torch.tensor([0, 9, 2, 8]), "frames": torch.arange(16).repeat(4, 1)}
    x2 = x.clone()
    x2[1] += 1
    x2[3] -= 1
    mixed = run_teacher(teacher, x2, stages=False, amp=False, cache=cache, meta=meta2)
    direct = run_teacher(teacher, x2, stages=False, amp=False)
    assert cache.hits == 2 and cache.misses == 6
    assert torch.allclose(mixed.features, direct.features, atol=1e-6)
    assert torch.equal(mixed.features[0], full.features[0])
    # train and eval clips of the same index are different clips
    run_teacher(teacher, x, stages=False, amp=False, cache=cache, meta=meta, namespace="eval")
    assert cache.misses == 10


def test_cache_stops_storing_at_its_memory_cap_and_still_gives_the_right_outputs():
    teacher = create_model("c3d", 4, **TINY).eval()
    x = torch.randn(4, 3, 16, 16, 16)
    meta = {"video": torch.tensor([0, 1, 2, 3]), "frames": torch.arange(16).repeat(4, 1)}
    per_entry = (teacher.feature_dim + 4) * 4 + TeacherCache.ENTRY_OVERHEAD
    cache = TeacherCache(max_bytes=2 * per_entry + 10)  # room for two clips
    direct = run_teacher(teacher, x, stages=False, amp=False)
    for _ in range(3):  # the same four clips every "epoch": two hit, two are recomputed
        out = run_teacher(teacher, x, stages=False, amp=False, cache=cache, meta=meta)
        assert torch.allclose(out.features, direct.features, atol=1e-6)
        assert torch.allclose(out.logits, direct.logits, atol=1e-6)
    assert len(cache) == 2 and cache.nbytes <= cache.max_bytes and cache.full
    assert cache.hits == 4 and cache.misses == 8 and cache.not_stored == 6
    st = cache.stats()
    assert st["entries"] == 2 and st["not_stored"] == 6 and st["limit_mb"] > 0


def test_teacher_cache_needs_a_deterministic_sampler():
    from c3d_distill.runs.config import RunConfig

    kw = dict(mode="distill", teacher="t", loss="kd", teacher_cache=True, crop_mode="center", flip=False)
    with pytest.raises(ValueError, match="--teacher-cache: needs a deterministic sampler"):
        RunConfig(**kw).validate()  # the default sampler is random
    for sampler in ("center", "uniform"):
        RunConfig(sampler=sampler, **kw).validate()
    with pytest.raises(ValueError, match="--teacher-cache-mb: must be positive"):
        RunConfig(sampler="center", teacher_cache_mb=0, **kw).validate()
    # configs written when the sampler lived in "extra" still read
    old = RunConfig(sampler="center", **kw).to_dict()
    del old["sampler"]
    old["extra"] = {"sampler": "uniform"}
    assert RunConfig.from_dict(old).sampler == "uniform"


def test_permute_colours_is_per_clip_and_reproducible():
    from c3d_distill.train.engine import permute_colours

    x = torch.arange(8 * 3, dtype=torch.float32).view(8, 3, 1, 1, 1).expand(8, 3, 4, 2, 2).contiguous()
    a, b = permute_colours(x, 0, 5), permute_colours(x, 0, 5)
    assert torch.equal(a, b) and not torch.equal(a, permute_colours(x, 0, 6))
    for i in range(8):
        got = a[i, :, 0, 0, 0].tolist()
        assert sorted(got) == x[i, :, 0, 0, 0].tolist()  # a permutation of this clip's channels
        assert torch.equal(a[i], a[i, :, :1].expand_as(a[i]))  # the same for every frame and pixel
    assert len({tuple(a[i, :, 0, 0, 0].argsort().tolist()) for i in range(8)}) > 1


def test_objective_rejects_bad_settings():
    with pytest.raises(ValueError, match="teacher"):
        Objective("feature")
    with pytest.raises(ValueError, match="loss"):
        Objective("mse")


def test_nan_loss_is_reported():
    model = create_model("c3d", 4, **TINY)
    data = batches(n=8)
    data[0][0][0, 0, 0, 0, 0] = float("nan")
    opt = build_optimizer(model.parameters(), "sgd", 0.01, 0.9, 0.0)
    with pytest.raises(FloatingPointError, match="lr"):
        train_one_epoch(StudentNet(model), data, Objective("ce"), opt, device=CPU)


def test_a_collapsed_teacher_is_recognised():
    """A diverged teacher whose ReLUs all died gives the same (zero) pool5 features for every clip:
    `distill` warns that there is nothing to learn; a working teacher passes."""
    from c3d_distill.train.students import collapsed_teacher

    torch.manual_seed(0)
    teacher = create_model("c3d", 5, width=0.125, frames=16, size=32)
    probe = torch.randn(4, 3, 16, 32, 32)
    assert collapsed_teacher(teacher, probe) is None
    with torch.no_grad():
        teacher.conv5b.bias.fill_(-1e3)  # every unit of the last conv below zero: ReLU kills them all
    assert "all zero" in collapsed_teacher(teacher, probe)
    with torch.no_grad():
        teacher.conv5b.weight.zero_()
        teacher.conv5b.bias.fill_(0.5)  # alive but blind to the input
    assert "the same for all 4" in collapsed_teacher(teacher, probe)
    assert teacher.training  # the check leaves the mode as it was


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_bn_keeps_the_running_statistics_and_trains_the_affine(freeze):
    torch.manual_seed(0)
    model = create_model("sp_bn", 4, dropout=0.0, **TINY)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    stats = [(b.running_mean.clone(), b.running_var.clone(), b.weight.detach().clone()) for b in bns]
    net = StudentNet(model)
    opt = build_optimizer(model.parameters(), "sgd", 0.05, 0.9, 0.0)
    train_one_epoch(net, batches(n=16), Objective("ce"), opt, device=CPU, freeze_bn=freeze)
    same_stats = [torch.equal(b.running_mean, m) and torch.equal(b.running_var, v) for b, (m, v, _) in zip(bns, stats, strict=True)]
    assert all(same_stats) == freeze and (any(same_stats) is False or freeze)
    # the scale still learns either way, and the rest of the network is in train mode
    assert any(not torch.equal(b.weight.detach(), w) for b, (_, _, w) in zip(bns, stats, strict=True))
    assert model.training and all(b.training != freeze for b in bns)
