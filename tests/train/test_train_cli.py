"""The train / distill / eval / report / demo commands end to end on a tiny synthetic set, plus --resume
and a SIGKILL in the middle of a run."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from c3d_distill.cli import main
from c3d_distill.runs.checkpoint import load_checkpoint

# Tiny everything: 3 classes × 8 videos of 64×48, ~1 s each; width 1/16, 16×16 crops.
SHAPE = ["--width", "0.0625", "--size", "16", "--batch-size", "4"]
FAST = [
    "--eval-clips",
    "1",
    "--final-eval-clips",
    "2",
    "--no-progress",
    "--lr",
    "0.002",
    "--optimizer",
    "adamw",
]
TEACHER_ARGS = SHAPE + FAST + ["--epochs", "2", "--seed", "3", "--dropout", "0.3", "--color-permute"]


@pytest.fixture(scope="module")
def synth(tiny_synth_root) -> str:
    return f"synth:{tiny_synth_root}"


@pytest.fixture(scope="module")
def teacher(synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "teacher"
    assert main(["train", "--model", "c3d", "--data", synth, "--out", str(out), *TEACHER_ARGS]) == 0
    return out


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def error(capsys, argv: list[str]) -> str:
    """Run a command that must fail: exit status 2, one `c3d-distill: error:` message, no traceback."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "c3d-distill: error: " in err and "Traceback" not in err, err  # (warnings may come first)
    return err


def test_train_writes_the_run_folder(teacher):
    assert {p.name for p in teacher.iterdir()} >= {
        "config.json",
        "checkpoint.pt",
        "metrics.jsonl",
        "eval.json",
    }
    r = rows(teacher)
    assert [(x["epoch"], x["split"]) for x in r] == [(1, "train"), (1, "test"), (2, "train"), (2, "test"),
                                                     (2, "final")]
    for x in r:
        assert {"loss", "ce", "top1", "clips_per_s", "time"} <= set(x)
    assert all("lr" in x for x in r if x["split"] == "train")
    assert r[-1]["clips"] == 6 * 2 and "video_acc" in r[-1]  # 6 test videos × 2 clips
    ev = json.loads((teacher / "eval.json").read_text())
    assert ev["model"] == "c3d" and ev["params"] > 0 and ev["gmacs"] > 0 and 0 <= ev["final_video_acc"] <= 1
    ck = load_checkpoint(teacher)
    assert ck["epoch"] == 2 and ck["model_meta"]["width"] == 0.0625 and len(ck["metrics"]) == 4


def test_resume_after_a_split_run_equals_one_run(teacher, synth, tmp_path):
    out = tmp_path / "split"
    args = ["train", "--model", "c3d", "--data", synth, "--out", str(out), *TEACHER_ARGS]
    assert main([*args, "--stop-after", "1"]) == 0
    assert load_checkpoint(out)["epoch"] == 1 and not (out / "eval.json").exists()
    assert main([*args, "--resume"]) == 0
    assert same_weights(weights(out), weights(teacher))
    drop = {"time", "time_total", "clips_per_s", "run"}
    assert [{k: v for k, v in x.items() if k not in drop} for x in rows(out)] == [
        {k: v for k, v in x.items() if k not in drop} for x in rows(teacher)
    ]


def test_resume_refuses_other_settings(teacher, synth, tmp_path, capsys):
    out = tmp_path / "other"
    args = ["train", "--model", "c3d", "--data", synth, "--out", str(out), *TEACHER_ARGS]
    main([*args, "--stop-after", "1"])
    assert "lr: 0.002 → 0.005" in error(capsys, [*args, "--lr", "0.005", "--resume"])


