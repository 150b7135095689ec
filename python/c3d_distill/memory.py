"""Keep freed large blocks for reuse: the allocator setting CPU forward passes of these networks need.

glibc's malloc serves every block above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and
unmaps it again on ``free``. One forward pass of these networks at batch 8 allocates and frees
activations of 200–400 MB per stage (sp's conv1 makes two of 411 MB), so each comes back as new pages
that the kernel has to fault in and zero, one 4 KiB page at a time, on every batch. On the 2-core
development machine that cost more than the arithmetic in the large stages: sp's (1,3,3) 3→64 conv at
8×16×112² took 164 ms with fresh pages and 40 ms with reused ones; the (3,1,1) 64→64 conv 254 ms against
182 ms. Whole models gain 1.2–1.5× (``benches/bench_models.py`` against the same run with
``C3D_DISTILL_MALLOC=system``; docs/models.md).

Allocators built for this (jemalloc, tcmalloc: what Intel's PyTorch tuning guide recommends) have to
be preloaded with ``LD_PRELOAD`` before the process starts. glibc can be told the same from inside the
process with ``mallopt``: ``M_MMAP_MAX = 0`` (large blocks come from the heap, like small ones) and a
high ``M_TRIM_THRESHOLD`` (freed heap is kept for the next batch instead of being returned). The price:
the process's resident memory stays at its peak instead of dropping between batches, as it does with
PyTorch's own CUDA caching allocator. It can settle a few blocks above the peak: torch asks for 64-byte
aligned blocks (``posix_memalign``), which need a free chunk slightly larger than the block, so a freed
block whose neighbour a small allocation took is a few bytes short and the next one of its size comes
fresh; once neighbouring freed blocks have merged, every later one is reused (``tests/models/test_allocator.py``
repeats a 64 MiB block: in 120 heap layouts at most four of twelve came fresh, none after the sixth).

``create_model`` turns this on for fast models; ``C3D_DISTILL_MALLOC=system`` in the environment leaves
glibc's defaults alone. Elsewhere than glibc (musl, macOS) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h) and glibc's defaults for them.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
DEFAULT_MMAP_MAX = 65536
# Free memory at the top of the heap is returned to the system only beyond this (the largest int).
KEEP_TRIM_THRESHOLD = 2**31 - 1

ENV = "C3D_DISTILL_MALLOC"

_state: bool | None = None  # None: never set by us; True/False: the last setting applied


@functools.cache
def _glibc():
    if not hasattr(ctypes, "CDLL"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # Only glibc has gnu_get_libc_version (and these mallopt parameters).
        return libc if hasattr(libc, "gnu_get_libc_version") else None
    except (OSError, AttributeError):
        return None


def reuse_freed_memory(enabled: bool = True) -> bool:
    """Set glibc's keep-and-reuse policy for large blocks, or with ``enabled=False`` serve them with
    ``mmap`` again (returned to the system on ``free``; what the heap already holds stays with the
    process, so turning the policy back on finds it ready).

    Returns whether the policy is now on. Does nothing, and returns False, when the environment says
    ``C3D_DISTILL_MALLOC=system`` or the C library is not glibc. Cheap to call again.
    """
    global _state
    if enabled and os.environ.get(ENV, "").strip().lower() == "system":
        return False
    if _state is enabled:
        return enabled
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_MAX, 0 if enabled else DEFAULT_MMAP_MAX) == 1
    if ok and enabled:
        ok = libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD) == 1
    if not ok:
        log.debug("mallopt refused the setting; glibc's defaults stay")
        return False
    _state = enabled
    log.debug("large freed blocks are %s", "kept for reuse" if enabled else "returned (glibc default)")
    return enabled


def reusing_freed_memory() -> bool:
    """Whether :func:`reuse_freed_memory` is in effect in this process."""
    return bool(_state)
