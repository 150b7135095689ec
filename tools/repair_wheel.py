"""``auditwheel repair`` (same arguments), bundling the X11 and GLib libraries as well.

auditwheel leaves out what the manylinux policies take for granted on a desktop (libX11, libXext,
libXrender, libglib, libgobject, libexpat, libGL ...). Debian's FFmpeg needs several of them at load
time (libavutil's VA-API/VDPAU back ends link libX11, libavcodec's SVG decoder links librsvg, hence
cairo, pango and GLib), while headless GPU machines and slim containers have none: a wheel relying on
them fails to import there. So the list of libraries assumed present is cut down to glibc's own, the
GCC runtime (which every C++ extension, torch included, needs from the system, and which must not be
loaded twice), zlib (essential on every Debian and Ubuntu) and expat (a Debian or Ubuntu Python's
pyexpat links it; Debian 12's copy would also raise the wheel's glibc floor from 2.35 to 2.36).
Everything else a library needs is copied into the wheel.

auditwheel has no option for this; its policy file is swapped before it runs. That file's location is
an internal detail: a release that moves it fails here loudly rather than building a wheel that leaves
libraries out (pyproject.toml pins the major version).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from auditwheel import policy
from auditwheel.libc import Libc
from auditwheel.main import main

ASSUMED_PRESENT = {
    # glibc
    "libc.so.6", "libm.so.6", "libmvec.so.1", "libdl.so.2", "librt.so.1", "libpthread.so.0",
    "libresolv.so.2", "libnsl.so.1", "libutil.so.1", "libanl.so.1",
    # the GCC runtime
    "libgcc_s.so.1", "libstdc++.so.6", "libatomic.so.1",
    "libz.so.1", "libexpat.so.1",
}


def narrowed_policies(source: Path) -> list[dict]:
    policies = json.loads(source.read_text())
    for p in policies:
        p["lib_whitelist"] = [lib for lib in p["lib_whitelist"] if lib in ASSUMED_PRESENT]
    return policies


if __name__ == "__main__":
    source = policy._POLICY_JSON_MAP[Libc.GLIBC]
    with tempfile.TemporaryDirectory() as tmp:
        narrowed = Path(tmp) / source.name
        narrowed.write_text(json.dumps(narrowed_policies(source)))
        policy._POLICY_JSON_MAP[Libc.GLIBC] = narrowed
        sys.argv = ["auditwheel", "repair", *sys.argv[1:]]
        sys.exit(main())
