"""The package's import graph, read from the source with `ast`: no cycles (imports inside
functions included: a lazy import is an edge too), no top-level `model` / `tasks` /
`biogpt_cli` imports anywhere, and modeling.py (the reference network) importing no fast path."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# source folder -> the package it installs as (pyproject.toml's package-dir)
PACKAGES = {"biogpt_cli": "biogpt", "model": "biogpt.model", "tasks": "biogpt.tasks"}
FORBIDDEN_TOP_LEVEL = {"model", "tasks", "biogpt_cli"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """biogpt module name -> (file, is a package __init__)."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            is_init = parts[-1] == "__init__"
            if is_init:
                parts = parts[:-1]
            found[".".join((package, *parts))] = (path, is_init)
    return found


MODULES = _modules()


def _known(name: str) -> str | None:
    """The longest known module that `name` is or lies in (None: not ours)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _tree(module: str) -> ast.Module:
    path = MODULES[module][0]
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imports(module: str, tree: ast.Module | None = None) -> list[tuple[ast.stmt, list[str]]]:
    """Each import statement of `module` with the absolute names it imports (`from pkg import
    name` where pkg.name is a module: that module)."""
    is_init = MODULES[module][1]
    tree = tree or _tree(module)
    package = module if is_init else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.append((node, [alias.name for alias in node.names]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            names = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
            out.append((node, names))
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for _, names in _imports(module):
            for name in names:
                target = _known(name)
                if target is not None and target != module:
                    graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_path(graph, c) for c in components]


def _cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the component's first module, for the failure message."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                todo.append(w)
    return component


def test_the_module_map_sees_the_package():
    assert {"biogpt", "biogpt.model.modeling", "biogpt.model.generation", "biogpt.model.fast.network", "biogpt.tasks"} <= MODULES.keys()
    graph = _graph()
    assert "biogpt.model.masks" in graph["biogpt.model.modeling"]  # relative imports resolved
    assert "biogpt.model.generation" in graph["biogpt.model.modeling"]  # lazy imports counted
    assert "biogpt.model.generation.kernel_choice" in graph["biogpt.model.generation.static"]  # `from . import x`


def test_the_walk_finds_a_cycle_when_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_file_imports_the_folders_as_top_level_packages():
    offenders = []
    for folder in (*PACKAGES, "benchmarks", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    if name.partition(".")[0] in FORBIDDEN_TOP_LEVEL:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not offenders, "\n".join(offenders)


def test_modeling_imports_no_fast_path():
    """The reference network imports nothing from generation, the fast paths or kernels at
    module level; its one lazy import is the generation engine, in `generate` (as transformers)."""
    fast = ("biogpt.model.generation", "biogpt.model.fast", "biogpt.model.continuous", "triton")
    module_level, lazy = set(), set()
    tree = _tree("biogpt.model.modeling")
    inside_functions = {
        id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)
    }
    for node, names in _imports("biogpt.model.modeling", tree):
        (lazy if id(node) in inside_functions else module_level).update(names)
    assert not [n for n in module_level if n.startswith(fast)], module_level
    assert {n for n in lazy if n.startswith(fast)} <= {"biogpt.model.generation"}, lazy
