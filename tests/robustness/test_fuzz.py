"""A short run of the reader fuzzer (benches/fuzz.py): damaged real videos and random bytes through probe,
VideoReader.get_frames and read_clips in a child process with a time and memory limit. Every call must
end in a result or a clean error: no crash, hang or memory spike."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))

import fuzz  # noqa: E402


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    return fuzz.make_sources(tmp_path_factory.mktemp("fuzz_sources"))


def test_short_fuzz_run_has_no_crash_hang_or_spike(sources, tmp_path):
    # 3 cases of each of the 14 mutations (42 cases, 168 calls); seed 7 differs from the benchmark's 0
    cases = fuzz.make_cases(3 * len(fuzz.MUTATIONS), 7, sources, tmp_path / "cases")
    rows = fuzz.run_cases(cases, str(sources["mpeg4.avi"]), timeout=30, log_dir=tmp_path / "logs")
    assert len(rows) == len(cases) * len(fuzz.APIS)
    failed = [f"{r['mutation']} [{r['mutation_detail']}] {r['api']}: {r['outcome']} {r['detail']}"
              for r in rows if r["verdict"] == "FAIL"]
    assert not failed, "\n".join(failed)
    # The run tells outcomes apart: the controls decode, pure noise is refused by every raising API.
    for r in rows:
        if r["mutation"] == "none":
            assert r["outcome"] == "ok", r
        if r["mutation"] == "random_bytes" and r["api"] != "read_clips_skip":
            assert r["outcome"] == "VideoDecodeError", r
    s = fuzz.summarize(rows)
    assert s["cases"] == len(cases) and s["failures"] == 0


def test_harness_catches_crash_hang_and_spike(sources, tmp_path):
    """The fuzzer's verdicts can fail: a child killed by a signal, one that stops answering and one whose
    peak memory jumps are each reported, and the worker comes back for the next call."""
    case = fuzz.Case(0, "none", "mpeg4.avi", "control", str(sources["mpeg4.avi"]))
    w = fuzz.Worker(spike_mb=256, limit_mb=2048, log_dir=tmp_path)
    try:
        good = str(sources["mpeg4.avi"])
        assert w.run("selftest:abort", good, good, 30)["outcome"] == "crash"
        hang = w.run("selftest:hang", good, good, 3)
        assert hang["outcome"] == "timeout" and "(twice)" in hang["detail"], hang  # retried in a fresh child
        spike = w.run("selftest:spike", good, good, 30)
        assert spike["outcome"] == "memory" and spike["peak_growth_mb"] > 500, spike
        ok = w.run("probe", good, good, 30)
        assert ok["outcome"] == "ok" and ok["peak_growth_mb"] < 100, ok
        assert fuzz._row(case, "probe", ok)["verdict"] == "pass"
        assert fuzz._row(case, "probe", {"outcome": "RuntimeError", "detail": "x"})["verdict"] == "FAIL"
        assert fuzz._row(case, "read_clips_skip", {"outcome": "VideoDecodeError", "detail": "x"})["verdict"] == "FAIL"
        assert w.starts == 4  # restarted after the abort and after each hang, not after the spike
    finally:
        w.stop()


def test_container_parsers_find_the_header_fields(sources):
    avi = sources["mpeg4.avi"].read_bytes()
    fields, movi, idx1 = fuzz.riff_fields(avi)
    labels = {f.label: f for f in fields}
    assert avi[movi + 8:movi + 12] == b"movi" and avi[idx1:idx1 + 4] == b"idx1"
    assert fuzz.read_field(avi, labels["avih.dwTotalFrames"]) == 40
    assert (fuzz.read_field(avi, labels["avih.dwWidth"]), fuzz.read_field(avi, labels["avih.dwHeight"])) == (160, 120)
    assert fuzz.read_field(avi, labels["strf.biWidth"]) == 160

    mp4 = sources["h264_bf.mp4"].read_bytes()
    fields, top = fuzz.mp4_fields(mp4)
    labels = {f.label: f for f in fields}
    assert {"ftyp", "moov", "mdat"} <= set(top)
    stbl = "moov/trak/mdia/minf/stbl"
    assert fuzz.read_field(mp4, labels[f"{stbl}/stsz.sample_count"]) == 40
    assert fuzz.read_field(mp4, labels[f"{stbl}/stsd/sample_entry.width"]) == 160
    assert fuzz.read_field(mp4, labels[f"{stbl}/stsd/sample_entry.height"]) == 120
    assert fuzz.read_field(mp4, labels["moov/trak/tkhd.width"]) == 160 << 16  # 16.16 fixed point
    moov_at, moov_size = top["moov"]
    assert struct.unpack_from(">I", mp4, moov_at)[0] == moov_size


def test_cases_are_deterministic(sources, tmp_path):
    a = fuzz.make_cases(20, 3, sources, tmp_path / "a")
    b = fuzz.make_cases(20, 3, sources, tmp_path / "b")
    assert [(c.mutation, c.source, c.detail) for c in a] == [(c.mutation, c.source, c.detail) for c in b]
    assert all(Path(x.path).read_bytes() == Path(y.path).read_bytes() for x, y in zip(a, b, strict=True))
