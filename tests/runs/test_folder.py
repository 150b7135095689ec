"""The run folder's lock (one run at a time per --out) and a checkpoint write that fails for lack of room."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from c3d_distill.runs.folder import LOCK_NAME, RunLock

PYTHON_ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "python"), OMP_NUM_THREADS="1")


def hold_lock(out: Path) -> subprocess.Popen:
    """Another process holding the lock of ``out`` until killed (it prints `held` once it has it)."""
    code = (
        "import sys, time; from pathlib import Path; from c3d_distill.runs.folder import RunLock; "
        f"RunLock.acquire(Path({str(out)!r})); print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=PYTHON_ENV)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_refuses_a_second_run_by_pid_and_host_and_a_dead_holder_is_taken_over(tmp_path, caplog):
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        with pytest.raises(ValueError) as exc:
            RunLock.acquire(out)
        msg = str(exc.value)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in msg and str(out) in msg, msg
        assert "another run is using this folder" in msg
    finally:
        holder.kill()  # SIGKILL: no clean-up ran, the lock file still names the dead process
        holder.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid
    caplog.set_level("INFO", logger="c3d_distill")
    with RunLock.acquire(out):
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
        notices = [r.getMessage() for r in caplog.records if "took over the lock" in r.getMessage()]
        assert len(notices) == 1 and f"pid {holder.pid}" in notices[0]
    assert not (out / LOCK_NAME).exists()  # released: removed


def test_release_removes_the_folders_it_created_only_while_empty(tmp_path):
    lock = RunLock.acquire(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b" / LOCK_NAME).exists()
    lock.release()
    lock.release()  # idempotent
    assert not (tmp_path / "a").exists()  # a refused run leaves no folder behind

    with RunLock.acquire(tmp_path / "c"):
        (tmp_path / "c" / "config.json").write_text("{}")
    assert (tmp_path / "c" / "config.json").exists() and not (tmp_path / "c" / LOCK_NAME).exists()
    # a clean release leaves nothing stale: the next run takes the lock without a notice
    with RunLock.acquire(tmp_path / "c"):
        pass


def test_an_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        RunLock.acquire(tmp_path / "f")


def test_without_file_system_locks_the_pid_in_the_file_decides(tmp_path, monkeypatch, caplog):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    out = tmp_path / "run"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (out / LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(ValueError, match=f"pid {sleeper.pid} .*this file system has no locks"):
            RunLock.acquire(out)
    finally:
        sleeper.kill()
        sleeper.wait()
    caplog.set_level("INFO", logger="c3d_distill")
    with RunLock.acquire(out):  # the named process is gone: taken over
        pass
    assert any("took over the lock" in r.getMessage() for r in caplog.records)


def test_a_checkpoint_write_past_the_file_size_limit_keeps_the_previous_one(tmp_path):
    """A real failed write (EFBIG from RLIMIT_FSIZE, as a full disk gives ENOSPC): the error names the file,
    the cause and the checkpoint kept, which still loads; no temp file is left."""
    script = textwrap.dedent(
        f"""
        import resource, signal, torch
        from c3d_distill.runs.checkpoint import CheckpointWriteError, save_checkpoint
        path = {str(tmp_path / "checkpoint.pt")!r}
        save_checkpoint({{"epoch": 1, "w": torch.zeros(10)}}, path)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        try:
            save_checkpoint({{"epoch": 2, "w": torch.zeros(100_000)}}, path, previous_epoch=1)
        except CheckpointWriteError as exc:
            print(exc.errno, exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=PYTHON_ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    code, msg = proc.stdout.strip().split(" ", 1)
    assert int(code) == errno.EFBIG
    assert msg.startswith(f"{tmp_path / 'checkpoint.pt'}: could not write epoch 2 (File too large)"), msg
    assert "the previous checkpoint (epoch 1) is kept" in msg
    from c3d_distill.runs.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
