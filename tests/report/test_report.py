"""`c3d-distill report` on small hand-made run folders (config.json, metrics.jsonl, eval.json): which run is
the teacher, --teacher, runs of the same name in two folders, folders that are not runs or are broken,
the README's `report rr/* --out rr/report` pattern, --out naming a file, integer epoch ticks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from c3d_distill.cli import main
from c3d_distill.report import plots as report_plots
from c3d_distill.report import report
from c3d_distill.report import runs as report_runs

EPOCHS = 2


def make_run(
    parent: Path,
    name: str,
    *,
    mode: str = "distill",
    model: str = "sp",
    init: str = "transfer",
    epochs: int = EPOCHS,
    finished: bool = True,
) -> Path:
    """A run folder with what `report` reads: config.json, one train and one test metrics row per
    epoch, and eval.json."""
    d = parent / name
    d.mkdir(parents=True)
    loss = "ce" if mode == "train" else "feature"
    cfg = {
        "mode": mode,
        "model": model,
        "init": init,
        "loss": loss,
        "hints": False,
        "epochs": epochs,
        "num_classes": 10,
    }
    (d / "config.json").write_text(json.dumps(cfg))
    rows = []
    for e in range(1, epochs + 1):
        for split in ("train", "test"):
            rows.append(
                {
                    "run": name,
                    "model": model,
                    "epoch": e,
                    "split": split,
                    "ce": 2.0 / e,
                    "loss": 1.0 / e,
                    "top1": 0.1 * e,
                }
            )
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        ev = {
            "run": name,
            "mode": mode,
            "model": model,
            "init": init if mode == "distill" else "none",
            "loss": loss,
            "epochs": epochs,
            "params": 600530,
            "gmacs": 0.031,
            "train_clips_per_s": 70.0,
            "final_clips_per_s": 200.0,
            "final_top1": 0.3,
            "final_top5": 0.7,
            "final_video_acc": 0.3,
            "final_ce": 2.4,
            "final_feature_err": None if mode == "train" else 0.3,
        }
        (d / "eval.json").write_text(json.dumps(ev))
    return d


def make_study(parent: Path) -> Path:
    """A teacher and two sp students, like a small demo."""
    make_run(parent, "teacher_c3d", mode="train", model="c3d")
    make_run(parent, "sp_transfer")
    make_run(parent, "sp_random", init="random")
    return parent


REAL_SAVE = report_plots._save


@pytest.fixture(autouse=True)
def plots(monkeypatch):
    """What every plot of a report draws, by file name: per axes its title, x ticks and lines
    (label, colour, marker). The PNG files are left empty (drawing them takes most of a report's time),
    except in the test that restores ``REAL_SAVE``."""
    drawn: dict[str, list[dict]] = {}

    def record(fig, path):
        drawn[Path(path).name] = [
            {
                "title": ax.get_title(),
                "xticks": [float(t) for t in ax.get_xticks()],
                "lines": [
                    (ln.get_label(), tuple(float(c) for c in ln.get_color()[:3]), ln.get_marker())
                    for ln in ax.get_lines()
                    if not ln.get_label().startswith("_")
                    and ln.get_label() not in ("chance", "train", "test")
                ],
            }
            for ax in fig.axes
        ]
        import matplotlib.pyplot as plt

        plt.close(fig)
        Path(path).write_bytes(b"")
        return path

    monkeypatch.setattr(report_plots, "_save", record)
    return drawn


def labels(drawn, name: str) -> list[str]:
    return [ln[0] for ax in drawn[name] for ln in ax["lines"]]


def ok(capsys, argv: list[str]) -> tuple[str, str]:
    capsys.readouterr()
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return cap.out, cap.err


def error(capsys, argv: list[str]) -> str:
    """A command that must fail: exit status 2, one `c3d-distill: error:` line, no traceback."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "c3d-distill: error: " in err and "Traceback" not in err, err
    return next(line for line in err.splitlines() if line.startswith("c3d-distill: error: "))


# 1. ------------------------------------------------------------------------------------------------


def test_a_student_trained_from_random_init_is_no_teacher(tmp_path, plots, capsys):
    runs = make_study(tmp_path / "runs")
    make_run(runs, "sp_trained", mode="train", model="sp")
    out, _ = ok(capsys, ["report", str(runs), "--out", str(tmp_path / "rep")])
    teacher_vs_sp = labels(plots, "test_loss_teacher_vs_sp.png")
    assert teacher_vs_sp[0] == "c3d (teacher)"
    assert "sp (trained)" in teacher_vs_sp and "sp (teacher)" not in teacher_vs_sp
    assert sorted(teacher_vs_sp[1:]) == ["sp (trained)", "sp random", "sp transfer"]
    rows = {r["run"]: r for r in json.loads((tmp_path / "rep" / "table.json").read_text())}
    assert rows["sp_trained"]["init"] == "none" and rows["teacher_c3d"]["init"] == "none"
    assert "| sp | none | ce |" in out


# 2. ------------------------------------------------------------------------------------------------


def test_teacher_by_name_or_path_and_unknown_names_are_errors(tmp_path, plots, capsys):
    runs = make_study(tmp_path / "runs")
    rep = str(tmp_path / "rep")
    err = error(capsys, ["report", str(runs), "--out", rep, "--teacher", "nope"])
    assert "--teacher nope" in err and "teacher_c3d, sp_transfer, sp_random" in err
    assert not (tmp_path / "rep").exists()

    ok(capsys, ["report", str(runs), "--out", rep, "--teacher", str(runs / "teacher_c3d")])
    assert labels(plots, "test_loss_teacher_vs_sp.png")[0] == "c3d (teacher)"

    # A student named as the teacher is drawn once, first.
    ok(capsys, ["report", str(runs), "--out", rep, "--teacher", "sp_transfer"])
    assert labels(plots, "test_loss_teacher_vs_sp.png") == ["sp transfer", "sp random"]

    # A teacher run folder outside the listed runs.
    ok(capsys, ["report", str(runs / "sp_transfer"), "--out", rep, "--teacher", str(runs / "teacher_c3d")])
    assert labels(plots, "test_loss_teacher_vs_sp.png") == ["c3d (teacher)", "sp transfer"]

    # The same name in two folders: the path tells which.
    make_study(tmp_path / "copy")
    both = [str(runs), str(tmp_path / "copy")]
    err = error(capsys, ["report", *both, "--out", rep, "--teacher", "teacher_c3d"])
    assert "--teacher teacher_c3d" in err and "2 runs" in err
    ok(capsys, ["report", *both, "--out", rep, "--teacher", str(tmp_path / "copy" / "teacher_c3d")])
    assert labels(plots, "test_loss_teacher_vs_sp.png")[0] == "c3d (teacher) [copy/teacher_c3d]"


# 3. ------------------------------------------------------------------------------------------------


def test_runs_of_the_same_name_in_two_folders_are_told_apart(tmp_path, plots, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for parent in ("a", "b"):
        make_study(Path(parent))
        make_run(Path(parent), "mc4_transfer", model="mc4")
        make_run(Path(parent), "mc4_random", model="mc4", init="random")
        make_run(Path(parent), "sp_bn_transfer", model="sp_bn")
    ok(capsys, ["report", "a", "b", "--out", "rep"])
    table = Path("rep/table.md").read_text().splitlines()
    assert table[0].startswith("| run | model | init |")
    body = table[2:]
    assert len(body) == 12 and len(set(body)) == 12
    assert any(line.startswith("| a/sp_transfer | sp | transfer |") for line in body)
    assert any(line.startswith("| b/sp_transfer | sp | transfer |") for line in body)
    assert {r["folder"] for r in json.loads(Path("rep/table.json").read_text())} >= {
        "a/teacher_c3d",
        "b/teacher_c3d",
    }

    style: dict[str, tuple] = {}
    for name in ("test_loss_all.png", "accuracy.png", "test_loss_teacher_vs_sp.png"):
        lines = [ln for ax in plots[name] for ln in ax["lines"]]
        assert len({ln[0] for ln in lines}) == len(lines), name  # no label twice
        assert len({ln[1] for ln in lines}) == len(lines), name  # no colour twice (12 runs)
        for label, color, marker in lines:  # one look per run in every plot
            assert style.setdefault(label, (color, marker)) == (color, marker), (name, label)
    assert "sp transfer [a/sp_transfer]" in style and "sp transfer [b/sp_transfer]" in style
    assert len(style) == 12


def test_labels_name_the_run_when_two_runs_share_model_and_init(tmp_path):
    make_run(tmp_path, "sp_transfer")
    make_run(tmp_path, "sp_transfer_lr2")
    make_run(tmp_path, "sp_random", init="random")
    runs = report.find_runs([tmp_path])
    assert sorted(report_plots.run_labels(runs).values()) == [
        "sp random",
        "sp transfer [sp_transfer]",
        "sp transfer [sp_transfer_lr2]",
    ]


def test_more_runs_than_ten_keep_colours_of_their_own(tmp_path):
    for i in range(25):
        make_run(tmp_path, f"sp_{i:02d}", epochs=1)
    for n in (12, 25):
        runs = report.find_runs([tmp_path])[:n]
        looks = report_plots.run_styles(runs)
        assert len({tuple(s.color[:3]) for s in looks.values()}) == n


# 4. ------------------------------------------------------------------------------------------------


def test_folders_that_are_not_runs_are_left_out_with_a_note(tmp_path, capsys):
    runs = make_study(tmp_path / "runs")
    (runs / "bert").mkdir()
    (runs / "bert" / "config.json").write_text('{"model_type": "bert"}')
    (runs / "empty").mkdir()
    (runs / "empty" / "config.json").write_text("")
    _, err = ok(capsys, ["report", str(runs), "--out", str(tmp_path / "rep")])
    assert f"{runs / 'bert'}: not a c3d-distill run" in err
    assert f"{runs / 'empty' / 'config.json'}: empty file" in err
    assert [r["run"] for r in json.loads((tmp_path / "rep" / "table.json").read_text())] == [
        "teacher_c3d",
        "sp_transfer",
        "sp_random",
    ]
    # Named alone, a folder that is not a run is an error that says why.
    err = error(capsys, ["report", str(runs / "bert"), "--out", str(tmp_path / "rep")])
    assert f"{runs / 'bert'}: not a c3d-distill run" in err


def test_a_broken_run_named_is_an_error_naming_the_file(tmp_path, capsys):
    run = make_run(tmp_path, "sp_transfer")
    rep = str(tmp_path / "rep")
    good = (run / "config.json").read_text()
    (run / "config.json").write_text("")
    assert f"{run / 'config.json'}: empty file" in error(capsys, ["report", str(run), "--out", rep])
    (run / "config.json").write_text(good)
    (run / "eval.json").write_text("garbage")
    assert f"{run / 'eval.json'}: not valid JSON" in error(capsys, ["report", str(run), "--out", rep])


def test_a_torn_last_metrics_line_is_left_out_and_a_corrupt_middle_line_is_an_error(tmp_path, capsys):
    run = make_run(tmp_path, "sp_transfer")
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join(lines) + lines[0][:25])  # killed while writing a row
    _, err = ok(capsys, ["report", str(run), "--out", str(tmp_path / "rep")])
    assert f"{metrics} line {len(lines) + 1}: incomplete" in err
    assert len(report_runs.Run(run).rows) == len(lines)

    metrics.write_text(lines[0] + lines[1][:25] + "\n" + "".join(lines[2:]))
    err = error(capsys, ["report", str(run), "--out", str(tmp_path / "rep")])
    assert f"{metrics} line 2: not valid JSON" in err


# 5. ------------------------------------------------------------------------------------------------


def test_report_rr_star_into_rr_report_twice(tmp_path, capsys):
    rr = make_study(tmp_path / "rr")
    (rr / "notes.json").write_text("{}")
    out = rr / "report"
    for _ in range(2):
        entries = sorted(str(p) for p in rr.iterdir())  # what the shell makes of rr/*
        _, err = ok(capsys, ["report", *entries, "--out", str(out)])
        assert f"{rr / 'notes.json'}: not a folder" in err
        assert len(json.loads((out / "table.json").read_text())) == 3
    assert f"{out}: the --out folder" in err
    # No run at all: an error.
    err = error(capsys, ["report", str(rr / "notes.json"), str(out), "--out", str(out)])
    assert "no c3d-distill run found" in err


# 6. ------------------------------------------------------------------------------------------------


def test_out_naming_a_file_is_an_error(tmp_path, capsys):
    runs = make_study(tmp_path / "runs")
    afile = tmp_path / "afile"
    afile.write_text("")
    assert f"--out {afile}: is a file" in error(capsys, ["report", str(runs), "--out", str(afile)])
    err = error(capsys, ["report", str(runs), "--out", str(afile / "rep")])
    assert f"--out {afile / 'rep'}" in err


# 7. ------------------------------------------------------------------------------------------------


def test_epoch_ticks_are_whole_numbers(tmp_path, plots, capsys):
    make_run(tmp_path / "runs", "sp_transfer", epochs=2)
    ok(capsys, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")])
    ticks = plots["loss_per_model.png"][0]["xticks"]
    assert ticks and all(t == int(t) for t in ticks), ticks
    for name in ("loss_all.png", "test_loss_all.png", "accuracy.png"):
        assert all(t == int(t) for ax in plots[name] for t in ax["xticks"]), name


def test_write_report_writes_the_table_and_the_plots(tmp_path, monkeypatch):
    """write_report from Python, PNG files drawn for real."""
    monkeypatch.setattr(report_plots, "_save", REAL_SAVE)
    written = report.write_report([make_study(tmp_path / "runs")], tmp_path / "rep")
    assert [p.name for p in written] == [
        "table.md",
        "table.json",
        "loss_per_model.png",
        "loss_all.png",
        "test_loss_all.png",
        "test_loss_teacher_vs_sp.png",
        "accuracy.png",
    ]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written[2:])
