"""The house rules a newcomer can rely on, read from the source alone (``ast``; nothing of
ablab is imported): no module in ``src/ablab`` over 450 lines, no function over 60 lines,
and no cycle in the import graph of ``src/ablab``.

The import graph counts every import: at module level, inside functions and under
``TYPE_CHECKING``, relative ones resolved, a package's ``__init__`` a module of its own
(``from ablab.train import fit`` is an arrow to ``ablab.train``, whose ``__init__``
imports its modules), and the names a lazy package face hands on
(``lazy_package(__name__, globals(), {"module": (...)})``) as arrows from the package to
those modules. A cycle is a strongly connected component of more than one module; the
failure message names its modules and one closed path through them, each arrow with the
file and line of its import.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


# ---------------------------------------------------------------- reading the source


def modules_of(src: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``src`` by dotted name (a package's
    ``__init__.py`` under the package's own name)."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def module_lengths(src: Path, package: str) -> dict[str, int]:
    """Lines per module file (relative path -> lines)."""
    return {
        str(path.relative_to(src.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in modules_of(src, package).values()
    }


def function_lengths(src: Path, package: str) -> list[tuple[int, str]]:
    """(lines, "path:line name") of every function and method, nested ones too, from its
    ``def`` line to its last line."""
    rows = []
    for path in modules_of(src, package).values():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(src.parent)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                rows.append((lines, f"{where}:{node.lineno} {node.name}"))
    return sorted(rows, reverse=True)


# ---------------------------------------------------------------- the import graph


@dataclass
class ImportGraph:
    """Modules, and for each the modules it imports with the first line importing each."""

    src: Path
    modules: dict[str, Path]
    edges: dict[str, dict[str, int]] = field(default_factory=dict)

    def where(self, module: str) -> Path:
        """The module's file, relative to the folder above ``src``."""
        return self.modules[module].relative_to(self.src.parent)

    def add(self, source: str, target: str, line: int) -> None:
        if target != source:
            self.edges.setdefault(source, {}).setdefault(target, line)

    def owner(self, name: str) -> str | None:
        """The module ``name`` is or lies in (``ablab.train.fit`` -> ``ablab.train``);
        None for a name outside the graph."""
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        return name or None


def _base_of(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".")
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def _lazy_exports(tree: ast.Module, call: ast.Call) -> list[str]:
    """The submodule names a ``lazy_package(__name__, globals(), EXPORTS)`` call hands
    on: EXPORTS' keys, a dict literal there or assigned to that name at module level."""
    if len(call.args) < 3:
        return []
    exports = call.args[2]
    if isinstance(exports, ast.Name):
        assigned = [
            n.value for n in tree.body
            if isinstance(n, (ast.Assign, ast.AnnAssign))
            and any(isinstance(t, ast.Name) and t.id == exports.id
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))
        ]
        exports = assigned[-1] if assigned else exports
    if not isinstance(exports, ast.Dict):
        return []
    return [k.value for k in exports.keys if isinstance(k, ast.Constant)
            and isinstance(k.value, str)]


def _imported_names(tree: ast.Module, module: str, is_package: bool, graph: ImportGraph):
    """(line, imported dotted name) for every import in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _base_of(node, module, is_package)
            names = [f"{base}.{alias.name}" for alias in node.names]
            submodules = [n for n in names if n in graph.modules]
            yield from ((node.lineno, n) for n in submodules)
            if len(submodules) < len(names):  # some names come from the module itself
                yield node.lineno, base
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
                yield node.lineno, str(node.args[0].value)
            elif name == "lazy_package" and is_package:
                yield from ((node.lineno, f"{module}.{sub}")
                            for sub in _lazy_exports(tree, node))


def import_graph(src: Path, package: str) -> ImportGraph:
    """The import graph of ``package`` under ``src`` (imports of other packages left out)."""
    graph = ImportGraph(src, modules_of(src, package))
    for module, path in graph.modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for line, name in _imported_names(tree, module, is_package, graph):
            target = graph.owner(name) if name.split(".")[0] == package else None
            if target is not None:
                graph.add(module, target, line)
    return graph


def _reachable(graph: ImportGraph, start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in graph.edges.get(todo.pop(), {}):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def cycles(graph: ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted."""
    reach = {m: _reachable(graph, m) for m in graph.modules}
    components, placed = [], set()
    for m in sorted(graph.modules):
        if m in placed:
            continue
        component = sorted(w for w in reach[m] if m in reach[w])
        placed.update(component)
        if len(component) > 1:
            components.append(component)
    return components


