"""``export_model`` and ``c3d-distill export``: each format round-trips a tiny network with a dynamic batch
(loaded back here independently of the exporter's own check), bad arguments and failed checks are clear
errors that leave nothing behind, and FILE.json says how to feed the file."""

from __future__ import annotations

import json
import os
import sys
import warnings

import pytest
import torch
from c3d_distill.export import FORMATS, ExportCheckError, ExportError, core, export_model
from c3d_distill.models import create_model

WIDTH = 0.125
FRAMES = 16
SIZE = 64


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(name: str, num_classes: int | None = 5, **kw):
    torch.manual_seed(0)
    return create_model(name, num_classes, width=WIDTH, frames=FRAMES, size=SIZE, **kw).eval()


def load_exported(fmt: str, path, output: str = "logits"):
    """The file as a deployment loads it, without the package's help."""
    if fmt == "onnx":
        import onnxruntime as ort

        ort_model = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(ort_model.run([output], {"clip": x.numpy()})[0])
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            return torch.jit.load(str(path))
    return torch.export.load(str(path)).module()


def rel_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["c3d", "sp", "mc4"])
def test_round_trip_with_a_dynamic_batch(tmp_path, name, fmt):
    model = tiny(name)  # built with its fast paths, as create_model does by default
    assert model.fast
    lines = []
    out = tmp_path / f"{name}.{fmt}"
    res = export_model(model, fmt, out, log=lines.append)
    assert out.is_file() and res.path == out
    assert [c.batch for c in res.checks] == [1, 3] and all(c.rel_error < 1e-4 for c in res.checks)
    assert sum(line.startswith(f"check {fmt}") and "max relative error" in line for line in lines) == 2
    assert model.fast, "the source model is left as it was"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, out.name + ".json"])
    # Batch sizes the export never saw, the file loaded back here.
    run = load_exported(fmt, out)
    for batch in (2, 5):
        x = torch.randn(batch, 3, FRAMES, SIZE, SIZE)
        with torch.no_grad():
            got, ref = run(x), model(x)
        assert got.shape == (batch, 5)
        assert rel_error(got, ref) < 1e-4


def test_features_of_a_network_without_classifier_and_of_one_with(tmp_path):
    headless = tiny("mc4", None)
    res = export_model(headless, "onnx", tmp_path / "mc4.onnx")
    assert res.output == "features" and res.output_shape == ["batch", headless.feature_dim]
    with pytest.raises(ValueError, match="output logits: mc4 has no classifier"):
        export_model(headless, "onnx", tmp_path / "x.onnx", output="logits")

    # A classifier network's pool5 features, for another clip shape (c3d's convs take any).
    model = tiny("c3d", 7)
    res = export_model(model, "pt2", tmp_path / "c3d.pt2", output="features", frames=32, size=48)
    assert res.input_shape == ["batch", 3, 32, 48, 48]
    x = torch.randn(2, 3, 32, 48, 48)
    plain = create_model("c3d", None, width=WIDTH, frames=32, size=48, fast=False).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("fc")})
    with torch.no_grad():
        assert rel_error(load_exported("pt2", res.path)(x), plain(x)) < 1e-4


def test_a_clip_shape_the_weights_do_not_fit_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"mc4 cannot take 32-frame .*2-D convs"):
        export_model(tiny("mc4", None), "onnx", tmp_path / "a.onnx", frames=32)
    with pytest.raises(ValueError, match=r"fc6 takes the .* pool5 features .*export the features"):
        export_model(tiny("c3d"), "onnx", tmp_path / "b.onnx", size=48)
    with pytest.raises(ValueError, match="frames: expected a positive multiple of 16"):
        export_model(tiny("c3d", None), "onnx", tmp_path / "c.onnx", frames=20)
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_and_unwritable_out(tmp_path):
    model = tiny("sp")
    with pytest.raises(ValueError, match="format: expected one of onnx, torchscript, pt2, got 'tflite'"):
        export_model(model, "tflite", tmp_path / "m.tflite")
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(OSError, match=r"afile/m.onnx: cannot write there: .*afile is not a folder"):
        export_model(model, "onnx", afile / "m.onnx")
    with pytest.raises(OSError, match=r"m.onnx: cannot write there: .*missing does not exist"):
        export_model(model, "onnx", tmp_path / "missing" / "m.onnx")
    with pytest.raises(OSError, match="is a folder; give the file to write"):
        export_model(model, "onnx", tmp_path)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError, match="cannot write there"):
            export_model(model, "onnx", locked / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] + (["locked"] if os.geteuid() else [])


def test_a_failed_check_is_an_error_and_keeps_nothing(tmp_path, monkeypatch):
    real = core._runner

    def off_by_a_little(fmt, path, output):
        run = real(fmt, path, output)
        return lambda x: run(x) * 1.001  # 1e-3 relative: ten times the tolerance

    monkeypatch.setattr(core, "_runner", off_by_a_little)
    out = tmp_path / "m.pt"
    with pytest.raises(
        ExportCheckError, match=r"m.pt: the exported torchscript model does not compute what sp"
    ):
        export_model(tiny("sp"), "torchscript", out)
    assert list(tmp_path.iterdir()) == []  # neither the file, nor its metadata, nor the staging folder
    assert ExportCheckError.exit_status == 1


