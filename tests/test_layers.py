"""The house in layers (docs/architecture.md): the import-linter contracts in pyproject.toml hold, the import graph of
idsvc and cli has no cycle (type-only imports included), and no module but the registry outgrows one sitting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
#: The registry is the one owner of SQL, so every query lives there (its docstring says why it is long).
LONG_ON_PURPOSE = {"idsvc/storage/registry.py"}


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The import graph's strongly connected components of more than one module (Tarjan), i.e. its cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_the_import_graph_has_no_cycle():
    graph = grimp.build_graph("idsvc", "cli")
    assert len(graph.modules) > 80  # the whole package was read
    assert cycles(graph) == []


def test_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    """The check above can fail: two modules that import each other are one cycle."""
    pkg = tmp_path / "loop_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from loop_pkg import b\n")
    (pkg / "b.py").write_text("from loop_pkg import a\n")
    (pkg / "c.py").write_text("from loop_pkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cycles(grimp.build_graph("loop_pkg")) == [["loop_pkg.a", "loop_pkg.b"]]


def test_the_layer_contracts_hold():
    tool = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(tool) if tool.is_file() else "lint-imports", "--no-cache"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_modules_are_readable_in_one_sitting():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "idsvc").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert set(long) <= LONG_ON_PURPOSE, long
