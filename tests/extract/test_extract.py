"""c3d-distill extract on real encoded video: each row is the network on the clip read_clips gives for
that start, the manifest tells where each row comes from, npy and h5 agree, a killed run resumes to the
same files, bad videos raise or are recorded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from c3d_distill import load_model
from c3d_distill.cli import main
from c3d_distill.clips import VideoReader, read_clips
from c3d_distill.extract import layer_outputs, read_manifest
from c3d_distill.models import create_model

sys.path.insert(0, str(Path(__file__).parents[1]))
import videogen  # noqa: E402


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A C3D at width 1/16 with a 5-class head, saved in the public c3d.pickle layout."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("src") / "c3d.pickle"
    torch.save(create_model("c3d", 5, width=0.0625, fast=False).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory, h264_mp4, mpeg4_avi, five_frames) -> Path:
    root = tmp_path_factory.mktemp("vids")
    (root / "a").mkdir()
    (root / "b").mkdir()
    shutil.copy(h264_mp4, root / "a" / "h264.mp4")
    shutil.copy(mpeg4_avi, root / "b" / "ucf.avi")
    shutil.copy(five_frames, root / "b" / "short.mp4")
    videogen.encode(root / "a" / "long.mp4", codec="libx264", bframes=2, gop=30, frames=100)
    return root


def all_videos(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.suffix in (".mp4", ".avi"))


def extract(argv: list[str], capsys=None) -> dict:
    if capsys is not None:
        capsys.readouterr()
    assert main(["extract", *argv, "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out) if capsys is not None else {}


def test_rows_are_the_network_on_the_clips_at_starts(source, videos, tmp_path, capsys):
    out = tmp_path / "feat"
    res = extract([str(source), "--videos", *all_videos(videos), "--out", str(out), "--layer", "pool5", "fc7",
                   "--stride", "12", "--batch-size", "3"], capsys)
    assert res["ok"] == 4 and res["failed"] == 0 and res["clips"] > 0
    header, rows = read_manifest(out / "manifest.jsonl")
    assert header["source_sha256"] and header["step"] == 12 and header["preprocess"]["name"] == "c3d-pickle"
    assert set(rows) == {"a/h264", "a/long", "b/ucf", "b/short"}
    model, clip = load_model(source)
    frames, stride = clip.pop("frames"), clip.pop("stride")
    for rel, row in rows.items():
        path = row["path"]
        reader = VideoReader(path)
        assert row["frames"] == reader.num_frames and row["fps"] == pytest.approx(reader.fps)
        n = reader.num_frames
        want_starts = list(range(0, n - frames + 1, 12)) if n >= frames else [0]
        assert row["starts"] == want_starts
        assert row["times"] == pytest.approx([float(reader.pts[s]) for s in want_starts], abs=1e-6)
        pool5 = np.load(out / f"{rel}.pool5.npy")
        fc7 = np.load(out / f"{rel}.fc7.npy")
        assert pool5.shape == (len(want_starts), model.feature_dim) and fc7.shape[0] == len(want_starts)
        assert row["shape"] == {"pool5": list(pool5.shape), "fc7": list(fc7.shape)}
        for k in (0, len(want_starts) - 1):  # first and last clip, read on their own
            idx = [min(want_starts[k] + i * stride, n - 1) for i in range(frames)]
            x = torch.from_numpy(read_clips([(path, idx)], **clip))
            with torch.no_grad():
                ref = layer_outputs(model, x, ["pool5", "fc7"])
            np.testing.assert_allclose(pool5[k], ref["pool5"][0].numpy(), rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(fc7[k], ref["fc7"][0].numpy(), rtol=1e-4, atol=1e-4)
    assert rows["b/short"]["starts"] == [0]  # 5 frames: one clip by --short repeat


def test_h5_and_npy_agree_and_settings_are_guarded(source, videos, tmp_path, capsys):
    vids = all_videos(videos)
    extract([str(source), "--videos", *vids, "--out", str(tmp_path / "n")], capsys)
    extract([str(source), "--videos", *vids, "--out", str(tmp_path / "h"), "--format", "h5"], capsys)
    import h5py

    with h5py.File(tmp_path / "h" / "features.h5") as f:
        names = set()
        f.visititems(lambda name, obj: names.add(name) if isinstance(obj, h5py.Dataset) else None)
        assert names == {"a/h264", "a/long", "b/ucf", "b/short"}
        for name in names:
            np.testing.assert_array_equal(f[name][()], np.load(tmp_path / "n" / f"{name}.npy"))
            assert list(f[name].attrs["starts"]) == read_manifest(tmp_path / "n" / "manifest.jsonl")[1][name]["starts"]
    assert not (tmp_path / "h" / ".parts").exists()
    # the same settings again: nothing to do; other settings: refused, then replaced with --overwrite
    res = extract([str(source), "--videos", *vids, "--out", str(tmp_path / "n")], capsys)
    assert res["skipped_done"] == 4 and res["clips"] == 0
    capsys.readouterr()
    assert main(["extract", str(source), "--videos", *vids, "--out", str(tmp_path / "n"), "--dtype", "float16",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "dtype: 'float32' → 'float16'" in err and "--overwrite" in err
    extract([str(source), "--videos", *vids, "--out", str(tmp_path / "n"), "--dtype", "float16", "--overwrite"],
            capsys)
    assert np.load(tmp_path / "n" / "a" / "h264.npy").dtype == np.float16


KILL = """
import os, signal, sys
import c3d_distill.extract.output as core
from c3d_distill.cli import main
where, after = sys.argv[1], int(sys.argv[2])
count = [0]
real_save, real_append = core._save_npy, core._fsync_append
def save(path, arr):
    if where == "save":
        count[0] += 1
        if count[0] == after:  # the bytes written under the temporary name, not yet renamed
            tmp = path.with_name(f".{path.name}.tmp"); path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(b"torn"); os.kill(os.getpid(), signal.SIGKILL)
    real_save(path, arr)
