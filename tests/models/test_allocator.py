"""The allocator setting of fast models (c3d_distill.memory): freed large blocks are reused, so a second
batch of activations does not come back as fresh pages that the kernel faults in again. Each case runs
in its own interpreter: the setting is process-wide."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from c3d_distill.memory import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="the setting is glibc's mallopt")

PAGES = 64 * 2**20 // 4096  # a 64 MiB block: above glibc's largest mmap threshold (32 MiB)
BLOCKS = 12

SCRIPT = """
import ctypes, json, resource
# 4 KiB pages whatever the host's transparent huge page setting (PR_SET_THP_DISABLE = 41): with huge pages
# a 64 MiB block faults in 32 times, not 16384, and the counts below would say nothing.
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)
import torch
from c3d_distill.memory import reusing_freed_memory
from c3d_distill.models import create_model

create_model("c3d", width=1 / 16, fast={fast})

def faults_of_a_fresh_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(64 * 2**20 // 4, dtype=torch.float32)
    t.fill_(1.0)  # touch every page
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del t
    return after - before

faults = [faults_of_a_fresh_block() for _ in range(BLOCKS)]
print(json.dumps({{"on": reusing_freed_memory(), "faults": faults}}))
"""


def run(fast: bool, env_value: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop("C3D_DISTILL_MALLOC", None)
    env.pop("THP_MEM_ALLOC_ENABLE", None)  # torch would align large blocks to 2 MiB huge pages
    if env_value is not None:
        env["C3D_DISTILL_MALLOC"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace("BLOCKS", str(BLOCKS)).format(fast=fast)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fast_model_reuses_freed_large_blocks():
    r = run(fast=True)
    assert r["on"] is True
    faults = r["faults"]
    assert faults[0] > PAGES // 2, r  # the first block is new memory either way
    # The heap settles after a few blocks: torch asks posix_memalign for 64-byte alignment, so glibc needs
    # a free chunk slightly larger than the block, and a freed block whose neighbour a small allocation
    # took is a few bytes short. Which of the first blocks come fresh depends on the heap's layout (it
    # moved with the size of the environment: blocks 2-6 fresh in some layouts, in 120 tried); once two
    # neighbouring freed blocks have merged, every later one is reused.
    fresh = [i for i, f in enumerate(faults) if f > PAGES // 10]
    assert len(fresh) <= BLOCKS // 2, r
    assert all(f < PAGES // 10 for f in faults[-4:]), r


def test_glibc_default_faults_every_block_in_again():
    # The behaviour the setting removes: with glibc's default each large block is a fresh mmap.
    r = run(fast=True, env_value="system")
    assert r["on"] is False
    assert all(f > PAGES // 2 for f in r["faults"]), r


def test_plain_model_leaves_the_allocator_alone():
    assert run(fast=False)["on"] is False
