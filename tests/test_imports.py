"""Every module imports on its own, and the package's import graph has no cycles and keeps its layers.

Layers (an import goes down or sideways, never up): the core (``crossguard/``) imports nothing of the
subpackages; ``runtime`` only the core; ``train`` the core and the runtime (never export or benchmarks);
``export`` anything but benchmarks; nothing imports ``benchmarks``. The graph is read from the source
(``ast``), function-local imports included: a cycle hidden inside a function is still a cycle.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crossguard.paths import package_dir

SUBPACKAGES = ("runtime", "train", "export", "benchmarks")
ALLOWED = {"core": {"core"}, "runtime": {"core", "runtime"}, "train": {"core", "runtime", "train"},
           "export": {"core", "runtime", "train", "export"},
           "benchmarks": {"core", "runtime", "train", "export", "benchmarks"}}
# Cycles that a rewrite of train/ removes; each entry must still be a cycle (the test says when to drop it).
KNOWN_CYCLES: list[set[str]] = []  # none today; a cycle added here needs a comment saying why


def _modules() -> dict[str, Path]:
    """Module name -> source file of the core and every subpackage."""
    roots = {"crossguard": package_dir("runtime").parent / "crossguard"}
    roots.update({f"crossguard.{sub}": package_dir(sub) for sub in SUBPACKAGES})
    found = {}
    for prefix, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if prefix == "crossguard" and parts[0] in SUBPACKAGES:  # a wheel nests them inside crossguard/
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((prefix, *parts))] = path
    return found


MODULES = _modules()


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Our modules an import statement loads (``from pkg import sub`` counts ``pkg.sub`` when it is one)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        source = node.module or ""
        if node.level:  # relative: from the module's package, one level up per extra dot
            base = module if is_package else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = ".".join(p for p in (base, node.module) if p)
        names = [source] + [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in MODULES]
    out = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[module] = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                         for t in _targets(module, path.name == "__init__.py", node)}
    return graph


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else "core"


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_graph_reader_sees_local_imports_and_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [{"a", "b", "c"}]
    assert "crossguard.runtime.preprocess" in import_graph()["crossguard.train.guard.features"]
    assert layer("crossguard.metrics") == "core" and layer("crossguard.train.guard.model") == "train"


def test_no_import_cycles():
    found = cycles(import_graph())
    unexpected = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert not unexpected, f"import cycles: {unexpected}"
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not gone, f"no longer cycles: remove them from KNOWN_CYCLES: {gone}"


def test_layers():
    broken = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                    if layer(b) not in ALLOWED[layer(a)])
    assert not broken, "imports against the layers:\n" + "\n".join(broken)


CHILD = textwrap.dedent("""
    import importlib, json, os, sys, traceback
    for heavy in ("numpy", "PIL.Image", "onnx", "onnxruntime", "tokenizers", "torch", "transformers",
                  "safetensors", "peft", "matplotlib.pyplot"):  # third-party: loaded once, before the forks
        try:
            importlib.import_module(heavy)
        except Exception:
            pass
    assert not any(m == "crossguard" or m.startswith("crossguard.") for m in sys.modules)
    failures = {}
    for name in json.loads(sys.argv[1]):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # a child with none of our modules loaded imports just this one
            os.close(read)
            try:
                importlib.import_module(name)
                code = 0
            except BaseException:
                os.write(write, traceback.format_exc(limit=4)[-1500:].encode())
                code = 1
            os._exit(code)
        os.close(write)
        message = b""
        while chunk := os.read(read, 4096):
            message += chunk
        os.close(read)
        _, status = os.waitpid(pid, 0)
        if status:
            failures[name] = message.decode(errors="replace") or f"exit status {status}"
    print(json.dumps(failures))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="imports each module in a forked child")
def test_every_module_imports_first():
    """Each module imported first, in an interpreter where none of ours is loaded yet (third-party libraries
    are loaded once before forking, so this takes seconds): an import-order cycle fails here."""
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(sorted(MODULES))], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failures, "\n\n".join(f"{name}:\n{why}" for name, why in failures.items())
    assert len(MODULES) > 80
