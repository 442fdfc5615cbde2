"""The import rules of docs/architecture.md, read from the source: no import cycles between modules, and imports
point one way (web -> indexer -> engine). Lazy imports inside functions count too: a cycle hidden in a function
body still ties two modules together."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "indexer", "web")
# Which top-level package may import which (itself always allowed).
ALLOWED = {"engine": set(), "indexer": {"engine"}, "web": {"indexer", "engine"}}


def module_files(root: Path = REPO) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules a file imports (a `from pkg import name` of a submodule counts as that submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in PACKAGES)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for name, path in modules.items():
        # An import of a.b.c also runs a/__init__ and a/b/__init__, but those are not edges of the design: only
        # the module named is. Package __init__ modules that re-export (engine/__init__) are nodes like any other.
        graph[name] = {m for m in imports_of(path, modules) if m in modules and m != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in sorted(graph.items()):
        top = src.split(".")[0]
        bad += [f"{src} imports {t}" for t in sorted(targets)
                if t.split(".")[0] != top and t.split(".")[0] not in ALLOWED[top]]
    return bad


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(module_files()))
    assert not cycles, "import cycles (break them as docs/architecture.md says): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_imports_point_one_way() -> None:
    bad = layer_violations(import_graph(module_files()))
    assert not bad, "engine/ may import nothing of the project, indexer/ only engine/: " + "; ".join(bad)


def test_every_subpackage_says_what_it_owns() -> None:
    missing = [str(p.relative_to(REPO)) for name, p in module_files().items()
               if p.name == "__init__.py" and not (ast.get_docstring(ast.parse(p.read_text())) or "").strip()]
    assert not missing, f"subpackages without a docstring saying what they own and may import: {missing}"


def test_the_checker_sees_a_cycle_and_a_wrong_direction(tmp_path: Path) -> None:
    """The rules above cannot pass vacuously: a scratch tree with a lazy cycle and an upward import fails them."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text('"""x"""\n')
    (tmp_path / "indexer" / "a.py").write_text("from indexer.b import f\n")
    (tmp_path / "indexer" / "b.py").write_text("def f():\n    from indexer import a\n")
    (tmp_path / "engine" / "c.py").write_text("import web\n")
    graph = import_graph(module_files(tmp_path))
    assert find_cycles(graph) == [["indexer.a", "indexer.b"]]
    assert layer_violations(graph) == ["engine.c imports web"]


@pytest.mark.parametrize("path", ["manage.py"])
def test_entry_point_is_thin(path: str) -> None:
    lines = (REPO / path).read_text().count("\n")
    assert lines < 150, f"{path} has {lines} lines: commands belong in their domain's cli.py"