def test_a_folder_holding_a_run_is_refused_without_resume_or_overwrite(synth, tmp_path, capsys):
    out = tmp_path / "again"
    args = ["train", "--model", "c3d", "--data", synth, "--out", str(out), *SHAPE, *FAST, "--epochs", "1"]
    assert main(args) == 0
    names = ("config.json", "metrics.jsonl", "checkpoint.pt", "eval.json")
    before = {n: (out / n).read_bytes() for n in names}
    err = error(capsys, args)
    assert f"--out {out}: already holds a run (checkpoint.pt, config.json)" in err and "--overwrite" in err
    assert {n: (out / n).read_bytes() for n in names} == before  # untouched
    assert "--resume and --overwrite: choose one" in error(capsys, [*args, "--resume", "--overwrite"])
    assert "--force-resume and --overwrite: choose one" in error(capsys, [*args, "--force-resume", "--overwrite"])
    # --overwrite starts again: nothing of the old run survives (no stale eval.json, checkpoint or rows)
    assert main([*args, "--overwrite", "--stop-after", "0"]) == 0
    assert not (out / "eval.json").exists() and not (out / "checkpoint.pt").exists()
    assert (out / "metrics.jsonl").read_text() == "" and (out / "config.json").exists()
    # a config.json alone (a run stopped before its first checkpoint) is a run too
    assert "already holds a run (config.json)" in error(capsys, args)
    assert main([*args, "--resume"]) == 0 and (out / "eval.json").exists()


def test_resume_refuses_another_sampler_data_set_or_teacher(teacher, synth, tmp_path, capsys):
    out = tmp_path / "r"
    args = ["train", "--model", "c3d", "--data", synth, "--out", str(out), *SHAPE, *FAST, "--epochs", "2"]
    assert main([*args, "--stop-after", "1"]) == 0
    assert "sampler: 'random' → 'center'" in error(capsys, [*args, "--resume", "--sampler", "center"])
    err = error(capsys, [*args[:4], f"{synth}:2", *args[5:], "--resume"])  # fold 2: other videos
    assert "was trained on other inputs" in err and "training videos: checkpoint 18 videos" in err
    assert "--force-resume" in err
    assert main([*args[:4], f"{synth}:2", *args[5:], "--force-resume"]) == 0  # told to: continues
    assert "WARNING: --force-resume" in capsys.readouterr().err and load_checkpoint(out)["epoch"] == 2

    # a distilled run records its teacher's weights: another teacher at the same path is noticed
    from c3d_distill.runs.checkpoint import save_checkpoint

    ck = load_checkpoint(teacher)
    save_checkpoint(ck, tmp_path / "t.pt")
    dargs = ["distill", "--teacher", str(tmp_path / "t.pt"), "--student", "mc5", "--init", "random", "--data",
             synth, "--out", str(tmp_path / "d"), "--epochs", "2", *FAST]
    assert main([*dargs, "--stop-after", "1"]) == 0
    ck["model"]["conv1.bias"] += 1.0
    save_checkpoint(ck, tmp_path / "t.pt")
    assert "teacher weights: checkpoint " in error(capsys, [*dargs, "--resume"])


