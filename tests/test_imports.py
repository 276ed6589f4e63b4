"""Imports flow one way: no module of a package imports, even inside a function, a module that
imports it back; and device/ and server/ never import each other (the summary contract joins them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["device", "server"]


def modules(package: str, root: Path = ROOT) -> dict[str, Path]:
    """Every module of `package` under `root`, by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(name: str, path: Path) -> list[tuple[str, int]]:
    """(dotted name, line) of every import that runs in the module, inside functions and `if`
    blocks too.

    `from pkg import x` names `pkg.x`, which is the submodule when `x` is one and else resolves to
    `pkg` (see `imports`). Relative imports are made absolute.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    # Imports under `if TYPE_CHECKING:` name types for annotations and never run, so they cannot
    # make a module load another that loads it back.
    type_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                 and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                 for stmt in node.body for inner in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return names


def imports(package: str, root: Path = ROOT) -> dict[str, dict[str, int]]:
    """For each module of `package`, the modules of `package` it imports and the line of the first.

    Only explicit imports count: importing `a.b.c` runs `a/b/__init__.py` first, but that is how
    packages load, and a package that imports its submodules lazily is no cycle with them.
    """
    mods = modules(package, root)
    graph: dict[str, dict[str, int]] = {}
    for name, path in mods.items():
        edges: dict[str, int] = {}
        for target, line in imported_names(name, path):
            while target and target not in mods:  # `pkg.function` → `pkg`
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as [a, b, …, a], or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize("package", ["device", "server"])
def test_imports_flow_one_way(package):
    graph = imports(package)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(
        f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


@pytest.mark.parametrize("package", PACKAGES)
def test_device_and_server_never_import_each_other(package):
    (other,) = set(PACKAGES) - {package}
    crossings = [f"{name} line {line}: {target}" for name, path in modules(package).items()
                 for target, line in imported_names(name, path) if target.split(".")[0] == other]
    assert not crossings, f"{package}/ imports {other}/: {crossings}"


def test_a_cycle_inside_a_function_is_found(tmp_path):
    # The checker itself: a lazy import back is still a cycle.
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from pkg import a\n")
    assert find_cycle(imports("pkg", tmp_path)) == ["pkg.a", "pkg.b", "pkg.a"]
