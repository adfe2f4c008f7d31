"""The import graph: no cycle, and no import from a lower layer into a higher one.

Layers, lowest first (a module may import its own layer and the ones below it):

0. contracts: ``bench.errors``, ``bench.vocab`` (the words configs use), ``bench.stores`` (store
   addresses), ``bench.interrupt`` (the stop signal), ``bench.schema``, ``bench.config``,
   ``bench.scratch``
1. data and models: ``bench.data``, ``bench.models``, ``bench.plots``
2. one run: ``bench.task``, ``bench.tracking``, ``bench.console``, ``bench.train``,
   ``bench.replica_train`` (seeds or folds of one configuration trained as one grouped model)
3. sweeps: ``bench.sweep``, the Hydra sweeper plugin ``hydra_plugins.bench_sweeper``
4. results: ``bench.results`` (the tidy record; reading MLflow and Optuna into it)
5. studies: ``bench.study``
6. reports: ``bench.report``
7. commands and developer tools: ``bench.__main__``, ``bench.perf``, ``bench.gpu_check``,
   ``bench.sweep_bench``

Every import counts, including those inside functions: a lazy import still ties the lower
module to the higher one (it breaks when the higher one moves, and it is how the cycles this
test guards against crept in). A new module must be given a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, ...]] = [
    ("bench", "bench.errors", "bench.vocab", "bench.stores", "bench.interrupt", "bench.schema",
     "bench.config", "bench.scratch"),
    ("bench.data", "bench.models", "bench.plots"),
    ("bench.task", "bench.tracking", "bench.outage", "bench.console", "bench.train",
     "bench.replica_train", "bench.classical", "bench.fold_train"),
    ("bench.sweep", "hydra_plugins"),
    ("bench.results",),
    ("bench.study",),
    ("bench.report",),
    ("bench.__main__", "bench.perf", "bench.gpu_check", "bench.sweep_bench"),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in [*ROOT.glob("bench/**/*.py"), *ROOT.glob("hydra_plugins/**/*.py")]:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name lives in (``bench.a.b.f`` -> ``bench.a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(filter(None, (_owner(a.name, modules) for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                # ``from bench import errors`` imports the module bench.errors, not bench
                owner = _owner(f"{base}.{alias.name}", modules)
                if owner is not None:
                    found.add(owner)
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def _layer(module: str) -> int:
    best, level = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            # a package's entry covers its modules; "bench" itself is only the package file
            inside = module.startswith(p + ".") and p != "bench"
            if (module == p or inside) and len(p) > best:
                best, level = len(p), i
    assert level is not None, f"{module} has no layer: add it to LAYERS in {__file__}"
    return level


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    assert _cycles(_graph()) == []


def test_no_module_imports_from_a_higher_layer():
    upward = [f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
              for a, targets in sorted(_graph().items()) for b in sorted(targets)
              if _layer(b) > _layer(a)]
    assert upward == []


def test_the_checks_see_a_cycle_and_an_upward_import():
    """The test's own arithmetic, on a made-up graph with one of each."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _layer("bench.train") > _layer("bench.models.cells") > _layer("bench.vocab")
    assert _layer("bench.report.build") > _layer("bench.study.runner")


def test_one_reader_of_the_tracking_uri_variable():
    """The MLflow store's address is resolved in one place (:mod:`bench.stores`)."""
    readers = sorted(str(p.relative_to(ROOT))
                     for p in [*ROOT.glob("bench/**/*.py"), *ROOT.glob("conf/**/*.yaml"),
                               *ROOT.glob("hydra_plugins/**/*.py")]
                     if "MLFLOW_TRACKING_URI" in p.read_text()
                     .replace("$MLFLOW_TRACKING_URI", "").replace("``MLFLOW_TRACKING_URI``", ""))
    assert readers == ["bench/stores.py"]
