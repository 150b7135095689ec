"""Type stubs for the native module (rust/python.rs). Checked against the compiled module by
`python -m mypy.stubtest`-style test in tests/test_stubs.py."""

from typing import Any

__version__: str

class VideoDecodeError(RuntimeError):
    """A video file exists but cannot be decoded; the message names the file and the cause."""

def probe(path: str | Any) -> dict[str, Any]:
    """Index a video by decoding it once.

    Returns ``width``, ``height``, ``fps``, ``num_frames`` (frames that really decode),
    ``duration`` (seconds), ``codec`` (FFmpeg's short name), ``keyframes`` (frame indices) and ``path``.
    Raises FileNotFoundError for a missing path and VideoDecodeError for anything unreadable.
    """
