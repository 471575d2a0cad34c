"""The package's modules import each other without cycles (module-level and function-level imports)."""
from __future__ import annotations

import ast
from pathlib import Path

import yolactedge

PACKAGE_ROOT = Path(yolactedge.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The `yolactedge` modules a file imports anywhere in its body (`import a.b`, `from .x import y`)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import submodule`
    return {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}
    return {name: imported_modules(path, set(files)) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]], within: str) -> list[str] | None:
    """A cycle among the modules whose names start with `within` (depth-first search), or None."""
    nodes = {n for n in graph if n == within or n.startswith(within + ".")}
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node] & nodes):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(nodes):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert "yolactedge.export.common" in graph["yolactedge.export.verify"]
    assert "yolactedge.export.verify" in graph["yolactedge.export.pipeline"]  # imported inside a function


def test_cycle_finder_finds_a_cycle():
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "q": set()}
    assert find_cycle(graph, "p") == ["p.a", "p.b", "p.c", "p.a"]
    assert find_cycle(graph, "q") is None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph(), "yolactedge")
    assert cycle is None, " → ".join(cycle)


def test_the_runtime_path_imports_neither_torch_nor_tensorflow():
    """What a board runs (runtime, post-processing, tracking, drawing, predict) reaches no heavy framework."""
    import subprocess
    import sys

    probe = ("import sys, yolactedge.predict, yolactedge.runtime.litert_backend, yolactedge.runtime.onnx_backend; "
             "print(sorted(m for m in ('torch', 'tensorflow', 'pycocotools') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
