"""The import graph of ``common``: stage packages import only their own or lower layers, modules form no cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMMON = Path(__file__).resolve().parents[1] / "common"
# a package may import from packages of a strictly lower layer (and from itself)
LAYERS = {"utils": 0, "core": 1, "datasets": 2, "models": 2, "vision": 2, "output": 3, "adjustment": 4,
          "train": 5, "inference": 5}


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = COMMON) -> dict[str, set[str]]:
    """module -> the ``common`` modules it imports (``from common.x import y`` names module ``common.x.y`` when
    that is a module, else ``common.x``)."""
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("common"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("common."))
        graph[name] = {d for d in deps if d in modules and d not in (name, "common")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a stage package imports one of the same or a higher layer."""
    bad = []
    for module, deps in graph.items():
        src = _package(module)
        for dep in deps:
            dst = _package(dep)
            if src in LAYERS and dst in LAYERS and src != dst and LAYERS[dst] >= LAYERS[src]:
                bad.append((module, dep))
    return sorted(bad)


def test_every_stage_package_has_a_layer():
    packages = {p.name for p in COMMON.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS)


def test_no_module_cycle_and_no_upward_import():
    graph = import_graph()
    assert len(graph) > 40
    assert cycles(graph) == []
    assert upward_imports(graph) == []


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    (tmp_path / "common" / "core").mkdir(parents=True)
    (tmp_path / "common" / "utils").mkdir()
    for pkg in ("common", "common/core", "common/utils"):
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "common" / "core" / "a.py").write_text("from common.utils.b import f\n")
    (tmp_path / "common" / "utils" / "b.py").write_text("from common.core import a\n")
    graph = import_graph(tmp_path / "common")
    assert cycles(graph) == [["common.core.a", "common.utils.b"]]
    assert upward_imports(graph) == [("common.utils.b", "common.core.a")]


@pytest.mark.parametrize("module", ["common.inference.inference_pipeline", "common.inference.live"])
def test_pipeline_modules_do_not_import_trainers(module):
    graph = import_graph()
    assert not any(dep.startswith("common.train.") for dep in graph[module])
