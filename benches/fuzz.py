"""Fuzz the video reader with damaged real videos: every case must end in a result or a clean error.

Source videos are encoded on the spot (MPEG-4 and H.264, in AVI, MP4 with the index at the end or the
front, and MKV). Each case mutates one of them (or is random bytes), and every case goes to four APIs:

    probe(path)                                   -> dict, checked for sane values
    VideoReader(path).get_frames([0, n//2, n-1])  -> (3, H, W, 3) uint8
    read_clips([(path, 16 indices)])              -> (1, 3, 16, 56, 56) uint8, the same bytes when read again
    read_clips([(path, ...), (good, ...)], on_error="skip") -> never raises; the good clip comes back

in a long-lived child process (restarted after a death) with a time limit per call and an address-space
limit (``RLIMIT_AS``). Allowed outcomes: ``ok``, ``VideoDecodeError``, and ``ValueError`` /
``MemoryError`` / ``FileNotFoundError`` where they fit. Anything else is a failure: ``crash`` (the child died, e.g. a
signal), ``timeout`` (a hang), ``memory`` (the peak resident memory of one call grew by more than
``--spike-mb``, or an allocation failed), ``bad_result`` (a result of the wrong shape or with impossible
values), or ``unexpected_exception`` (any other exception type, e.g. a panic that escaped).

    python benches/fuzz.py                    # 1000 cases x 4 APIs, about a minute on 2 cores
    python benches/fuzz.py --cases 1000 --seed 3 --workers 2

Writes ``benches/results/fuzz.json`` (counts by mutation and API, every failure with its file kept under
``benches/results/tmp/fuzz_failures/`` for reproduction) and prints a markdown table. Exit status 1 when
any case failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # videogen: the test videos, encoded with the ffmpeg command

import videogen  # noqa: E402

sys.path.insert(0, str(HERE))
from _common import native_module, write_json  # noqa: E402

APIS = ("probe", "get_frames", "read_clips", "read_clips_skip")
ALLOWED = {
    # What each API may raise on a damaged file. ValueError fits get_frames/read_clips when the index
    # the file declares holds frames that cannot all be reached (an index out of range, named).
    "probe": {"ok", "VideoDecodeError"},
    # MemoryError: a header that declares enormous frames, read at its own size, asks for a batch that
    # cannot be allocated; the reader refuses it by name (shape and bytes) instead of aborting.
    "get_frames": {"ok", "VideoDecodeError", "ValueError", "MemoryError"},
    "read_clips": {"ok", "VideoDecodeError", "ValueError", "MemoryError"},
    "read_clips_skip": {"ok"},
}
MUTATIONS = (
    "none", "truncate", "cut_index", "drop_range", "flip_bits", "flip_header", "zero_range", "swap_header",
    "swap_ranges", "huge_size", "avi_field", "mp4_field", "random_bytes", "random_with_magic",
)
CLIP_LEN = 16
THREADS_DIFFER = "[threads=2 read differs]"


# ---------------------------------------------------------------------------------------------------
# Source videos


def make_sources(folder: Path) -> dict[str, Path]:
    """Small real videos (160×120-ish, 24–40 frames) in the containers and codecs users have."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = {
        "mpeg4.avi": dict(codec="mpeg4", size=(160, 120), frames=40, gop=12, extra=["-q:v", "5"]),
        "h264.avi": dict(codec="libx264", size=(176, 144), frames=30, gop=10, bframes=0),
        "h264_bf.mp4": dict(codec="libx264", size=(160, 120), frames=40, gop=12, bframes=3),
        "h264_faststart.mp4": dict(codec="libx264", size=(176, 144), frames=30, gop=10,
                                   extra=["-movflags", "+faststart"]),
        "mpeg4.mp4": dict(codec="mpeg4", size=(160, 120), frames=24, gop=8, extra=["-q:v", "5"]),
        "h264.mkv": dict(codec="libx264", size=(160, 120), frames=30, gop=10, bframes=2),
    }
    out = {}
    for name, kw in specs.items():
        path = folder / name
        if not path.exists() or path.stat().st_size == 0:
            videogen.encode(path, source="testsrc2", **kw)
        out[name] = path
    return out


# ---------------------------------------------------------------------------------------------------
# Container structure: where the header fields are, so mutations can hit them on purpose