def test_missing_onnxruntime_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.raises(
        ExportError, match=r'format onnx: needs onnxruntime.*pip install "c3d-distill\[export\]"'
    ):
        export_model(tiny("sp"), "onnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
    # The other formats need nothing but torch.
    export_model(tiny("sp"), "torchscript", tmp_path / "m.pt")


def test_metadata_says_how_to_feed_the_file(tmp_path):
    import onnxruntime as ort

    clip = {
        "frames": 16,
        "stride": 2,
        "size": (128, 171),
        "crop": 64,
        "mean": (0.43, 0.39, 0.37),
        "std": (0.22, 0.22, 0.21),
        "channels": "RGB",
        "dtype": "float32",
        "layout": "NCTHW",
    }
    source = {"path": "/runs/x/checkpoint.pt", "sha256": "ab" * 32}
    out = tmp_path / "mc4.onnx"
    res = export_model(tiny("mc4", 5), "onnx", out, clip=clip, source=source, opset=17)
    meta = json.loads((tmp_path / "mc4.onnx.json").read_text())
    assert res.metadata_path == tmp_path / "mc4.onnx.json" and meta == res.metadata
    assert meta["format"] == "onnx" and meta["file"] == "mc4.onnx" and meta["model"] == "mc4"
    assert meta["model_config"]["width"] == WIDTH and meta["model_config"]["num_classes"] == 5
    assert meta["input"]["shape"] == ["batch", 3, 16, SIZE, SIZE] and meta["input"]["layout"] == "NCTHW"
    assert meta["output"] == {"name": "logits", "shape": ["batch", 5], "dtype": "float32"}
    assert meta["clip"]["mean"] == [0.43, 0.39, 0.37] and meta["clip"]["size"] == [128, 171]
    assert meta["clip"]["channels"] == "RGB" and meta["clip"]["stride"] == 2
    assert meta["source"] == source
    assert meta["opset"] == 17 and [b["batch"] for b in meta["check"]["batches"]] == [1, 3]
    # What the metadata says is what the file is.
    ort_model = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = ort_model.get_inputs(), ort_model.get_outputs()
    assert inp.name == meta["input"]["name"] and outp.name == meta["output"]["name"]
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == meta["input"]["shape"][1:]
    import onnx

    assert onnx.load(str(out)).opset_import[0].version == 17


def test_an_opset_the_exporter_cannot_reach_is_refused(tmp_path):
    with pytest.raises(ExportError, match="opset 13: the ONNX exporter could not convert the graph"):
        export_model(tiny("c3d", None), "onnx", tmp_path / "m.onnx", opset=13)
    with pytest.raises(ValueError, match="opset: only for the onnx format"):
        export_model(tiny("c3d", None), "pt2", tmp_path / "m.pt2", opset=17)
    assert list(tmp_path.iterdir()) == []


# -- the command -----------------------------------------------------------------------------------------


def save_run(tmp_path, name="mc4", num_classes=4):
    """A run folder as train writes it (checkpoint.pt with model_meta and the run's config)."""
    from c3d_distill.runs import save_checkpoint
    from c3d_distill.runs.checkpoint import FORMAT

    model = tiny(name, num_classes)
    meta = dict(name=name, num_classes=num_classes, width=WIDTH, frames=FRAMES, size=SIZE, dropout=0.5)
    config = {"model": name, "width": WIDTH, "frames": FRAMES, "size": SIZE, "stride": 2}
    state = {"format": FORMAT, "model": model.state_dict(), "model_meta": meta, "epoch": 1, "config": config}
    path = save_checkpoint(state, tmp_path / "run" / "checkpoint.pt")
    return model, path


def sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_command_exports_a_run_folder(tmp_path, capsys):
    from c3d_distill.cli import main

    model, ckpt = save_run(tmp_path)
    out = tmp_path / "mc4.onnx"
    assert main(["export", str(ckpt.parent), "--format", "onnx", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    checks = [line for line in lines if line.startswith("check onnx")]
    assert [c.split(" batch ")[1].split(":")[0] for c in checks] == ["1", "3"]
    meta = json.loads((tmp_path / "mc4.onnx.json").read_text())
    assert meta["model"] == "mc4" and meta["input"]["shape"] == ["batch", 3, FRAMES, SIZE, SIZE]
    assert meta["output"]["shape"] == ["batch", 4]
    assert meta["source"]["sha256"] == sha256(ckpt) and meta["source"]["kind"] == "run"
    assert meta["clip"]["frames"] == FRAMES and meta["clip"]["stride"] == 2 and meta["clip"]["crop"] == SIZE
    assert {"mean", "std", "channels", "size"} <= set(meta["clip"])
    x = torch.randn(2, 3, FRAMES, SIZE, SIZE)
    with torch.no_grad():
        assert rel_error(load_exported("onnx", out)(x), model(x)) < 1e-4


def test_command_exports_a_public_state_dict(tmp_path, capsys):
    from c3d_distill.cli import main

    torch.manual_seed(0)
    c3d = create_model("c3d", 10, width=WIDTH).eval()  # the public layout: conv1 … fc8, 16×112×112
    public = tmp_path / "c3d.pickle"
    torch.save(c3d.state_dict(), public)
    out = tmp_path / "c3d.pt"
    assert main(["export", str(public), "--format", "torchscript", "--out", str(out)]) == 0
    meta = json.loads((tmp_path / "c3d.pt.json").read_text())
    assert meta["input"]["shape"] == ["batch", 3, 16, 112, 112] and meta["output"]["shape"] == ["batch", 10]
    assert meta["source"]["kind"] == "public" and meta["source"]["sha256"] == sha256(public)
    assert meta["model_config"]["width"] == WIDTH  # read from conv1's channels
    preset = meta["source"]["preset"]  # the c3d.pickle port's: RGB, 0-255 values fed as they are
    assert preset["name"] == "c3d-pickle" and preset["pixel_range"] == 255 and preset["channels"] == "RGB"
    assert meta["clip"]["std"] == pytest.approx([1 / 255] * 3) and meta["clip"]["size"] == [112, 200]

    # Its features at a smaller crop: the clip pipeline's resize scales with it.
    out = tmp_path / "c3d64.pt2"
    argv = ["export", str(public), "--format", "pt2", "--out", str(out), "--output", "features", "--size", "64"]
    assert main(argv) == 0
    small = json.loads((tmp_path / "c3d64.pt2.json").read_text())
    assert small["input"]["shape"] == ["batch", 3, 16, 64, 64] and small["output"]["name"] == "features"
    assert small["clip"]["crop"] == 64
    assert small["clip"]["size"] == [64, round(200 * 64 / 112)]
    # Logits at that crop cannot be: fc6 is sized for 112.
    capsys.readouterr()
    assert main(["export", str(public), "--format", "pt2", "--out", str(tmp_path / "x.pt2"), "--size", "64"]) == 2
    assert "fc6 takes the" in capsys.readouterr().err


def test_command_errors(tmp_path, capsys, monkeypatch):
    from c3d_distill.cli import main

    _, ckpt = save_run(tmp_path, "sp", 3)
    with pytest.raises(SystemExit) as exc:
        main(["export", str(ckpt), "--format", "tflite", "--out", str(tmp_path / "m")])
    assert exc.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    assert main(["export", str(ckpt), "--format", "pt2", "--out", str(tmp_path / "no" / "m.pt2")]) == 2
    assert "m.pt2: cannot write there" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing.pt"), "--format", "pt2", "--out", str(tmp_path / "m")]) == 2
    assert "nothing.pt" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert 'pip install "c3d-distill[export]"' in capsys.readouterr().err
    monkeypatch.undo()

    real = core._runner

    def negated(*args):
        run = real(*args)
        return lambda x: -run(x)

    monkeypatch.setattr(core, "_runner", negated)
    assert main(["export", str(ckpt), "--format", "pt2", "--out", str(tmp_path / "m.pt2")]) == 1
    err = capsys.readouterr().err
    assert "does not compute what sp does" in err and "nothing was written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_export_help_does_not_import_torch():
    import subprocess

    code = (
        "import sys\nfrom c3d_distill.cli import main\ntry:\n    main(['export', '--help'])\n"
        "except SystemExit as e:\n    print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', e.code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "NO-TORCH 0", proc.stderr


def test_the_metadata_feeds_the_exported_file_clips_of_a_real_video(tmp_path, h264_mp4):
    """A deployment that knows only FILE.json and the video: the clip it makes from the metadata, run
    through ONNX Runtime, gives the run's eager output on the clip load_model's settings make."""
    import numpy as np
    import onnxruntime as ort
    from c3d_distill import load_model
    from c3d_distill.cli import main
    from c3d_distill.clips import read_clips

    _, ckpt = save_run(tmp_path, "sp", 3)
    out = tmp_path / "sp.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    meta = json.loads((tmp_path / "sp.onnx.json").read_text())
    clip = dict(meta["clip"])
    frames, stride = clip.pop("frames"), clip.pop("stride")
    starts = (0, 20)
    x = read_clips([(h264_mp4, range(s, s + frames * stride, stride)) for s in starts], **clip)
    assert x.shape == (2, *meta["input"]["shape"][1:])
    ort_model = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = ort_model.run([meta["output"]["name"]], {meta["input"]["name"]: x})[0]

    model, settings = load_model(ckpt)
    settings = dict(settings)
    frames, stride = settings.pop("frames"), settings.pop("stride")
    ref_x = read_clips([(h264_mp4, range(s, s + frames * stride, stride)) for s in starts], **settings)
    np.testing.assert_array_equal(x, ref_x)
    with torch.no_grad():
        ref = model(torch.from_numpy(ref_x))
    assert rel_error(torch.from_numpy(got), ref) < 1e-4
