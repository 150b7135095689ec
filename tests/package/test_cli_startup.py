"""The command line itself: only the module of the command being run is imported (``probe`` and ``data``
never pay for torch), and every command is still listed by ``--help``."""

from __future__ import annotations

import subprocess
import sys

from c3d_distill.cli import COMMANDS, build_parser, main

CHECK = """
import sys
from c3d_distill.cli import main
try:
    rc = main({argv!r})
except SystemExit as exc:  # --help
    rc = exc.code
print("TORCH" if "torch" in sys.modules else "NO-TORCH", rc)
"""


def run_in_fresh_process(argv: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-c", CHECK.format(argv=argv)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_probe_and_data_commands_do_not_import_torch(mpeg4_avi, tmp_path):
    assert run_in_fresh_process(["probe", str(mpeg4_avi)]) == "NO-TORCH 0"
    (tmp_path / "l.txt").write_text(f"{mpeg4_avi} 0\n", encoding="utf-8")
    assert run_in_fresh_process(["data", "info", f"list:{tmp_path / 'l.txt'}", "--probe", "1"]) == "NO-TORCH 0"


def test_help_of_the_torch_commands_and_report_do_not_import_torch(tmp_path):
    for cmd in ("train", "distill", "eval", "transfer", "models"):
        assert run_in_fresh_process([cmd, "--help"]) == "NO-TORCH 0", cmd
    assert run_in_fresh_process(["--help"]) == "NO-TORCH 0"
    run = tmp_path / "runs" / "t"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"model": "c3d", "mode": "train", "init": "transfer", "loss": "ce", '
                                     '"epochs": 1}')
    (run / "metrics.jsonl").write_text('{"epoch": 1, "split": "train", "loss": 1.0, "ce": 1.0}\n'
                                       '{"epoch": 1, "split": "test", "loss": 1.1, "ce": 1.1, "top1": 0.5}\n')
    assert run_in_fresh_process(["report", str(run), "--out", str(tmp_path / "rep")]) == "NO-TORCH 0"


def test_help_lists_every_command(capsys):
    assert main([]) == 2  # no command: the help, with every command in it
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


def test_output_cut_short_by_its_reader_is_not_an_error():
    # `c3d-distill models --json | head -1`: the pipe closes before the table is written.
    proc = subprocess.run(f"'{sys.executable}' -m c3d_distill models --json | head -1", shell=True,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout == "[\n" and proc.stderr == "", proc.stderr
