"""The folder layout is the architecture: imports between packages point down the README's layout list, and no
package's modules import each other in a circle (function-level imports included: they hide circles, not remove them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: top to bottom, as README.md's Layout lists them; a package imports only packages below it
LAYERS = ("scripts", "runner", "solvers", "priors", "evaluation", "operators", "imaging")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((REPO / package).rglob("*.py"))}


def imported(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports anywhere in its body (``from pkg import mod`` names ``pkg.mod``
    where that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [(base, [a.name for a in node.names])]
        else:
            continue
        for base, names in targets:
            hits = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
            if hits:
                out.update(hits)
            else:  # the longest known prefix: a module, or the package whose __init__ runs
                parts = base.split(".")
                prefix = next(
                    (".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in known), None
                )
                if prefix is not None:
                    out.add(prefix)
    out.discard(name)
    return out


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except what sits under ``if TYPE_CHECKING:`` (annotations only: never imported at run
    time, so no circle)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def cycles(package: str) -> list[list[str]]:
    mods = modules(package)
    graph = {m: imported(p, set(mods)) for m, p in mods.items()}
    found, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                found.append([*stack[stack.index(n) :], n])
            elif n not in state:
                visit(n, [*stack, n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_packages_import_only_packages_below_them():
    upward = []
    for i, package in enumerate(LAYERS):
        for name, path in modules(package).items():
            for other in LAYERS[: i + 1]:
                hits = {m for m in imported(path, set(modules(other))) if other != package}
                upward += [f"{name} -> {m}" for m in sorted(hits)]
    assert not upward


def test_cycle_finder_finds_a_circle(tmp_path, monkeypatch):
    """The check itself: two modules importing each other at function level form a circle."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from .b import g\n")
    (tmp_path / "pkg" / "b.py").write_text("from pkg.a import f\n")
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    assert cycles("pkg") == [["pkg.a", "pkg.b", "pkg.a"]]


@pytest.mark.parametrize("package", [p for p in LAYERS if p != "scripts"])
def test_no_module_circles(package):
    assert cycles(package) == []