def append(path, line):
    if where == "append" and not line.get("header"):
        count[0] += 1
        if count[0] == after:  # the array renamed, its manifest line not yet written
            os.kill(os.getpid(), signal.SIGKILL)
    real_append(path, line)
core._save_npy, core._fsync_append = save, append
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("where", ["save", "append"])
def test_a_killed_run_resumes_to_the_same_files(source, videos, tmp_path, capsys, where):
    vids = all_videos(videos)
    ref = tmp_path / "ref"
    extract([str(source), "--videos", *vids, "--out", str(ref)], capsys)
    out = tmp_path / "killed"
    argv = ["extract", str(source), "--videos", *vids, "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILL, where, "2", *argv], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    _, rows = read_manifest(out / "manifest.jsonl")
    assert len(rows) == 1  # one video finished before the kill
    res = extract(argv[1:-1], capsys)
    assert res["ok"] == 4 and res["skipped_done"] == 1
    for rel in ("a/h264", "a/long", "b/ucf", "b/short"):
        np.testing.assert_array_equal(np.load(out / f"{rel}.npy"), np.load(ref / f"{rel}.npy"))
    assert not list(out.rglob("*.tmp"))
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["header"]


def test_bad_videos_raise_or_are_recorded(source, videos, broken, tmp_path, capsys):
    good = all_videos(videos)[:2]
    argv = [str(source), "--videos", *good, str(broken["random"]), str(broken["text_as_mp4"]), "--out"]
    capsys.readouterr()
    assert main(["extract", *argv, str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "random.avi" in err and "Traceback" not in err
    res = extract([*argv, str(tmp_path / "s"), "--on-error", "skip"], capsys)
    assert res["ok"] == 2 and res["failed"] == 2
    _, rows = read_manifest(tmp_path / "s" / "manifest.jsonl")
    failed = {r["path"]: r for r in rows.values() if r["status"] == "failed"}
    assert set(failed) == {str(broken["random"]), str(broken["text_as_mp4"])}
    assert all(r["reason"] for r in failed.values())
    ok = [rel for rel, r in rows.items() if r["status"] == "ok"]
    assert len(ok) == 2 and all((tmp_path / "s" / f"{rel}.npy").exists() for rel in ok)


def test_arguments_are_checked(source, videos, tmp_path, capsys):
    vids = all_videos(videos)[:1]
    for extra, words in (
        (["--clip-len", "8"], "--clip-len 8: the network takes clips of 16 frames"),
        (["--stride", "0"], "--stride"),
        (["--batch-size", "0"], "--batch-size"),
    ):
        capsys.readouterr()
        assert main(["extract", str(source), "--videos", *vids, "--out", str(tmp_path / "x"), *extra]) == 2
        assert words in capsys.readouterr().err
    headless = tmp_path / "headless.pt"
    sd = {k: v for k, v in create_model("c3d", None, width=0.0625).state_dict().items()}
    torch.save(sd, headless)
    capsys.readouterr()
    assert main(["extract", str(headless), "--videos", *vids, "--out", str(tmp_path / "y"), "--layer", "fc6"]) == 2
    assert "no fc6/fc7/fc8" in capsys.readouterr().err


def test_a_run_and_a_data_set(tiny_synth_root, tmp_path, capsys):
    """A run folder as the source and --data as the videos: names relative to the data root, the run's clips."""
    run = tmp_path / "run"
    assert main(["train", "--model", "mc4", "--data", f"synth:{tiny_synth_root}", "--out", str(run), "--width",
                 "0.0625", "--size", "16", "--epochs", "1", "--batch-size", "4", "--eval-clips", "1",
                 "--final-eval-clips", "1", "--no-progress"]) == 0
    res = extract([str(run), "--data", f"synth:{tiny_synth_root}", "--out", str(tmp_path / "f"), "--layer",
                   "logits"], capsys)
    assert res["ok"] == 24
    header, rows = read_manifest(tmp_path / "f" / "manifest.jsonl")
    assert header["model"] == "mc4" and header["preprocess"]["crop"] == 16
    rel = next(iter(rows))
    assert (tmp_path / "f" / f"{rel}.npy").exists() and not rel.startswith("/")
    assert np.load(tmp_path / "f" / f"{rel}.npy").shape[1] == 3



def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two fresh processes under torchrun
def test_torchrun_ranks_share_the_videos(source, videos, tmp_path, capsys):
    vids = all_videos(videos)
    ref = tmp_path / "one"
    extract([str(source), "--videos", *vids, "--out", str(ref)], capsys)
    out = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "c3d_distill", "extract", str(source), "--videos", *vids, "--out", str(out),
           "--no-progress"]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("manifest.jsonl*")) == ["manifest.jsonl"]  # the parts merged
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["world_size"] == 2
    assert [json.loads(x)["video"] for x in lines[1:]] == [json.loads(x)["video"] for x in
                                                           (ref / "manifest.jsonl").read_text().splitlines()[1:]]
    for rel in ("a/h264", "a/long", "b/ucf", "b/short"):
        np.testing.assert_allclose(np.load(out / f"{rel}.npy"), np.load(ref / f"{rel}.npy"), rtol=1e-5, atol=1e-5)
