"""The hand-written stubs (_native.pyi) describe the compiled module: the same public names, and for
each function the same parameters (names, order, keyword-only), read from the compiled functions'
``__text_signature__``."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import c3d_distill
from c3d_distill import _native

STUB = Path(c3d_distill.__file__).parent / "_native.pyi"


def stub_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(STUB.read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def stub_names() -> set[str]:
    tree = ast.parse(STUB.read_text())
    names = set(stub_functions())
    for n in tree.body:
        if isinstance(n, ast.ClassDef):
            names.add(n.name)
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            names.add(n.target.id)
    return names


def test_same_public_names():
    compiled = {n for n in dir(_native) if not n.startswith("_")} | {"__version__"}
    assert stub_names() == compiled


def test_same_parameters():
    for name, fn in stub_functions().items():
        sig = inspect.signature(getattr(_native, name))
        compiled = [(p.name, p.kind == p.KEYWORD_ONLY) for p in sig.parameters.values()]
        a = fn.args
        stub = [(x.arg, False) for x in a.posonlyargs + a.args] + [(x.arg, True) for x in a.kwonlyargs]
        assert compiled == stub, name


def test_exception_is_a_runtime_error():
    assert issubclass(_native.VideoDecodeError, RuntimeError)
