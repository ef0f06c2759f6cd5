"""core's import graph: no circles, and no imports hidden inside functions.

Walks every module of the package folder (core/ = ``ember``), resolving relative and
absolute ``ember.`` imports, and counts every import statement as an edge wherever it
stands: at module level, under ``if TYPE_CHECKING:``, or inside a function (a circle
closed by a function-level import is still a circle). Plain static analysis: nothing
is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

CORE = Path(__file__).resolve().parents[2] / "core"
PACKAGE = "ember"

#: Subpackages whose imports inside functions are their owners' call (optional
#: dependencies loaded on demand); circles are still checked there.
INNER_IMPORTS_NOT_CHECKED = ("ember.autoscaler",)

#: Imports allowed inside functions, each for a reason that outweighs a top-level import:
#: (module, imported name) -> why.
ALLOWED_INNER_IMPORTS = {
    ("ember.object_ref", "asyncio"): "asyncio costs ~10 ms; only awaiting a ref needs it",
    ("ember.object_ref_generator", "asyncio"): "the same: only `async for` over a generator needs it",
    ("ember._worker.fork_server", "ember._worker.worker"): "the fork server's point: imported once in the warm "
                                           "parent, then in every forked child for free",
    ("ember._worker.fork_server", "numpy"): "the same warm-up, for numpy",
    ("ember._node.gpus", "pynvml"): "optional, and slow to import: only when GPUs are probed",
    ("ember._node.launcher", "psutil"): "~15 ms of `import ember`: only starting or finding a "
                                        "node needs it",
    ("ember.cli", "ember"): "`ember status`/`memory` only: `ember start` must not pay for the API",
    ("ember._client.runtime", "ember.experimental"): "tqdm costs ~40 ms; only a driver that is sent "
                                                     "a worker's progress bar needs it",
    ("ember._node.http_listener", "uvicorn"): "the web stack (~100 ms of CPU) loads on a node's first "
                                              "HTTP connection only; most nodes are never asked",
    ("ember._node.telemetry", "ember._node.dashboard.app"): "the same: starlette on the first connection",
    ("ember._node.telemetry", "ember._node.prometheus"): "the same: prometheus_client on the first scrape",
    ("ember._node.node_stats", "pynvml"): "optional, and slow to import: only nodes with GPUs sample them",
    ("ember._node.storage", "redis"): "optional (the `redis` extra): only heads with --storage redis://",
}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in CORE.rglob("*.py"):
        rel = path.relative_to(CORE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join([PACKAGE, *parts])] = path
    return mods


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if not level:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    """(module -> the core modules it imports, [(module, name) imported inside a function])."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    inner: list[tuple[str, str]] = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        in_function = {id(sub) for node in ast.walk(tree)
                       if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for sub in ast.walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node.level, node.module)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                if id(node) in in_function and not (isinstance(node, ast.ImportFrom) and target == PACKAGE):
                    inner.append((name, target))
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target not in (name, PACKAGE):
                    edges[name].add(target)
    return edges, inner


def _circles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
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
                    out.append(frozenset(component))
    return out


def test_the_walker_finds_a_circle_when_there_is_one() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(edges) == [frozenset({"a", "b", "c"})]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_core_has_no_import_circle() -> None:
    """Client side and node side alike (the node services are composed, not mixed in)."""
    circles = _circles(_graph()[0])
    assert not circles, f"import circles: {[sorted(c) for c in circles]}"


def test_imports_inside_functions_are_only_the_justified_ones() -> None:
    _, inner = _graph()
    allowed = {module for module, _ in ALLOWED_INNER_IMPORTS}
    unexplained = sorted({(m, t) for m, t in inner
                          if not m.startswith(INNER_IMPORTS_NOT_CHECKED)
                          and not any(m == am and (t == at or t.startswith(at + "."))
                                      for am, at in ALLOWED_INNER_IMPORTS)})
    assert not unexplained, (f"imports inside functions without a reason in ALLOWED_INNER_IMPORTS: "
                             f"{unexplained}")
    assert allowed  # the table itself is in use
