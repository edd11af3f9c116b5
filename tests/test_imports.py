"""Import hygiene: every module imports on its own (no import-order dependence), module-level
imports form no cycle, and ``import dfine`` pulls in no optional library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import dfine

PACKAGE = Path(dfine.__file__).resolve().parent
REPO = PACKAGE.parent
OPTIONAL = ("fiftyone", "supervision", "trackers", "nncf", "openvino", "onnxruntime", "cv2")


def _modules() -> Dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _module_level_imports(name: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """The package modules ``name`` imports when it is imported (not those imported inside
    functions or under ``if TYPE_CHECKING:``)."""
    is_pkg = path.name == "__init__.py"
    found: Set[str] = set()

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + getattr(node, "finalbody", []) +
                      [s for h in getattr(node, "handlers", []) for s in h.body])
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    found.add(sub if sub in modules else target)
    visit(ast.parse(path.read_text()).body)
    return {m for m in found if m in modules and m != name}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    out: List[List[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    """No two modules import each other at module level, directly or around a loop (a package's
    ``__init__`` counts as a module; imports inside functions are lazy and do not count)."""
    modules = _modules()
    graph = {name: _module_level_imports(name, path, modules) for name, path in modules.items()}
    assert graph["dfine.engine.trainer"] >= {"dfine.checkpoint", "dfine.config"}  # the parser sees imports
    assert _cycles(graph) == []


# One interpreter imports the third-party libraries once, then forks a child per module: each child
# starts with no module of the package loaded, so it imports exactly what that module needs, in its order.
_ISOLATED = """
import importlib, json, os, sys, traceback
import numpy, PIL.Image, scipy.optimize, torch, torchvision, tqdm, yaml  # third-party, loaded once
assert not [m for m in sys.modules if m.split('.')[0] == 'dfine']
failed = {}
for name in json.loads(sys.argv[1]):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(name)
            code, msg = 0, b''
        except BaseException:
            code, msg = 1, traceback.format_exc().encode()
        os.write(w, msg)
        os._exit(code)
    os.close(w)
    with os.fdopen(r, 'rb') as f:
        msg = f.read().decode()
    if os.waitpid(pid, 0)[1]:
        failed[name] = msg.strip().splitlines()[-1] if msg.strip() else 'crashed'
print(json.dumps(failed))
"""


def test_every_module_imports_alone():
    names = sorted(_modules())
    done = subprocess.run([sys.executable, "-c", _ISOLATED, json.dumps(names)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}


def test_import_dfine_pulls_no_optional_library():
    code = (f"import dfine, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
