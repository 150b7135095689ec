"""The wheel `make wheel` builds, installed with pip into a fresh venv next to numpy and nothing else,
used from outside the repository: its FFmpeg is the copy it carries, and it decodes the same frames as
the in-tree build. Last, it still imports and decodes with the system's libraries hidden, all but
glibc, the GCC runtime, zlib and expat (a headless GPU machine or a slim container has no more)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import videogen
from c3d_distill.clips import probe, read_clips

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"

# What the installed extension may still take from the system: glibc's libraries, the GCC runtime,
# zlib and expat. Everything else, FFmpeg first, must resolve inside the package.
SYSTEM_OK = re.compile(
    r"^(linux-vdso\.so\.1|ld-linux-x86-64\.so\.2|lib(c|m|mvec|dl|rt|pthread|resolv|nsl|util|anl)\.so\.\d+"
    r"|libgcc_s\.so\.1|libstdc\+\+\.so\.6|libatomic\.so\.1|libz\.so\.1|libexpat\.so\.1)$"
)

# Run by the venv's interpreter: only numpy may be imported besides the package.
READ = """
import json, sys
import numpy as np
import c3d_distill
from c3d_distill.clips import probe, read_clips

video, out = sys.argv[1], sys.argv[2]
info = probe(video)
batch = read_clips([(video, range(0, 16)), (video, [59, 3, 3, 40] * 4)], layout="NTHWC")
full = read_clips([(video, range(20, 24))], size=None, crop=None, layout="NTHWC")
np.savez(out, batch=batch, full=full)
heavy = sorted(m for m in ("torch", "matplotlib", "av", "tqdm") if m in sys.modules)
print(json.dumps({"file": c3d_distill.__file__, "probe": info, "heavy": heavy}))
"""


def _newest_source() -> float:
    """The latest modification among what goes into the wheel."""
    files = [REPO / n for n in ("Cargo.toml", "Cargo.lock", "pyproject.toml", "Makefile")]
    files += (REPO / "rust").rglob("*.rs")
    files += (REPO / "tools").rglob("*.py")
    files += (p for p in (REPO / "python").rglob("*") if p.suffix in (".py", ".pyi") or p.name == "py.typed")
    return max(p.stat().st_mtime for p in files if p.is_file())


@pytest.fixture(scope="module")
def wheel() -> Path:
    """dist/'s wheel, rebuilt with `make wheel` unless it is newer than every source file."""
    built = sorted(DIST.glob("c3d_distill-*.whl"))
    if len(built) == 1 and built[0].stat().st_mtime > _newest_source():
        return built[0]
    if shutil.which("make") is None:
        pytest.fail("cannot build the wheel: no `make` command")
    proc = subprocess.run(["make", "wheel"], cwd=REPO, capture_output=True, text=True, timeout=3600)
    built = sorted(DIST.glob("c3d_distill-*.whl"))
    if proc.returncode != 0 or len(built) != 1:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        pytest.fail(f"`make wheel` failed (exit {proc.returncode}, wheels in dist/: "
                    f"{[p.name for p in built]}):\n{tail}", pytrace=False)
    return built[0]


def _clean_env() -> dict[str, str]:
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "LD_PRELOAD"}
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> dict:
    """A fresh venv outside the repository with the wheel (no dependencies) and numpy installed."""
    root = tmp_path_factory.mktemp("wheel_venv")
    assert not root.resolve().is_relative_to(REPO), root
    env = _clean_env()
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, env=env, timeout=300)
    python = root / "venv" / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for args in (["--no-deps", str(wheel)], [f"numpy=={np.__version__}"]):
        proc = subprocess.run(pip + args, capture_output=True, text=True, env=env, cwd=root, timeout=900)
        assert proc.returncode == 0, f"pip install {args}:\n{proc.stdout}{proc.stderr}"
    platlib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"],
                             check=True, capture_output=True, text=True, env=env, cwd=root).stdout.strip()
    native = sorted((Path(platlib) / "c3d_distill").glob("_native*.so"))
    assert len(native) == 1, f"installed extension: {native}"
    return {"root": root, "python": python, "package": Path(platlib) / "c3d_distill", "native": native[0],
            "env": env}


