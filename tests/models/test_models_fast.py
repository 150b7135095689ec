"""The fast execution paths compute the same function as the plain layers (float32, rel. error < 1e-5)."""

from __future__ import annotations

import pytest
import torch
from c3d_distill.models import STAGE_NAMES, create_model, fold, list_models

# width 1/16 and 32×32 frames: conv1 runs channels-last (≥ 28²), later stages NCDHW, as at full size.
SMALL = dict(width=1 / 16, size=32)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def pair(name, num_classes=None, seed=0, **kw):
    torch.manual_seed(seed)
    plain = create_model(name, num_classes, fast=False, **{**SMALL, **kw})
    fast = create_model(name, num_classes, fast=True, **{**SMALL, **kw})
    fast.load_state_dict(plain.state_dict())
    return plain, fast


def randomise_bn(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_fast_is_the_default_and_switchable():
    m = create_model("sp", **SMALL)
    assert m.fast and m.config["fast"]
    assert not create_model("sp", fast=False, **SMALL).fast
    assert m.set_fast(False) is m and not m.fast


@pytest.mark.parametrize("name", list_models())
def test_state_dict_keys_identical(name):
    plain, fast = pair(name, 5)
    assert list(plain.state_dict()) == list(fast.state_dict())
    for k, v in plain.state_dict().items():
        assert fast.state_dict()[k].shape == v.shape


@pytest.mark.parametrize(
    "name, grad_mode",
    [(n, "inference_mode") for n in list_models()] + [("sp_bn", "no_grad"), ("mc3", "no_grad")],
)
def test_inference_matches_plain(name, grad_mode):
    plain, fast = pair(name, 6)
    randomise_bn(plain), randomise_bn(fast)
    plain.eval(), fast.eval()
    x = torch.randn(2, 3, 16, 32, 32)
    ctx = torch.inference_mode if grad_mode == "inference_mode" else torch.no_grad
    with ctx():
        sp, sf = plain.forward_stages(x), fast.forward_stages(x)
        lp, lf = plain(x), fast(x)
        fp, ff = plain.features(x), fast.features(x)
    assert list(sf) == list(STAGE_NAMES)
    for k in STAGE_NAMES:
        assert sf[k].shape == sp[k].shape, k
        assert rel_err(sf[k], sp[k]) < 1e-5, k
    assert rel_err(ff, fp) < 1e-5 and rel_err(lf, lp) < 1e-5


def _rust_kernel_here() -> bool:
    from c3d_distill.models.fast import fused_pool_available

    return fused_pool_available()


@pytest.mark.skipif(not _rust_kernel_here(), reason="the fused Rust kernel needs AVX-512F")
@pytest.mark.parametrize(
    "name, width, grad_mode",
    [("sp", 0.5, "inference_mode"), ("sp_bn", 0.5, "no_grad"), ("sp", 1.0, "inference_mode")],
)
def test_fused_temporal_conv_pool_matches_plain(name, width, grad_mode, monkeypatch):
    """At widths where sp's conv1/conv2 have 32–128 channels, the inference path fuses their temporal
    conv, ReLU and pool in Rust; features and logits still match the plain layers, and the kernel ran."""
    from c3d_distill.models import fast as fast_mod

    calls = []
    real = fast_mod.temporal_conv_pool
    monkeypatch.setattr(
        fast_mod, "temporal_conv_pool", lambda y, w, b, pt: calls.append((y.shape[1], pt)) or real(y, w, b, pt)
    )
    plain, fast = pair(name, 6, width=width, size=28 if width == 1.0 else 36)
    randomise_bn(plain), randomise_bn(fast)
    plain.eval(), fast.eval()
    x = torch.randn(2, 3, 16, *plain.input_hw)
    with torch.inference_mode() if grad_mode == "inference_mode" else torch.no_grad():
        lp, lf = plain(x), fast(x)
        fp, ff = plain.features(x), fast.features(x)
    c1 = round(64 * width)
    assert calls[:2] == [(c1, 1), (2 * c1, 2)]  # conv1 with pool1 (1,2,2), conv2 with pool2 (2,2,2)
    assert rel_err(ff, fp) < 1e-5 and rel_err(lf, lp) < 1e-5
    per_pass = len(calls) // 2  # two passes; at width 0.5 conv3b (128 channels) fuses pool3 as well
    calls.clear()
    with torch.inference_mode():  # stage outputs are read before pooling: nothing to fuse
        fast.forward_stages(x)
    assert calls == []

    class Recorder(dict):  # notes that stages finished, keeps no tensors (as benches/bench_models.py)
        keeps_tensors = False

    with torch.inference_mode():
        assert rel_err(fast._run(x, Recorder()), fp) < 1e-5
    assert len(calls) == per_pass


def training_step(model, x, target):
    loss = (model(x) - target).square().mean()
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize(
    "name, dtype",
    # float64: one model of each kind (3-D, SP with BatchNorm, 2-D from stage 2 / from stage 5);
    # float32: the others too, so every model runs a train step on the fast path
    [(n, torch.float64) for n in ("c3d", "sp_bn", "mc2", "mc5")]
    + [(n, torch.float32) for n in ("c3d", "sp", "mc1", "mc3", "mc4")],
)
def test_training_step_matches_plain(name, dtype):
    """Forward and backward in train mode (BatchNorm batch statistics, running-stat updates) agree.

    float64 shows the function is the same (error ~1e-14). In float32, sp_bn's sixteen train-mode
    BatchNorms over tiny batches amplify rounding from stage to stage (each stage alone stays under 1e-5,
    see the next test), so its float32 check is done per stage."""
    plain, fast = pair(name, 4, dropout=0.0)
    plain.to(dtype).train(), fast.to(dtype).train()
    x = torch.randn(2, 3, 16, 32, 32, dtype=dtype)
    target = torch.randn(2, 4, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert rel_err(training_step(fast, x, target), training_step(plain, x, target)) < tol
    for (k, p), (_, q) in zip(plain.named_parameters(), fast.named_parameters(), strict=True):
        # a conv bias right before a train-mode BatchNorm has an exactly-zero gradient: rounding noise only
        assert rel_err(q.grad, p.grad) < tol or (q.grad - p.grad).abs().max() < 1e-12, k
    for (k, a), (_, b) in zip(plain.named_buffers(), fast.named_buffers(), strict=True):
        assert torch.allclose(b.double(), a.double(), rtol=tol, atol=tol), k


def test_sp_bn_train_stage_matches_plain():
    from c3d_distill.models.fast import sp_stage

    # In float64: the comparison is of formulas, not of float32 rounding (with one thread PyTorch picks
    # other conv kernels, and the float32 gradients then differed by 1.2e-3 while agreeing to 1e-15 here).
    plain, fast = pair("sp_bn", 4)
    plain.double().train(), fast.double().train()
    x = torch.rand(2, 3, 16, 32, 32, dtype=torch.float64)
    for name in STAGE_NAMES:
        p_mod, f_mod = getattr(plain, name), getattr(fast, name)
        x = x.detach().requires_grad_(True)
        xf = x.detach().clone().contiguous(memory_format=torch.channels_last_3d).requires_grad_(True)
        yp, yf = p_mod(x), sp_stage(xf, f_mod)[0]
        assert rel_err(yf, yp) < 1e-10, name
        g = torch.randn_like(yp)
        yp.backward(g), yf.backward(g)
        assert rel_err(xf.grad, x.grad) < 1e-10, name
        assert rel_err(f_mod.spatial.weight.grad, p_mod.spatial.weight.grad) < 1e-10, name
        assert rel_err(f_mod.temporal_bn.running_var, p_mod.temporal_bn.running_var) < 1e-10, name
        if name.endswith(("1", "2", "b")):
            x = torch.nn.functional.max_pool3d(yp.detach(), (1, 2, 2) if name == "conv1" else 2)
        else:
            x = yp.detach()
        if name == "conv4b":
            break


def test_hooks_fall_back_to_the_plain_layers():
    _, fast = pair("mc4", 3)
    fast.eval()
    seen = []
    handle = fast.conv4a.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    with torch.no_grad():
        fast(torch.randn(1, 3, 16, 32, 32))
    assert seen == [(1, 128, 4, 4)]
    handle.remove()
    with torch.no_grad():
        fast(torch.randn(1, 3, 16, 32, 32))
    assert len(seen) == 1  # without hooks the fast path runs and never calls the modules


@pytest.mark.parametrize("kind", ["full_backward", "full_backward_pre", "global_full_backward"])
def test_backward_hooks_fall_back_to_the_plain_layers(kind):
    # A backward hook on a stage module fires only if the module itself is called: the fast path (which
    # computes the stage with functional ops) must step aside for it, as it does for forward hooks.
    _, fast = pair("mc4", 3)
    fast.train()
    seen = []

    def hook(*args):
        seen.append(kind)

    if kind == "global_full_backward":
        handle = torch.nn.modules.module.register_module_full_backward_hook(hook)
    else:
        handle = getattr(fast.conv1, f"register_{kind}_hook")(hook)
    try:
        fast(torch.randn(1, 3, 16, 32, 32, requires_grad=True)).sum().backward()
    finally:
        handle.remove()
    assert seen, f"the {kind} hook never fired"


def test_mc1_folded_input_on_the_fast_path():
    plain, fast = pair("mc1", 3)
    plain.eval(), fast.eval()
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        assert rel_err(fast(fold(x)), plain(x)) < 1e-5


def test_non_contiguous_input():
    plain, fast = pair("sp", 3)
    plain.eval(), fast.eval()
    x = torch.randn(2, 16, 3, 32, 32).transpose(1, 2)  # (N, C, T, H, W) view with T outside C
    with torch.no_grad():
        assert rel_err(fast(x), plain(x)) < 1e-5


def test_autocast_bfloat16_runs_the_unfused_path():
    plain, fast = pair("sp_bn", 3)
    plain.eval(), fast.eval()
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        lp, lf = plain(x), fast(x)
    assert lf.dtype == lp.dtype == torch.bfloat16
    assert rel_err(lf.float(), lp.float()) < 0.05  # bf16 rounding, not the fast path, sets this bound


@pytest.mark.gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", list_models())
def test_cuda_fast_matches_plain(name):
    """On CUDA the fast path is the unfused ops on channels-last tensors (cuDNN picks NDHWC kernels)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    plain, fast = pair(name, 4, dropout=0.0)
    plain.cuda().eval(), fast.cuda().eval()
    x = torch.randn(2, 3, 16, 32, 32, device="cuda")
    with torch.no_grad():
        assert rel_err(fast(x), plain(x)) < 1e-5
        sp, sf = plain.forward_stages(x), fast.forward_stages(x)
        for k in STAGE_NAMES:
            assert rel_err(sf[k], sp[k]) < 1e-5, k
    # Train mode. sp_bn's sixteen train-mode BatchNorms over a 2-clip batch amplify float32 rounding
    # (cuDNN sums in another order than the CPU) far past 1e-5 at the first layer's gradient, so sp_bn is
    # compared in float64 there, which shows the function is the same.
    dtype = torch.float64 if name == "sp_bn" else torch.float32
    plain.to(dtype).train(), fast.to(dtype).train()
    x = x.to(dtype)
    target = torch.randn(2, 4, device="cuda", dtype=dtype)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert rel_err(training_step(fast, x, target), training_step(plain, x, target)) < tol
    for (k, p), (_, q) in zip(plain.named_parameters(), fast.named_parameters(), strict=True):
        # float32 weight gradients are sums over the whole batch: cuDNN's algorithms differ by ~1e-6
        assert rel_err(q.grad, p.grad) < max(tol, 1e-4) or (q.grad - p.grad).abs().max() < 1e-9, k


@pytest.mark.skipif(not _rust_kernel_here(), reason="the fused Rust kernel needs AVX-512F")
def test_fused_kernel_rejects_bad_arguments():
    """Bad shapes reach Python as ValueError naming the argument, never a crash or a wrong result."""
    import numpy as np
    from c3d_distill import _native

    x = np.zeros((1, 4, 4, 4, 32), np.float32)
    w, b = np.zeros((32, 32, 3, 1, 1), np.float32), np.zeros(32, np.float32)
    out = np.zeros((1, 4, 2, 2, 32), np.float32)
    _native.kernel_temporal_conv_pool(x, w, b, out, pt=1, threads=1)  # the valid call
    bad = [
        (dict(x=np.zeros((1, 4, 4, 4, 16), np.float32)), "weight must be"),  # weight says 32 channels
        (dict(x=np.zeros((1, 4, 4, 4, 48), np.float32), w=np.zeros((32, 48, 3, 1, 1), np.float32)), "48"),
        (dict(w=np.zeros((32, 32, 1, 3, 1), np.float32)), "weight must be"),
        (dict(out=out[:, :2]), "out has shape"),
        (dict(x=np.zeros((1, 4, 4, 4, 64), np.float32)[..., ::2]), "C-contiguous"),
        (dict(pt=3, out=np.zeros((1, 1, 2, 2, 32), np.float32)), "temporal pool 3"),
        (dict(pt=0), "pt: temporal pool 0"),  # was a division by zero: a PanicException
        (dict(pt=2**40), "pt: temporal pool"),
        (dict(b=np.zeros(16, np.float32)), "bias"),
    ]
    for change, msg in bad:
        args = dict(x=x, w=w, b=b, out=out, pt=1)
        args.update(change)
        with pytest.raises(ValueError, match=msg):
            _native.kernel_temporal_conv_pool(args["x"], args["w"], args["b"], args["out"], pt=args["pt"], threads=1)