@dataclass
class Field:
    label: str  # e.g. "avih.dwTotalFrames", "moov/trak/mdia/minf/stbl/stsz.entry[3]"
    offset: int
    width: int  # bytes
    big_endian: bool
    is_size: bool = False  # a chunk/box size field


def riff_fields(data: bytes) -> tuple[list[Field], int | None, int | None]:
    """Fields of an AVI file, the offset of the ``LIST movi`` chunk and of ``idx1`` (None if absent)."""
    fields: list[Field] = []
    movi = idx1 = None
    if len(data) < 12 or data[:4] != b"RIFF":
        return fields, movi, idx1
    fields.append(Field("RIFF.size", 4, 4, False, True))
    named = {
        b"avih": ("dwMicroSecPerFrame", "dwMaxBytesPerSec", "dwPaddingGranularity", "dwFlags", "dwTotalFrames",
                  "dwInitialFrames", "dwStreams", "dwSuggestedBufferSize", "dwWidth", "dwHeight"),
        b"strh": ("fccType", "fccHandler", "dwFlags", "wPriority+wLanguage", "dwInitialFrames", "dwScale",
                  "dwRate", "dwStart", "dwLength", "dwSuggestedBufferSize", "dwQuality", "dwSampleSize"),
        b"strf": ("biSize", "biWidth", "biHeight", "biPlanes+biBitCount", "biCompression", "biSizeImage"),
    }

    def walk(start: int, end: int, depth: int) -> None:
        nonlocal movi, idx1
        pos, n_data_chunks = start, 0
        while pos + 8 <= end:
            fourcc = data[pos:pos + 4]
            size = struct.unpack_from("<I", data, pos + 4)[0]
            name = fourcc.decode("latin-1")
            if fourcc == b"LIST" and pos + 12 <= end:
                kind = data[pos + 8:pos + 12]
                fields.append(Field(f"LIST[{kind.decode('latin-1')}].size", pos + 4, 4, False, True))
                if kind == b"movi":
                    movi = pos
                if depth < 4:
                    walk(pos + 12, min(end, pos + 8 + size), depth + 1)
            else:
                if n_data_chunks < 6 or fourcc != data[start:start + 4]:
                    fields.append(Field(f"{name}.size", pos + 4, 4, False, True))
                n_data_chunks += 1
                for i, label in enumerate(named.get(fourcc, ())):
                    if pos + 8 + 4 * i + 4 <= end:
                        fields.append(Field(f"{name}.{label}", pos + 8 + 4 * i, 4, False))
                if fourcc == b"idx1":
                    idx1 = pos
                    for k in range(min(size // 16, 8)):  # the first entries: offset and length
                        e = pos + 8 + 16 * k
                        fields.append(Field(f"idx1[{k}].dwChunkOffset", e + 8, 4, False))
                        fields.append(Field(f"idx1[{k}].dwChunkLength", e + 12, 4, False))
            pos += 8 + size + (size & 1)
            if size > end:  # a damaged size: stop walking
                break

    walk(12, len(data), 0)
    return fields, movi, idx1


MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"udta"}
# (label, offset from the box payload start, width) for full boxes whose fields matter to a demuxer
MP4_NAMED = {
    b"mvhd": (("timescale", 12, 4), ("duration", 16, 4)),
    b"mdhd": (("timescale", 12, 4), ("duration", 16, 4)),
    b"tkhd": (("duration", 20, 4), ("width", 76, 4), ("height", 80, 4)),
    b"stsd": (("entry_count", 4, 4),),
    b"stsz": (("sample_size", 4, 4), ("sample_count", 8, 4)),
    b"stco": (("entry_count", 4, 4),),
    b"stts": (("entry_count", 4, 4),),
    b"stss": (("entry_count", 4, 4),),
    b"stsc": (("entry_count", 4, 4),),
    b"ctts": (("entry_count", 4, 4),),
    b"elst": (("entry_count", 4, 4),),
}
MP4_TABLES = {b"stsz": (12, 4), b"stco": (8, 4), b"stts": (8, 8), b"stss": (8, 4), b"stsc": (8, 12),
              b"ctts": (8, 8), b"elst": (8, 12)}  # (first entry offset, entry size): fields in 4-byte words


def mp4_fields(data: bytes) -> tuple[list[Field], dict[str, tuple[int, int]]]:
    """Fields of an MP4 file and the top-level boxes: ``{"moov": (offset, size), "mdat": ...}``."""
    fields: list[Field] = []
    top: dict[str, tuple[int, int]] = {}

    def walk(start: int, end: int, path: str, depth: int) -> None:
        pos = start
        while pos + 8 <= end:
            size, kind = struct.unpack_from(">I4s", data, pos)
            header = 8
            if size == 1 and pos + 16 <= end:
                size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
            elif size == 0:
                size = end - pos
            name = kind.decode("latin-1")
            label = f"{path}/{name}" if path else name
            if depth == 0:
                top.setdefault(name, (pos, size))
            fields.append(Field(f"{label}.size", pos, 4, True, True))
            body = pos + header
            for fname, off, width in MP4_NAMED.get(kind, ()):
                if body + off + width <= end:
                    fields.append(Field(f"{label}.{fname}", body + off, width, True))
            if kind in MP4_TABLES:
                first, entry = MP4_TABLES[kind]
                for k in range(4):  # the first entries, every 4-byte word
                    for w in range(entry // 4):
                        o = body + first + k * entry + 4 * w
                        if o + 4 <= min(end, pos + size):
                            fields.append(Field(f"{label}.entry[{k}].{w}", o, 4, True))
            if kind == b"stsd" and body + 8 + 8 + 78 <= end:
                entry = body + 8  # the first sample entry (avc1 / mp4v): width and height at 24 and 26
                fields.append(Field(f"{label}/sample_entry.size", entry, 4, True, True))
                fields.append(Field(f"{label}/sample_entry.width", entry + 8 + 24, 2, True))
                fields.append(Field(f"{label}/sample_entry.height", entry + 8 + 26, 2, True))
                sub = entry + 8 + 78
                walk(sub, min(end, entry + struct.unpack_from(">I", data, entry)[0]), f"{label}/sample_entry",
                     depth + 1)
            if kind == b"avcC" and body + 8 <= end:
                fields.append(Field(f"{label}.sps_length", body + 6, 2, True))
            if kind in MP4_CONTAINERS and depth < 8:
                walk(body, min(end, pos + size), label, depth + 1)
            if size < header:
                break
            pos += size

    walk(0, len(data), "", 0)
    return fields, top


INTERESTING = (0, 1, 2, 7, 8, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0,
               0xFFFFFFFF)


def write_field(buf: bytearray, f: Field, value: int) -> None:
    mask = (1 << (8 * f.width)) - 1
    buf[f.offset:f.offset + f.width] = (value & mask).to_bytes(f.width, "big" if f.big_endian else "little")


def read_field(buf: bytes, f: Field) -> int:
    return int.from_bytes(buf[f.offset:f.offset + f.width], "big" if f.big_endian else "little")


def _field_value(rng: random.Random, old: int) -> tuple[int, str]:
    r = rng.random()
    if r < 0.6:
        v = rng.choice(INTERESTING)
        return v, hex(v)
    if r < 0.8:
        d = rng.choice((-16, -8, -1, 1, 8, 16, 1 << 20))
        return old + d, f"{old:#x}{d:+d}"
    v = rng.getrandbits(32)
    return v, hex(v)


# ---------------------------------------------------------------------------------------------------
# Mutations: (rng, source name, source bytes, all sources) -> (bytes, what was done)


def m_none(rng, name, data, sources):
    return data, "unchanged (control)"


def m_truncate(rng, name, data, sources):
    n = rng.choice((0, 1, 8, 12, 64, 512)) if rng.random() < 0.25 else int(len(data) * rng.random())
    return data[:n], f"kept the first {n} of {len(data)} bytes"


def m_cut_index(rng, name, data, sources):
    """Cut just before the index (idx1, moov at the end) or just after the header (moov at the front)."""
    if name.endswith(".avi"):
        _, movi, idx1 = riff_fields(data)
        n = idx1 if idx1 is not None and rng.random() < 0.5 else (movi or 0) + rng.choice((0, 12, 20))
    elif name.endswith(".mp4"):
        _, top = mp4_fields(data)
        moov, mdat = top.get("moov", (0, 0)), top.get("mdat", (0, 0))
        n = moov[0] if moov[0] > mdat[0] else mdat[0] + rng.choice((8, 16, 1000))
    else:
        n = len(data) - rng.randint(1, min(len(data), 4096))
    return data[:n], f"cut at byte {n} of {len(data)} (around the index / first media data)"


def m_drop_range(rng, name, data, sources):
    a = rng.randrange(len(data))
    n = rng.choice((1, 3, 188, 4096, 20000))
    return data[:a] + data[a + n:], f"removed bytes [{a}, {a + n})"


def m_flip_bits(rng, name, data, sources):
    buf = bytearray(data)
    k = rng.choice((1, 4, 32, 256))
    for _ in range(k):
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return bytes(buf), f"flipped {k} random bits"


def m_flip_header(rng, name, data, sources):
    buf = bytearray(data)
    lim = min(len(buf), 4096) if not name.endswith(".mp4") else len(buf)
    if name.endswith(".mp4"):  # the header is the moov box, wherever it is
        _, top = mp4_fields(data)
        start, size = top.get("moov", (0, 4096))
        lo, lim = start, min(len(buf), start + size)
    else:
        lo = 0
    k = rng.choice((1, 2, 8))
    for _ in range(k):
        buf[rng.randrange(lo, lim)] ^= 1 << rng.randrange(8)
    return bytes(buf), f"flipped {k} bits in the header bytes [{lo}, {lim})"


def m_zero_range(rng, name, data, sources):
    buf = bytearray(data)
    n = rng.choice((4, 16, 256, 4096, 65536))
    a = rng.randrange(len(buf))
    buf[a:a + n] = bytes(len(buf[a:a + n]))
    return bytes(buf), f"zeroed bytes [{a}, {a + n})"


def m_swap_header(rng, name, data, sources):
    """The header of another video of the same container on this one's media data (or across containers)."""
    same = [n for n in sources if n != name and Path(n).suffix == Path(name).suffix]
    other = rng.choice(same) if same and rng.random() < 0.75 else rng.choice([n for n in sources if n != name])
    od = sources[other]
    if name.endswith(".avi") and other.endswith(".avi"):
        _, movi, _ = riff_fields(data)
        _, omovi, _ = riff_fields(od)
        return od[:omovi] + data[movi:], f"AVI header (up to LIST movi) of {other}"
    if name.endswith(".mp4") and other.endswith(".mp4"):
        _, top = mp4_fields(data)
        _, otop = mp4_fields(od)
        (a, n), (oa, on) = top["moov"], otop["moov"]
        return data[:a] + od[oa:oa + on] + data[a + n:], f"moov box of {other}"
    k = rng.choice((12, 64, 512, 4096))
    return od[:k] + data[k:], f"first {k} bytes of {other}"


def m_swap_ranges(rng, name, data, sources):
    buf = bytearray(data)
    n = rng.choice((4, 64, 1024))
    a, b = sorted(rng.sample(range(max(2, len(buf) - n)), 2))
    if b - a < n:
        b = min(len(buf) - n, a + n)
    buf[a:a + n], buf[b:b + n] = data[b:b + n], data[a:a + n]
    return bytes(buf), f"swapped {n} bytes at {a} and {b}"


def _structure(name, data):
    if name.endswith(".avi"):
        return riff_fields(data)[0]
    if name.endswith(".mp4"):
        return mp4_fields(data)[0]
    return []


def m_huge_size(rng, name, data, sources):
    """A chunk/box size, or a declared frame count / dimension, set very large."""
    fields = [f for f in _structure(name, data) if f.is_size or any(
        s in f.label for s in ("Total", "Length", "Width", "Height", "width", "height", "sample_count",
                               "SuggestedBufferSize", "SizeImage"))]
    buf = bytearray(data)
    if not fields:  # MKV: an EBML size is variable-length; declare an 8-byte maximal size at a random spot
        a = rng.randrange(len(buf) - 8)
        buf[a:a + 8] = b"\x01\xff\xff\xff\xff\xff\xff\xff"
        return bytes(buf), f"EBML-style huge size at {a}"
    f = rng.choice(fields)
    v = rng.choice((0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF, 0x10000000, 0xFFFF))
    old = read_field(buf, f)
    write_field(buf, f, v)
    return bytes(buf), f"{f.label}: {old:#x} -> {v:#x}"


def _m_field(container):
    def mutate(rng, name, data, sources):
        if not name.endswith(container):
            name = rng.choice([n for n in sources if n.endswith(container)])
            data = sources[name]
        fields = _structure(name, data)
        buf = bytearray(data)
        done = []
        for f in rng.sample(fields, k=min(len(fields), rng.choice((1, 1, 2, 3)))):
            old = read_field(buf, f)
            v, text = _field_value(rng, old)
            write_field(buf, f, v)
            done.append(f"{f.label}: {old:#x} -> {text}")
        return bytes(buf), f"[{name}] " + "; ".join(done)

    mutate.__doc__ = f"Header fields of the {container} container set to boundary / random values."
    return mutate


def m_random_bytes(rng, name, data, sources):
    n = rng.choice((0, 1, 16, 1000, 100_000))
    return rng.randbytes(n), f"{n} random bytes"


def m_random_with_magic(rng, name, data, sources):
    n = rng.choice((16, 1000, 100_000))
    body = rng.randbytes(n)
    if name.endswith(".avi"):
        head = b"RIFF" + struct.pack("<I", n + 4) + b"AVI LIST" + struct.pack("<I", n) + b"hdrlavih"
    elif name.endswith(".mp4"):
        head = struct.pack(">I", 24) + b"ftypisom" + bytes(4) + b"isomavc1" + struct.pack(">I", n + 8) + b"moov"
    else:
        head = bytes.fromhex("1a45dfa3") + bytes.fromhex("9f4286810142f7810142f2810442f381084282") + b"matroska"
    return head + body, f"a valid {Path(name).suffix} signature, then {n} random bytes"


MUTATORS = {
    "none": m_none, "truncate": m_truncate, "cut_index": m_cut_index, "drop_range": m_drop_range,
    "flip_bits": m_flip_bits, "flip_header": m_flip_header, "zero_range": m_zero_range,
    "swap_header": m_swap_header, "swap_ranges": m_swap_ranges, "huge_size": m_huge_size,
    "avi_field": _m_field(".avi"), "mp4_field": _m_field(".mp4"), "random_bytes": m_random_bytes,
    "random_with_magic": m_random_with_magic,
}
assert tuple(MUTATORS) == MUTATIONS


@dataclass
class Case:
    index: int
    mutation: str
    source: str
    detail: str
    path: str


def make_cases(n: int, seed: int, sources: dict[str, Path], folder: Path,
               mutations: tuple[str, ...] = MUTATIONS) -> list[Case]:
    """``n`` cases, the mutations taken in turn, each from a random source; deterministic for ``seed``."""
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {name: p.read_bytes() for name, p in sources.items()}
    names = sorted(blobs)
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        mutation = mutations[i % len(mutations)]
        source = rng.choice(names)
        data, detail = MUTATORS[mutation](rng, source, blobs[source], blobs)
        if detail.startswith("[") and "]" in detail:  # a field mutation may pick its own container
            source = detail[1:detail.index("]")]
        path = folder / f"case{i:05d}_{mutation}{Path(source).suffix}"
        path.write_bytes(data)
        cases.append(Case(i, mutation, source, detail, str(path)))
    return cases


# ---------------------------------------------------------------------------------------------------
# The child: runs one call at a time, reports outcome, peak memory growth and time


def _proc_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmSize"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def _clip_indices(n: int) -> list[int]:
    return [min(n - 1, (i * n) // CLIP_LEN) for i in range(CLIP_LEN)] if n > 0 else list(range(CLIP_LEN))


def _call(api: str, path: str, good: str) -> str:
    """Run one API on ``path``; return a short description of the result, raise what it raises.
    An ``AssertionError`` marks a result that is wrong (not an allowed error)."""
    from c3d_distill.clips import VideoReader, probe, read_clips

    if api.startswith("selftest:"):  # misbehaviours the harness must catch (tests/robustness/test_fuzz.py)
        what = api.split(":", 1)[1]
        if what == "abort":
            os.abort()
        if what == "hang":
            time.sleep(3600)
        if what == "spike":
            return str(bytearray(600 * 2**20)[::2**20].count(0))
        raise ValueError(f"unknown self test {what}")
    if api == "probe":
        info = probe(path)
        _check(info["num_frames"] >= 1 and info["width"] >= 1 and info["height"] >= 1,
               f"probe returned an empty video: {info}")
        _check(info["fps"] > 0 and info["fps"] == info["fps"], f"probe returned fps {info['fps']}")
        kf = info["keyframes"]
        _check(all(0 <= k < info["num_frames"] for k in kf) and kf == sorted(kf),
               f"keyframes {kf[:8]} not sorted within [0, {info['num_frames']})")
        return f"{info['num_frames']} frames {info['width']}x{info['height']} {info['codec']}"
    if api == "get_frames":
        r = VideoReader(path)
        idx = sorted({0, r.num_frames // 2, r.num_frames - 1})
        a = r.get_frames(idx)
        _check(a.shape == (len(idx), r.height, r.width, 3) and a.dtype.name == "uint8",
               f"get_frames({idx}) gave {a.shape} {a.dtype} for a {r.width}x{r.height} video")
        return f"{a.shape}"
    try:
        n = probe(path)["num_frames"]
    except Exception:
        n = CLIP_LEN  # not probeable: ask for frames anyway, read_clips must say why it cannot
    kw = dict(size=(64, 86), crop=56)
    if api == "read_clips":
        a = read_clips([(path, _clip_indices(n))], threads=1, **kw)
        _check(a.shape == (1, 3, CLIP_LEN, 56, 56), f"read_clips gave {a.shape}")
        # A damaged frame must not leave uninitialised memory in the batch: the same read again gives the
        # same bytes. (With 2 threads, one video gets 2 FFmpeg frame threads, and FFmpeg's own error
        # concealment on a damaged stream then depends on timing: ``ffmpeg -threads 2`` differs from run to
        # run too. That is counted, not failed.)
        b = read_clips([(path, _clip_indices(n))], threads=1, **kw)
        _check(bool((a == b).all()), f"two identical reads differ in {int((a != b).sum())} of {a.size} values")
        c = read_clips([(path, _clip_indices(n))], threads=2, **kw)
        return f"{a.shape}" + ("" if (a == c).all() else f" {THREADS_DIFFER}")
    a, report = read_clips([(path, _clip_indices(n)), (good, _clip_indices(CLIP_LEN))], on_error="skip", threads=2,
                            **kw)
    ok, failed = report["ok"], report["failed"]
    _check(a.shape[0] == len(ok) and 1 in ok and sorted(ok + [f[0] for f in failed]) == [0, 1],
           f"on_error='skip' gave {a.shape[0]} clips with report {report}")
    _check(all(isinstance(f[2], str) and f[2] for f in failed), f"failure without a message: {failed}")
    return f"{len(ok)} ok, failed: {[f[2][:80] for f in failed]}"


def worker_main(spike_mb: int, limit_mb: int) -> None:
    """Serve calls read as JSON lines on stdin; answer on the original stdout (FFmpeg may write to fd 1,
    so fd 1 becomes stderr)."""
    import resource

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import c3d_distill.clips  # noqa: F401  (import before the limit: torch maps a lot of address space)

    vm = _proc_status()["VmSize"]
    soft = vm + limit_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (soft, resource.getrlimit(resource.RLIMIT_AS)[1]))
    proto.write(json.dumps({"ready": True, "vm_mb": vm / 2**20, "limit_mb": soft / 2**20}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM: the peak of this call alone
            f.write("5")
        rss0 = _proc_status()["VmRSS"]
        t0 = time.perf_counter()
        try:
            detail = _call(req["api"], req["path"], req["good"])
            outcome = "ok"
        except AssertionError as e:
            outcome, detail = "bad_result", str(e)
        except MemoryError as e:
            outcome, detail = "memory", f"MemoryError: {e}"
        except BaseException as e:  # noqa: BLE001  (classify everything, a panic included)
            outcome, detail = type(e).__name__, str(e)
        seconds = time.perf_counter() - t0
        grew = (_proc_status()["VmHWM"] - rss0) / 2**20
        if grew > spike_mb and outcome != "memory":
            detail = f"{outcome}: {detail}"
            outcome = "memory"
        proto.write(json.dumps({"outcome": outcome, "detail": detail[:400], "seconds": seconds,
                                "peak_growth_mb": grew}) + "\n")


class Worker:
    """A child process running :func:`worker_main`, restarted after a crash, hang or memory abort."""

    def __init__(self, spike_mb: int, limit_mb: int, log_dir: Path):
        self.args = [sys.executable, str(Path(__file__).resolve()), "--worker", "--spike-mb", str(spike_mb),
                     "--limit-mb", str(limit_mb)]
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.info: dict = {}

    def start(self) -> None:
        self.starts += 1
        self.stderr_path = self.log_dir / f"worker{id(self)}_{self.starts}.log"
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self._readline(120.0)
        if not line:
            raise RuntimeError(f"fuzz worker did not start; see {self.stderr_path}")
        self.info = json.loads(line)

    def _readline(self, timeout: float) -> str | None:
        """A line from the child; None when none came in ``timeout`` seconds."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline()  # "" at end of file: the child has gone

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self.stderr.close()
        self.proc = None

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_bytes()[-600:].decode("utf-8", "replace")
        except OSError:
            return ""

    def run(self, api: str, path: str, good: str, timeout: float) -> dict:
        """One call; a timeout is tried once more in a fresh child, so that a machine busy with something
        else is not taken for a hang (both tries are reported)."""
        res = self._run(api, path, good, timeout)
        if res["outcome"] != "timeout":
            return res
        again = self._run(api, path, good, timeout)
        if again["outcome"] == "timeout":
            again["detail"] = f"{again['detail']} (twice)"
        else:
            again["detail"] = f"{again['detail']} [the first try timed out after {timeout:.0f} s; not reproduced]"
            again["retried"] = True
        return again

    def _run(self, api: str, path: str, good: str, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self.start()
        t0 = time.perf_counter()
        try:
            self.proc.stdin.write(json.dumps({"api": api, "path": path, "good": good}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._readline(timeout)
        if line:
            return json.loads(line)
        seconds = time.perf_counter() - t0
        if line == "":  # its end of the pipe closed: it is exiting; wait for its status
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:  # still running: a hang
            self.stop()
            return {"outcome": "timeout", "detail": f"no answer in {timeout:.0f} s", "seconds": seconds,
                    "peak_growth_mb": None}
        rc = self.proc.returncode
        self.proc.wait()
        self.stderr.flush()
        tail = self.stderr_tail()
        self.stop()
        outcome = "memory" if "memory allocation of" in tail or "MemoryError" in tail else "crash"
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
        return {"outcome": outcome, "detail": f"child died ({how}): {tail[-300:]}", "seconds": seconds,
                "peak_growth_mb": None}


def run_cases(cases: list[Case], good: str, *, workers: int = 1, timeout: float = 20.0, spike_mb: int = 256,
              limit_mb: int = 2048, apis: tuple[str, ...] = APIS, log_dir: Path | None = None,
              progress: bool = False) -> list[dict]:
    """Every case through every API; one row per (case, api). Calls go round-robin to ``workers``
    children, each a strictly sequential worker, so a hang or crash is pinned to one call."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="fuzz_logs_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(c, api) for c in cases for api in apis]
    pool = [Worker(spike_mb, limit_mb, log_dir) for _ in range(workers)]
    rows: list[dict] = []
    try:
        if workers == 1:
            for k, (case, api) in enumerate(tasks):
                rows.append(_row(case, api, pool[0].run(api, case.path, good, timeout)))
                if progress and k % 100 == 0:
                    print(f"  {k}/{len(tasks)} calls", file=sys.stderr, flush=True)
        else:
            from concurrent.futures import ThreadPoolExecutor

            shards = [tasks[w::workers] for w in range(workers)]

            def serve(w):
                return [_row(c, a, pool[w].run(a, c.path, good, timeout)) for c, a in shards[w]]

            with ThreadPoolExecutor(workers) as ex:
                for part in ex.map(serve, range(workers)):
                    rows.extend(part)
            rows.sort(key=lambda r: (r["case"], apis.index(r["api"])))
    finally:
        for w in pool:
            w.stop()
    return rows


def _row(case: Case, api: str, res: dict) -> dict:
    res = dict(res)
    outcome = res["outcome"]
    allowed = ALLOWED.get(api, {"ok"})
    if outcome in ("crash", "timeout", "memory", "bad_result") or outcome in allowed:
        verdict = "pass" if outcome in allowed else "FAIL"
    elif outcome in ("VideoDecodeError", "ValueError", "MemoryError", "FileNotFoundError"):
        verdict = "FAIL"  # a clean error, but not one this API may raise here (e.g. skip mode raising)
    else:
        res["detail"] = f"{outcome}: {res['detail']}"
        verdict = "FAIL"
    if case.mutation == "none" and outcome != "ok":
        verdict = "FAIL"  # the undamaged control must decode
    return {"case": case.index, "mutation": case.mutation, "source": case.source, "mutation_detail": case.detail,
            "path": case.path, "api": api, "verdict": verdict, **res}


def summarize(rows: list[dict]) -> dict:
    by_mut: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    by_api: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        by_mut[r["mutation"]][r["api"]][r["outcome"]] += 1
        by_api[r["api"]][r["outcome"]] += 1
    secs = sorted(r["seconds"] for r in rows)
    growth = [r["peak_growth_mb"] for r in rows if r.get("peak_growth_mb") is not None]
    return {
        "cases": len({r["case"] for r in rows}),
        "calls": len(rows),
        "failures": sum(r["verdict"] == "FAIL" for r in rows),
        "timeouts_not_reproduced": sum(bool(r.get("retried")) for r in rows),
        "differs_with_decoder_threads": dict(Counter(r["mutation"] for r in rows
                                                     if THREADS_DIFFER in str(r.get("detail", "")))),
        "outcomes": dict(Counter(r["outcome"] for r in rows)),
        "by_api": {a: dict(c) for a, c in by_api.items()},
        "by_mutation": {m: {a: dict(c) for a, c in d.items()} for m, d in by_mut.items()},
        "seconds_per_call": {"median": secs[len(secs) // 2], "max": secs[-1]},
        "peak_growth_mb": {"median": sorted(growth)[len(growth) // 2] if growth else None,
                           "max": max(growth) if growth else None},
    }


def _examples(cases: list[Case], per: int = 3) -> dict[str, list[str]]:
    """What the first cases of each mutation did, e.g. ``mp4_field``: ``[h264_bf.mp4] moov/.../stsz...``."""
    out: dict[str, list[str]] = defaultdict(list)
    for c in cases:
        if len(out[c.mutation]) < per:
            out[c.mutation].append(f"{c.source}: {c.detail}")
    return dict(out)


def markdown(summary: dict) -> str:
    cols = ["ok", "VideoDecodeError", "ValueError", "other"]
    lines = ["| mutation | API | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for m in MUTATIONS:
        for api in APIS:
            c = summary["by_mutation"].get(m, {}).get(api)
            if not c:
                continue
            other = {k: v for k, v in c.items() if k not in cols[:3]}
            cells = [str(c.get(k, 0)) for k in cols[:3]] + [", ".join(f"{k} {v}" for k, v in other.items()) or "0"]
            lines.append(f"| {m} | {api} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="child processes (each runs one call at a time)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per call before it counts as a hang")
    ap.add_argument("--spike-mb", type=int, default=256, help="peak RSS growth of one call that counts as a spike")
    ap.add_argument("--limit-mb", type=int, default=2048, help="RLIMIT_AS headroom above the child's start")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fuzz.json")
    ap.add_argument("--work", type=Path, default=HERE / "results" / "tmp" / "fuzz")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args.spike_mb, args.limit_mb)
        return 0

    t0 = time.perf_counter()
    sources = make_sources(args.work / "sources")
    cases = make_cases(args.cases, args.seed, sources, args.work / "cases")
    good = str(sources["mpeg4.avi"])
    rows = run_cases(cases, good, workers=args.workers, timeout=args.timeout, spike_mb=args.spike_mb,
                     limit_mb=args.limit_mb, log_dir=args.work / "logs", progress=True)
    summary = summarize(rows)
    failures = [r for r in rows if r["verdict"] == "FAIL"]
    keep = HERE / "results" / "tmp" / "fuzz_failures"
    keep.mkdir(parents=True, exist_ok=True)
    for r in failures:  # keep the damaged file so the failure can be replayed
        dst = keep / Path(r["path"]).name
        dst.write_bytes(Path(r["path"]).read_bytes())
        r["kept_as"] = str(dst.relative_to(HERE.parent))
    import c3d_distill

    result = {
        "command": "python benches/fuzz.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed, "workers": args.workers, "timeout_s": args.timeout, "spike_mb": args.spike_mb,
        "rlimit_as_headroom_mb": args.limit_mb, "version": c3d_distill.__version__,
        "native_module": native_module(),
        "sources": {n: {"bytes": p.stat().st_size} for n, p in sources.items()},
        "wall_s": round(time.perf_counter() - t0, 1),
        **summary,
        "examples": _examples(cases),
        "failed_calls": [{k: r[k] for k in ("case", "mutation", "source", "mutation_detail", "api", "outcome",
                                            "detail", "kept_as")} for r in failures],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    print(markdown(summary))
    print(f"\n{summary['cases']} cases, {summary['calls']} calls, {summary['failures']} failed, "
          f"{result['wall_s']} s; median {summary['seconds_per_call']['median'] * 1e3:.0f} ms per call, "
          f"max peak growth {summary['peak_growth_mb']['max']:.1f} MB -> {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