def _ldd(path: Path, *, ldd: list[str] | None = None, run=subprocess.run) -> dict[str, str]:
    """soname -> where it resolves ("not found" where it does not)."""
    out = run([*(ldd or ["ldd"]), str(path)], check=True, capture_output=True, text=True).stdout
    libs = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)(?: => (not found|\S+))?", line)
        if m:
            libs[m.group(1).rsplit("/", 1)[-1]] = m.group(2) or m.group(1)
    return libs


def test_extension_links_only_the_libraries_it_carries(venv):
    libs = _ldd(venv["native"])
    assert not [n for n, p in libs.items() if p == "not found"], libs
    bundled = (venv["package"].parent / "c3d_distill.libs").resolve()
    outside = {n: p for n, p in libs.items() if not Path(p).resolve().is_relative_to(bundled)}
    ffmpeg = {n: p for n, p in libs.items() if n.startswith(("libav", "libsw"))}
    assert {"libavcodec", "libavformat", "libavutil", "libswscale"} <= {n.split("-")[0] for n in ffmpeg}, libs
    assert not [n for n in ffmpeg if n in outside], f"FFmpeg from outside the package: {outside}"
    assert not [n for n in outside if not SYSTEM_OK.match(n)], f"from the system: {outside}"


def _read_in_venv(venv, video: Path, out: Path, wrap: list[str] | None = None) -> dict:
    proc = subprocess.run([*(wrap or []), str(venv["python"]), "-c", READ, str(video), str(out)],
                          capture_output=True, text=True, env=venv["env"], cwd=venv["root"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_against_in_tree(result: dict, video: Path, out: Path) -> None:
    assert result["heavy"] == [], f"imported besides numpy: {result['heavy']}"
    expected = probe(video)
    assert {k: result["probe"][k] for k in ("width", "height", "num_frames", "codec", "keyframes")} == \
           {k: expected[k] for k in ("width", "height", "num_frames", "codec", "keyframes")}
    got = np.load(out)
    assert got["batch"].shape == (2, 16, 112, 112, 3) and got["batch"].dtype == np.uint8
    assert got["full"].shape == (1, 4, 240, 320, 3)
    np.testing.assert_array_equal(
        got["batch"], read_clips([(video, range(0, 16)), (video, [59, 3, 3, 40] * 4)], layout="NTHWC"))
    np.testing.assert_array_equal(got["full"], read_clips([(video, range(20, 24))], size=None, crop=None,
                                                          layout="NTHWC"))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    # The test's own ffmpeg makes the clip; the installed package must not need it.
    return videogen.encode(tmp_path_factory.mktemp("wheel_video") / "clip.mp4", codec="libx264", bframes=3,
                           gop=12, frames=60)


def test_installed_wheel_probes_and_reads_like_the_in_tree_build(venv, video):
    out = venv["root"] / "read.npz"
    result = _read_in_venv(venv, video, out)
    assert Path(result["file"]).resolve().is_relative_to(venv["package"].resolve()), result["file"]
    _check_against_in_tree(result, video, out)


def test_installed_wheel_reads_with_the_system_libraries_hidden(venv, video, tmp_path):
    """The system's library folders are covered (in a mount namespace of the test's own) by one that
    holds only the libraries the wheel may take from the system and those the interpreter needs."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -m is not permitted here")
    multiarch = {Path(d).resolve() for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")
                 if Path(d).is_dir()}
    if not multiarch:
        pytest.skip("no /usr/lib/x86_64-linux-gnu to cover")
    stage = tmp_path / "lib"
    stage.mkdir()
    libs = _ldd(venv["native"]) | _ldd(Path(os.path.realpath(venv["python"])))
    for name, path in libs.items():
        p = Path(path)
        if p.is_absolute() and p.exists() and p.resolve().parent in multiarch:
            shutil.copy2(p, stage / name)
    # The loader itself, wherever the program interpreter's path leads.
    shutil.copy2(Path("/lib64/ld-linux-x86-64.so.2").resolve(), stage / "ld-linux-x86-64.so.2")
    hide = " && ".join(f"mount --bind {stage} {d}" for d in sorted(multiarch))
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{hide} && exec "$@"', "sh"]

    def in_namespace(cmd, **kw):
        return subprocess.run([*wrap, *cmd], **kw)

    hidden = _ldd(venv["native"], ldd=["/lib64/ld-linux-x86-64.so.2", "--list"], run=in_namespace)
    assert not [n for n, p in hidden.items() if p == "not found"], hidden
    out = tmp_path / "read.npz"
    _check_against_in_tree(_read_in_venv(venv, video, out, wrap=wrap), video, out)