@pytest.mark.slow  # a fresh process (torch import) plus a resumed run
def test_sigkill_mid_run_leaves_a_checkpoint_that_resumes_to_the_same_weights(teacher, synth, tmp_path):
    out = tmp_path / "killed"
    args = ["train", "--model", "c3d", "--data", synth, "--out", str(out), *TEACHER_ARGS]
    proc = subprocess.Popen(
        [sys.executable, "-m", "c3d_distill", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        time.sleep(random.Random(os.getpid()).uniform(0.0, 1.0))  # somewhere in epoch 2 (or its checkpoint)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    ck = load_checkpoint(out)  # loads: the file is either the old or the new checkpoint, never torn
    assert 1 <= ck["epoch"] <= 2
    assert main([*args, "--resume"]) == 0
    assert same_weights(weights(out), weights(teacher))


@pytest.mark.parametrize(
    "student,init,loss,extra",
    [
        ("mc4", "transfer", "feature", ["--hints"]),
        ("sp", "transfer", None, []),  # the default loss: the teacher has a classifier, so feature+kd
        (
            "sp_bn",
            "random",
            "kd",
            ["--crop-mode", "center", "--no-flip", "--sampler", "center", "--teacher-cache"],
        ),
    ],
)
def test_distill(teacher, synth, tmp_path, student, init, loss, extra):
    out = tmp_path / f"{student}_{init}"
    assert (
        main(
            [
                "distill",
                "--teacher",
                str(teacher),
                "--student",
                student,
                "--init",
                init,
                *(["--loss", loss] if loss else []),
                "--data",
                synth,
                "--out",
                str(out),
                "--epochs",
                "2",
                *FAST,
                *extra,
            ]
        )
        == 0
    )
    ev = json.loads((out / "eval.json").read_text())
    assert ev["model"] == student and ev["init"] == init and 0 <= ev["final_feature_err"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["width"] == 0.0625 and cfg["size"] == 16  # taken from the teacher
    train_rows = [r for r in rows(out) if r["split"] == "train"]
    if loss is None:
        assert cfg["loss"] == "feature+kd" and {"feature", "kl", "ce"} <= set(train_rows[0])
    elif loss == "feature":
        assert (out / "transfer.json").exists()
        assert {"feature", "hint", "ce"} <= set(train_rows[0])
        # the frozen head is the teacher's
        s, t = weights(out), weights(teacher)
        assert all(torch.equal(s[k], t[k]) for k in ("fc6.weight", "fc7.bias", "fc8.weight"))
    else:
        assert {"kl", "ce"} <= set(train_rows[0]) and "feature" not in train_rows[0]
        # epoch 2 used the cached teacher outputs of epoch 1 (same clips: centre sampler and crop)
        # (16 of the 18 videos per epoch, drop_last: at least 14 repeat) + all 6 test clips of epoch 2
        assert ev["teacher_cache"]["hits"] >= 14 + 6
        assert ev["teacher_cache"]["not_stored"] == 0 and ev["teacher_cache"]["limit_mb"] == 2048


def test_distill_errors_name_the_option(teacher, synth, tmp_path, capsys):
    base = ["distill", "--data", synth, "--out", str(tmp_path / "x"), "--epochs", "1", *FAST]
    assert "no such checkpoint" in error(capsys, [*base, "--teacher", str(tmp_path / "nope")])
    assert "--teacher-cache: needs deterministic crops" in error(
        capsys, [*base, "--teacher", str(teacher), "--teacher-cache"]
    )
    assert "--teacher-cache: needs a deterministic sampler (--sampler center or uniform)" in error(
        capsys, [*base, "--teacher", str(teacher), "--teacher-cache", "--crop-mode", "center", "--no-flip"]
    )
    assert "--width 0.125: the teacher was trained with width=0.0625" in error(
        capsys, [*base, "--teacher", str(teacher), "--width", "0.125"]
    )
    assert not (tmp_path / "x").exists()  # refused before anything was written: no empty run folder
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):  # --debug: the exception itself
        main(["--debug", *base, "--teacher", str(tmp_path / "nope")])


def test_distill_starts_from_the_file_transfer_writes(teacher, synth, tmp_path, capsys):
    init = tmp_path / "mc4_init.pt"
    assert main(["transfer", "--teacher", str(teacher), "--student", "mc4", "--out", str(init)]) == 0
    base = ["distill", "--teacher", str(teacher), "--data", synth, "--epochs", "1", *FAST]
    out = tmp_path / "from_file"
    assert main([*base, "--student", "mc4", "--init", str(init), "--out", str(out), "--stop-after", "0"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["init"] == str(init)
    file = load_checkpoint(init)
    assert json.loads((out / "transfer.json").read_text()) == file["transfer"]  # its report, kept
    # the student is the file's (the head too: the teacher's, which transfer copied)
    from c3d_distill.runs.config import RunConfig
    from c3d_distill.runs.model import load_run_model
    from c3d_distill.train.students import student_from_file

    t, tmeta, _ = load_run_model(teacher)
    student, report = student_from_file(RunConfig.from_dict(cfg), t, tmeta)
    assert same_weights(student.state_dict(), file["model"]) and report == file["transfer"]
    assert main([*base, "--student", "mc4", "--init", str(init), "--out", str(out), "--overwrite"]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "| mc4 | mc4_init.pt | feature+kd |" in (tmp_path / "rep" / "table.md").read_text()
    init.rename(tmp_path / "moved.pt")  # the finished run no longer needs the file
    assert main(["eval", str(out), "--data", synth, "--clips", "1", "--no-progress"]) == 0
    (tmp_path / "moved.pt").rename(init)
    assert "was made from another teacher" not in capsys.readouterr().err
    from c3d_distill.runs.checkpoint import save_checkpoint

    other = load_checkpoint(teacher)
    other["model"]["conv1.bias"] += 1.0
    save_checkpoint(other, tmp_path / "other.pt")
    assert main([*base[:2], str(tmp_path / "other.pt"), *base[3:], "--student", "mc4", "--init", str(init),
                 "--out", str(tmp_path / "o"), "--stop-after", "0"]) == 0
    assert "was made from another teacher" in capsys.readouterr().err
    # a file for another student, or no file, is refused naming what differs
    err = error(capsys, [*base, "--student", "sp", "--init", str(init), "--out", str(tmp_path / "x")])
    assert "name: the file has 'mc4', this run needs 'sp'" in err and "c3d-distill transfer" in err
    err = error(capsys, [*base, "--student", "mc4", "--init", str(tmp_path / "nope.pt"), "--out",
                         str(tmp_path / "x")])
    assert "is neither transfer, random nor a student checkpoint file" in err


def test_resume_with_init_file_needs_neither_the_file_nor_the_same_working_directory(
    teacher, synth, tmp_path, capsys, monkeypatch
):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert main(["transfer", "--teacher", str(teacher), "--student", "mc4", "--out",
                 str(tmp_path / "a" / "init.pt")]) == 0
    monkeypatch.chdir(tmp_path / "a")
    out = tmp_path / "run"
    base = ["distill", "--teacher", str(teacher), "--student", "mc4", "--data", synth, "--epochs", "2", *FAST,
            "--out", str(out)]
    assert main([*base, "--init", "init.pt", "--stop-after", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["init"] == str(tmp_path / "a" / "init.pt")
    monkeypatch.chdir(tmp_path / "b")
    (tmp_path / "a" / "init.pt").rename(tmp_path / "b" / "gone.pt")  # moved away: not needed to resume
    assert main([*base, "--init", "init.pt", "--resume"]) == 0
    assert load_checkpoint(out)["epoch"] == 2
    assert json.loads((out / "config.json").read_text())["init"] == str(tmp_path / "a" / "init.pt")
    # a run folder is a student file too (its checkpoint.pt)
    (tmp_path / "folder").mkdir()
    (tmp_path / "b" / "gone.pt").rename(tmp_path / "folder" / "checkpoint.pt")
    assert main([*base[:-1], str(tmp_path / "r2"), "--init", "../folder", "--stop-after", "0"]) == 0
    assert json.loads((tmp_path / "r2" / "config.json").read_text())["init"] == str(tmp_path / "folder")
    # switching between transfer and a file is still another run
    assert "init: " in error(capsys, [*base, "--init", "transfer", "--resume"])


def test_a_teacher_cache_run_started_with_sampler_random_can_be_resumed(teacher, synth, tmp_path, capsys):
    from c3d_distill.runs.checkpoint import save_checkpoint

    tck = load_checkpoint(teacher)
    tck["config"].update(stride=2, resize=[20, 27])
    save_checkpoint(tck, tmp_path / "t.pt")
    out = tmp_path / "cached"
    args = ["distill", "--teacher", str(tmp_path / "t.pt"), "--student", "mc4", "--init", "random", "--data",
            synth, "--out", str(out), "--epochs", "2", *FAST, "--loss", "kd", "--teacher-cache", "--crop-mode",
            "center", "--no-flip"]
    assert main([*args, "--sampler", "center", "--stop-after", "1"]) == 0
    # as a run started before --teacher-cache refused --sampler random (valid then) left it
    ck = load_checkpoint(out)
    ck["config"]["sampler"] = "random"
    save_checkpoint(ck, out / "checkpoint.pt")
    assert "--teacher-cache: needs a deterministic sampler" in error(capsys, [*args, "--out", str(tmp_path / "new")])
    # the teacher's clip settings changed since: the resumed run keeps the ones it was started with
    tck["config"].update(stride=1, resize=[19, 26])
    save_checkpoint(tck, tmp_path / "t.pt")
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert "WARNING: --teacher-cache with --sampler random: the resumed run was started so" in capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert load_checkpoint(out)["epoch"] == 2 and (cfg["stride"], cfg["resize"]) == (2, [20, 27])


def test_distill_makes_its_clips_the_way_the_teacher_was_trained(teacher, synth, tmp_path, capsys):
    from c3d_distill.runs.checkpoint import save_checkpoint

    ck = load_checkpoint(teacher)
    ck["config"].update(stride=2, resize=[20, 27], mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    save_checkpoint(ck, tmp_path / "t2.pt")
    base = ["distill", "--teacher", str(tmp_path / "t2.pt"), "--student", "mc4", "--init", "random", "--data",
            synth, "--epochs", "1", "--stop-after", "0", *FAST]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (cfg["stride"], cfg["resize"], cfg["mean"], cfg["std"]) == (2, [20, 27], [0.5] * 3, [0.25] * 3)
    assert "WARNING" not in capsys.readouterr().err
    # an explicit other stride is allowed (another frame rate can need it), with a warning
    assert main([*base, "--out", str(tmp_path / "b"), "--stride", "1"]) == 0
    assert "--stride 1: the teacher was trained with stride 2; it will see motion 0.5× as fast" in capsys.readouterr().err
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["stride"] == 1 and cfg["resize"] == [20, 27] and "stride_given" not in cfg["extra"]
    # a checkpoint without a run config: this run's settings, and a warning that says so
    del ck["config"]
    save_checkpoint(ck, tmp_path / "t3.pt")
    base[2] = str(tmp_path / "t3.pt")
    assert main([*base, "--out", str(tmp_path / "c")]) == 0
    assert "records no run config" in capsys.readouterr().err


def test_eval_counts_test_videos_the_run_was_trained_on(teacher, synth, tmp_path, capsys):
    res = tmp_path / "e.json"
    args = ["eval", str(teacher), "--data", f"{synth}:2", "--clips", "1", "--json", str(res), "--no-progress"]
    assert main(args) == 0  # fold 2's test videos are fold 1's training videos (another split, same videos)
    out = json.loads(res.read_text())
    assert out["held_out"] is False and out["test_videos_also_in_training"] == out["videos"] == 6
    assert "these are the videos" in capsys.readouterr().err
    assert main([*args[:3], synth, *args[4:]]) == 0  # fold 1's own test split
    out = json.loads(res.read_text())
    assert out["held_out"] is True and out["test_videos_also_in_training"] == 0
    # a checkpoint recording only the whole set's fingerprint cannot tell: unknown, not held out
    from c3d_distill.runs.checkpoint import save_checkpoint

    ck = load_checkpoint(teacher)
    del ck["inputs"]["train_data"]["video_hashes"]
    save_checkpoint(ck, tmp_path / "old.pt")
    assert main([*args[:1], str(tmp_path / "old.pt"), *args[2:]]) == 0
    assert json.loads(res.read_text())["held_out"] is None


def test_eval_command(teacher, synth, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval",
                str(teacher / "checkpoint.pt"),
                "--data",
                synth,
                "--teacher",
                str(teacher),
                "--clips",
                "3",
                "--json",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert res["clips"] == 6 * 3 and res["videos"] == 6 and res["clips_per_video"] == 3
    assert res["feature_err"] == 0.0  # the teacher against itself
    assert {"top1", "top5", "video_acc", "ce", "clips_per_s", "params", "gmacs"} <= set(res)
    assert json.loads(capsys.readouterr().out) == res


@pytest.fixture(scope="module")
def lists(tiny_synth_root, tmp_path_factory) -> dict[str, str]:
    """The tiny set's fold-1 train and test videos as two list: files sharing one classes.txt."""
    from c3d_distill.datasets import load

    d = tmp_path_factory.mktemp("lists")
    for split in ("train", "test"):
        vl = load(f"synth:{tiny_synth_root}", split)
        (d / f"{split}.txt").write_text("".join(f"{p} {vl.classes[y]}\n" for p, y in vl.items))
        (d / "classes.txt").write_text("".join(c + "\n" for c in vl.classes))
    return {split: f"list:{d / f'{split}.txt'}" for split in ("train", "test")}


def test_list_data_needs_its_test_videos_named(lists, tmp_path, capsys):
    out = tmp_path / "l"
    args = ["train", "--model", "c3d", "--data", lists["train"], "--out", str(out), *SHAPE, *FAST,
            "--epochs", "1"]
    err = error(capsys, args)
    assert "is one split" in err and "--test-data list:TEST_FILE" in err and not out.exists()
    assert "--test-split test: " in error(capsys, [*args, "--test-split", "test"])  # a list has no splits
    # held-out videos from their own list
    assert main([*args, "--test-data", lists["test"]]) == 0
    ev = json.loads((out / "eval.json").read_text())
    assert ev["held_out"] is True and ev["test_videos"] == 6 and ev["test_data"] == lists["test"]
    assert "NOT held out" not in capsys.readouterr().out
    # the training list again: allowed when asked for, and labelled everywhere as not held out
    assert main([*args, "--test-data", lists["train"], "--overwrite"]) == 0
    cap = capsys.readouterr()
    assert "18 of the 18 test videos" in cap.err and "not a held-out score" in cap.err
    assert "NOT held out" in cap.out
    ev = json.loads((out / "eval.json").read_text())
    assert ev["held_out"] is False and ev["test_videos_also_in_training"] == 18
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "† not held out" in (tmp_path / "rep" / "table.md").read_text()
    # eval knows the videos the run was trained on (the checkpoint records their fingerprint)
    res = tmp_path / "e.json"
    assert main(["eval", str(out), "--data", lists["train"], "--clips", "1", "--json", str(res),
                 "--no-progress"]) == 0
    assert json.loads(res.read_text())["held_out"] is False and json.loads(res.read_text())["split"] is None
    assert "these are the videos" in capsys.readouterr().err
    assert main(["eval", str(out), "--data", lists["test"], "--clips", "1", "--json", str(res),
                 "--no-progress"]) == 0
    assert json.loads(res.read_text())["held_out"] is True
    assert "--split test: " in error(capsys, ["eval", str(out), "--data", lists["test"], "--split", "test"])


def test_on_error_skip_leaves_a_corrupt_video_out_and_names_it(lists, teacher, tmp_path, capsys):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF" + bytes(range(256)) * 40)  # an .avi that is not a video
    train = Path(lists["train"][5:])
    (tmp_path / "classes.txt").write_text((train.parent / "classes.txt").read_text())
    lines = train.read_text().splitlines()
    (tmp_path / "train.txt").write_text("\n".join([*lines, f"{bad} {lines[0].split()[-1]}"]) + "\n")
    args = ["train", "--model", "c3d", "--data", f"list:{tmp_path / 'train.txt'}", "--test-data", lists["test"],
            "--out", str(tmp_path / "run"), *SHAPE, *FAST, "--epochs", "1", "--batch-size", "19"]
    err = error(capsys, args)  # default --on-error raise: the run stops, naming the file
    assert "broken.avi" in err
    assert main([*args, "--on-error", "skip", "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: --on-error skip: 1 unreadable video(s) left out of the training clips" in err
    assert err.count("broken.avi") >= 1
    r = rows(tmp_path / "run")
    assert r[0]["split"] == "train" and r[0]["skipped_clips"] == 1 and r[0]["clips"] == 18
    assert r[1]["skipped_clips"] == 0
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert ev["unreadable_videos"] == [str(bad)]
    # eval too
    (tmp_path / "ev.txt").write_text(f"{bad} {lines[0].split()[-1]}\n" + "\n".join(lines) + "\n")
    res = tmp_path / "e.json"
    assert main(["eval", str(teacher), "--data", f"list:{tmp_path / 'ev.txt'}", "--clips", "1",
                 "--on-error", "skip", "--json", str(res), "--no-progress"]) == 0
    out = json.loads(res.read_text())
    assert out["skipped_clips"] == 1 and out["clips"] == 18


def test_on_error_skip_counts_clips_of_batches_that_lost_every_clip(lists, teacher, tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    test = Path(lists["test"][5:])
    (tmp_path / "classes.txt").write_text((test.parent / "classes.txt").read_text())
    lines = test.read_text().splitlines()
    (tmp_path / "ev.txt").write_text("\n".join([f"{bad} {lines[0].split()[-1]}", *lines]) + "\n")
    res = tmp_path / "e.json"
    # the bad video's 10 clips fill the first batch of 8 (never yielded) and 2 of the next
    assert main(["eval", str(teacher), "--data", f"list:{tmp_path / 'ev.txt'}", "--clips", "10", "--batch-size",
                 "8", "--on-error", "skip", "--json", str(res), "--no-progress"]) == 0
    out = json.loads(res.read_text())
    assert out["skipped_clips"] == 10 and out["clips"] == 60
    # a run with one clip per batch: the bad file's batches are never yielded, yet it is named
    train = Path(lists["train"][5:]).read_text().splitlines()
    (tmp_path / "train.txt").write_text("\n".join([*train, f"{bad} {train[0].split()[-1]}"]) + "\n")
    run = tmp_path / "run"
    assert main(["train", "--model", "c3d", "--data", f"list:{tmp_path / 'train.txt'}", "--test-data",
                 f"list:{tmp_path / 'ev.txt'}", "--out", str(run), *SHAPE, *FAST, "--epochs", "1",
                 "--batch-size", "1", "--on-error", "skip", "--final-eval-clips", "1"]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["unreadable_videos"] == [str(bad)] and ev["final_skipped_clips"] == 1
    assert rows(run)[0]["skipped_clips"] == 1 and rows(run)[1]["skipped_clips"] == 1


def test_short_error_with_on_error_skip_names_short_videos_as_short(synth, tmp_path, capsys):
    args = ["train", "--model", "c3d", "--data", synth, "--out", str(tmp_path / "e"), *SHAPE, *FAST,
            "--stride", "2", "--short", "error", "--on-error", "skip"]
    err = error(capsys, args)  # not left out as "unreadable": refused before the run, each one named
    assert "--short error: 24 video(s) shorter than a clip" in err and "unreadable" not in err


def test_short_videos_are_counted_and_can_be_refused(synth, teacher, tmp_path, capsys):
    # the tiny set's videos have 20-25 frames: 16 frames at stride 2 span 31
    args = ["train", "--model", "c3d", "--data", synth, "--out", str(tmp_path / "s"), *SHAPE, *FAST,
            "--epochs", "2", "--stride", "2"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("are shorter than a clip (16 frames × stride 2 = 31 frames): padded by repeating") == 2
    r = rows(tmp_path / "s")
    assert [x["short_videos"] for x in r] == [16, 6, 16, 6, 6]  # per epoch (drop_last: 16 of 18), test, final
    err = error(capsys, [*args[:-4], "--stride", "2", "--short", "error", "--out", str(tmp_path / "e")])
    assert "--short error: 24 video(s) shorter than a clip" in err and ".avi: 2" in err
    assert not (tmp_path / "e").exists()
    err = error(capsys, ["distill", "--teacher", str(teacher), "--student", "mc5", "--data", synth, "--out",
                         str(tmp_path / "e"), *FAST, "--stride", "2", "--short", "error"])
    assert "--short error: 24 video(s) shorter than a clip" in err  # checked before the transfer's probe
    assert main([*args, "--short", "loop", "--overwrite", "--epochs", "1"]) == 0
    assert "looped from their start (--short loop" in capsys.readouterr().err
    assert json.loads((tmp_path / "s" / "config.json").read_text())["short"] == "loop"


def test_test_data_must_have_the_same_classes(lists, synth, tmp_path, capsys):
    other = tmp_path / "two.txt"
    lines = Path(lists["test"][5:]).read_text().splitlines()
    other.write_text("\n".join(x for x in lines if not x.endswith(lines[0].split()[-1])) + "\n")
    err = error(capsys, ["train", "--data", lists["train"], "--test-data", f"list:{other}", "--out",
                         str(tmp_path / "x"), *SHAPE, *FAST])
    assert "its classes differ from the training data's" in err  # 2 classes (no classes.txt there) vs 3


def test_help_describes_the_data_options(capsys):
    for cmd in ("train", "distill", "eval"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "ucf101:ROOT[:FOLD]" in text and "[:SPLIT]" not in text and "list:FILE" in text
        if cmd != "eval":
            for opt in ("--test-data SPEC", "--train-split TRAIN_SPLIT split of the fold",
                        "--test-split TEST_SPLIT split of the fold", "--sampler {random,uniform,center} how"):
                assert opt in text, (cmd, opt)


def test_eval_teacher_of_another_width_is_refused_clearly(teacher, synth, tmp_path, capsys):
    from c3d_distill.models import create_model
    from c3d_distill.runs.checkpoint import FORMAT, save_checkpoint

    meta = dict(load_checkpoint(teacher)["model_meta"], width=0.125)
    wide = create_model("c3d", 3, width=0.125, frames=16, size=16)
    save_checkpoint({"format": FORMAT, "model": wide.state_dict(), "model_meta": meta}, tmp_path / "wide.pt")
    err = error(capsys, ["eval", str(teacher), "--data", synth, "--teacher", str(tmp_path / "wide.pt"),
                         "--clips", "1", "--no-progress"])
    assert "width=0.125 but the evaluated model has width=0.0625" in err
    assert f"pool5 features have {wide.feature_dim} values, the evaluated model's {wide.feature_dim // 2}" in err


def test_report_command(teacher, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(teacher), "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    assert "| c3d | none | ce |" in table and table in capsys.readouterr().out
    for name in ("loss_per_model.png", "loss_all.png", "test_loss_all.png", "accuracy.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert re.search("not a run folder|no config.json", error(capsys, ["report", str(tmp_path), "--out", str(out)]))


def test_demo_checks_its_settings_before_anything_runs(synth, tmp_path, capsys):
    out = tmp_path / "demo"
    base = ["demo", "--out", str(out), "--data", synth, "--no-progress", "--teacher-epochs", "1"]
    err = error(capsys, [*base, "--students", "sp,resnet"])
    assert "--students: 'resnet' not a student model" in err and not (out / "runs").exists()
    assert "--students: no student named" in error(capsys, [*base, "--students", " , "])
    assert "--students: sp named twice" in error(capsys, [*base, "--students", "sp, sp"])
    assert "--epochs: must be at least 1" in error(capsys, [*base, "--student-epochs", "0"])
    assert not (out / "runs").exists()  # no teacher was trained for any of these
    from c3d_distill.demo import check_students

    assert check_students([" mc4", "sp_bn "]) == ["mc4", "sp_bn"]  # spaces are stripped


def test_demo_command(synth, tmp_path):
    out = tmp_path / "demo"
    args = [
        "demo",
        "--out",
        str(out),
        "--data",
        synth,
        "--students",
        "sp",
        "--teacher-epochs",
        "1",
        "--student-epochs",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    summary = json.loads((out / "demo.json").read_text())
    assert [(r["model"], r["init"]) for r in summary["rows"]] == [
        ("c3d", "none"),
        ("sp", "transfer"),
        ("sp", "random"),
    ]
    assert all(r["finished"] and r["clip_acc"] is not None for r in summary["rows"])
    assert (out / "report" / "test_loss_teacher_vs_sp.png").exists()
    stamp = (out / "runs" / "teacher_c3d" / "eval.json").stat().st_mtime_ns
    assert main(args) == 0  # finished runs are reused
    assert (out / "runs" / "teacher_c3d" / "eval.json").stat().st_mtime_ns == stamp


def test_an_unknown_model_name_is_refused_before_the_data_is_read(tmp_path, capsys):
    missing = str(tmp_path / "no-such-set")
    assert main(["train", "--model", "c4d", "--data", f"ucf101:{missing}", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--model: unknown model 'c4d'" in err and "no-such-set" not in err
    assert main(["distill", "--student", "mc9", "--teacher", str(tmp_path / "t.pt"), "--data",
                 f"ucf101:{missing}", "--out", str(tmp_path / "d")]) == 2
    assert "--student: unknown model 'mc9'" in capsys.readouterr().err
