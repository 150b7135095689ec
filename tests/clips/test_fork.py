"""A process forked while a thread of its parent holds one of the reader's locks (the index cache, the
thread pool lists, the recycled batch buffers) reads without waiting for them: a ClipLoader's prefetch
thread reads in the parent while a DataLoader forks its workers, and the child's copy of a held lock
has no thread left to release it. Forked at any other time, the child keeps its parent's indexes."""

from __future__ import annotations

import subprocess
import sys

# Runs in a fresh interpreter, so that no other test's threads or pools are around at the fork.
_SCRIPT = """
import os, sys, time, traceback
from c3d_distill import _native
from c3d_distill.clips import probe, read_clips

path, hold = sys.argv[1], sys.argv[2] == "hold"
kw = dict(size=(32, 32), crop=None, threads=2)
read_clips([(path, [0, 1, 2, 3])], **kw)  # the parent's pools, index and a kept buffer exist
assert _native.cache_len() == 1 and _native.stats()["pooled_bytes"] > 0
if hold:
    _native._hold_locks_for_test(60.0)  # returns once a background thread holds every lock
pid = os.fork()
if pid == 0:
    code = 3
    try:
        # Held at the fork: a fresh cache and buffer pool; free: the parent's.
        inherited = _native.cache_len()
        assert inherited == (0 if hold else 1), inherited
        assert probe(path)["num_frames"] == 60
        a = read_clips([(path, [5, 6])], **kw)
        assert a.shape == (1, 3, 2, 32, 32), a.shape
        del a  # its buffer goes back to the (child's own) pool
        assert _native.cache_len() == 1 and _native.stats()["pooled_bytes"] > 0
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("child exit", os.waitstatus_to_exitcode(status), flush=True)
        os._exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.02)
os.kill(pid, 9)
os.waitpid(pid, 0)
print("child hung", flush=True)
os._exit(2)
"""


def _run(path, mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _SCRIPT, str(path), mode], capture_output=True, text=True,
                          timeout=90)


def test_child_forked_while_locks_are_held_does_not_hang(h264_mp4):
    r = _run(h264_mp4, "hold")
    assert r.returncode == 0, f"exit {r.returncode} (2: the child hung)\n{r.stdout}\n{r.stderr}"


def test_child_forked_with_free_locks_keeps_the_parents_index(h264_mp4):
    r = _run(h264_mp4, "free")
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
