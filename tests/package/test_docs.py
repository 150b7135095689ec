"""The documentation agrees with the repository: benchmark tables with their JSON, links with their
targets, and the product speaks of itself only."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("render_tables", ROOT / "tools" / "render_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tracked(pattern: str) -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z", pattern], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.decode().split("\0") if p]


def test_every_table_matches_its_json():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "render_tables.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_docs_have_tables_and_each_has_a_renderer():
    rt = _tool()
    names = [m.group(2) for f in rt.markdown_files() for m in rt.MARKER.finditer(f.read_text())]
    assert {"headline", "models_cpu", "loader_ucf", "transfer_random", "train", "fuzz", "memory"} <= set(names)
    assert set(names) <= set(rt.RENDERERS)


def test_check_fails_when_a_table_and_its_json_disagree(tmp_path):
    rt = _tool()
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benches" / "results", results, ignore=shutil.ignore_patterns("tmp"))
    doc = tmp_path / "benchmarks.md"
    shutil.copy(ROOT / "docs" / "benchmarks.md", doc)
    args = ["--check", "--results", str(results), str(doc)]
    assert rt.main(args) == 0
    # one figure of the JSON moves: the rendered table no longer matches the document
    path = results / "models_cpu.json"
    data = json.loads(path.read_text())
    data["batches"]["8"]["models"][0]["plain"]["clips_s"] *= 2
    path.write_text(json.dumps(data))
    assert rt.main(args) == 1
    assert doc.read_text() == (ROOT / "docs" / "benchmarks.md").read_text()  # --check writes nothing
    # rendering again brings the document back in line, and only the changed table moved
    assert rt.main(["--results", str(results), str(doc)]) == 0
    assert rt.main(args) == 0
    old, new = (ROOT / "docs" / "benchmarks.md").read_text(), doc.read_text()
    pairs = zip(rt.MARKER.finditer(old), rt.MARKER.finditer(new), strict=True)
    changed = [m.group(2) for m, n in pairs if m.group(0) != n.group(0)]
    assert changed == ["models_cpu"]


def test_check_fails_on_an_unknown_table(tmp_path):
    rt = _tool()
    doc = tmp_path / "x.md"
    doc.write_text("<!-- table:no_such_table -->\n<!-- /table:no_such_table -->\n")
    assert rt.main(["--check", str(doc)]) == 1


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        a = _anchor(line.lstrip("#"))
        n = seen.get(a, 0)
        seen[a] = n + 1
        out.add(a if n == 0 else f"{a}-{n}")
    return out


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def test_every_relative_link_resolves():
    problems = []
    for md in _tracked("*.md"):
        text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
        for m in LINK.finditer(text):
            target = m.group(1) or m.group(2)
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file, _, frag = target.partition("#")
            dest = (md.parent / file).resolve() if file else md
            if not dest.exists():
                problems.append(f"{md.relative_to(ROOT)}: {target}: no such file")
            elif frag and dest.suffix == ".md" and frag not in _anchors(dest):
                problems.append(f"{md.relative_to(ROOT)}: {target}: no such heading")
    assert not problems, "\n".join(problems)


def test_anchor_rule():
    assert _anchor(" Fast execution paths (`fast=True`, the default)") == "fast-execution-paths-fasttrue-the-default"
    assert _anchor("Damaged and random files (fuzzing)") == "damaged-and-random-files-fuzzing"


def test_the_product_speaks_of_itself_only():
    """No word of how it was made in any tracked file; pytest's fixture scope and ONNX Runtime's class names
    (``InferenceSession``, ``SessionOptions``) are the uses allowed."""
    words = "|".join(["sess" + "ion", "iss" + "ue [0-9]", "scr" + "atch", "device" + "host", "DES" + r"IGN\.md"])
    try:
        proc = subprocess.run(["git", "grep", "-n", "-i", "-E", words], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        pytest.skip("git is not installed")
    if proc.returncode not in (0, 1):
        pytest.skip("not a git checkout")
    allowed = re.compile(r'scope="session"|InferenceSession|SessionOptions')
    hits = [line for line in proc.stdout.splitlines()
            if re.search("sess" + "ion", allowed.sub("", line), re.I) or not allowed.search(line)]
    assert not hits, "\n".join(hits)


def test_results_record_no_machine_paths(tmp_path, monkeypatch):
    """Benchmarks write their JSON through benches/_common.write_json: paths under the repository become
    relative, those under $OUT or the temp folder name the variable; the recorded results hold none."""
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "benches" / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    result = {"command": f"python benches/bench_models.py --out {ROOT}/benches/results/models_cpu.json",
              "runs": [f"{tmp_path}/out/gpu/train.json", str(ROOT)], "other": "/usr/share/x", "n": 3}
    path = tmp_path / "r.json"
    common.write_json(path, result)
    assert json.loads(path.read_text()) == {
        "command": "python benches/bench_models.py --out benches/results/models_cpu.json",
        "runs": ["$OUT/gpu/train.json", "."], "other": "/usr/share/x", "n": 3}
    machine = re.compile(r"(?<![\w.$])/(root|home|tmp|work)/")
    found = [str(p.relative_to(ROOT)) for p in _tracked("benches/results/*") if machine.search(p.read_text())]
    assert not found, found