def closed_path(graph: ImportGraph, component: list[str]) -> list[str]:
    """A shortest closed path through ``component``'s first module, inside the component."""
    start, inside = component[0], set(component)
    came_from: dict[str, str] = {}
    todo = deque([start])
    while todo:
        m = todo.popleft()
        for target in graph.edges.get(m, {}):
            if target == start:
                path = [m]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if target in inside and target not in came_from:
                came_from[target] = m
                todo.append(target)
    return component


def describe_cycle(graph: ImportGraph, component: list[str]) -> str:
    path = closed_path(graph, component)
    arrows = [f"    {a} -> {b}  ({graph.where(a)}:{graph.edges[a][b]})"
              for a, b in zip(path, path[1:], strict=False)]
    return f"  {len(component)} modules: {', '.join(component)}\n" + "\n".join(arrows)


# ---------------------------------------------------------------- the rules


def test_no_module_is_over_450_lines():
    long = {p: n for p, n in module_lengths(SRC, "ablab").items() if n > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(
        f"  {p}: {n}" for p, n in sorted(long.items(), key=lambda kv: -kv[1]))


def test_no_function_is_over_60_lines():
    long = [(n, where) for n, where in function_lengths(SRC, "ablab") if n > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(
        f"  {where} ({n} lines)" for n, where in long)


def test_the_import_graph_has_no_cycle():
    graph = import_graph(SRC, "ablab")
    found = cycles(graph)
    assert not found, "import cycles (every import counted):\n" + "\n".join(
        describe_cycle(graph, c) for c in found)


# ---------------------------------------------------------------- the checks themselves


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "src"


def test_the_checks_find_what_they_look_for(tmp_path):
    """On a made-up package: a cycle through a function-level import, one through a
    TYPE_CHECKING import, one through a package's ``__init__`` and a relative import, one
    through a lazy face; an acyclic import; an over-long function and module."""
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    src = write_package(tmp_path, {
        "pkg/__init__.py": "from pkg.sub import thing\n",
        "pkg/a.py": "def f():\n    from pkg import b\n",
        "pkg/b.py": "import pkg.a\n",
        "pkg/c.py": ("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from pkg.d import D\n"),
        "pkg/d.py": "from . import c\n",
        "pkg/sub/__init__.py": "from .inner import thing\n",
        "pkg/sub/inner.py": "from pkg.sub import other\nthing = 1\n",
        "pkg/lazy/__init__.py": ("from pkg.lazyface import lazy_package\n"
                                 "_EXPORTS = {'mod': ('name',)}\n"
                                 "__all__, __getattr__, __dir__ = "
                                 "lazy_package(__name__, globals(), _EXPORTS)\n"),
        "pkg/lazy/mod.py": "from pkg.lazy import something\n",
        "pkg/lazyface.py": "",
        "pkg/plain.py": "import os\nfrom pkg.a import f\n",
        "pkg/long.py": f"def long():\n{body}\n" + "\n" * 400,
    })
    graph = import_graph(src, "pkg")
    assert graph.edges["pkg.a"] == {"pkg.b": 2}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"],
                             ["pkg.lazy", "pkg.lazy.mod"], ["pkg.sub", "pkg.sub.inner"]]
    assert closed_path(graph, ["pkg.a", "pkg.b"]) == ["pkg.a", "pkg.b", "pkg.a"]
    assert "pkg.plain" not in {m for c in cycles(graph) for m in c}
    assert function_lengths(src, "pkg")[0] == (62, "src/pkg/long.py:1 long")
    assert module_lengths(src, "pkg")["src/pkg/long.py"] == 462


if __name__ == "__main__":  # the longest five functions and the graph's size, for notes
    g = import_graph(SRC, "ablab")
    print(f"{len(g.modules)} modules, {sum(map(len, g.edges.values()))} imports")
    for n, where in function_lengths(SRC, "ablab")[:5]:
        print(n, where)
    for c in cycles(g):
        print(describe_cycle(g, c))
