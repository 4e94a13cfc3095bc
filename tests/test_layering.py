"""The import graph of the `exporter` package: no cycle, and the layering rules kept.

Every module is parsed with `ast` (nothing is imported), and every `import` counts, at
module level or inside a function: a function-level import is still a dependency, only a
later one. Two graphs are checked for cycles: modules, and the same with each subpackage
(`exporter.config`, `exporter.simulator`) folded into one node.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

pytestmark = pytest.mark.smoke

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "exporter"
SUBPACKAGES = (
    "exporter.config",
    "exporter.signing",
    "exporter.simulator",
    "exporter.telemetry",
    "exporter.core",
    "exporter.cloud",
    "exporter.polling",
    "exporter.exposition",
    "exporter.web",
    "exporter.probe",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports (inside the package or not), by its full name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            for alias in node.names:  # `from exporter.config import loading`: a module
                if f"{module}.{alias.name}" in MODULES:
                    found.add(f"{module}.{alias.name}")
    return found


@functools.cache
def imports() -> dict[str, set[str]]:
    """The import graph, parsed at the first test that needs it (not at collection, which
    every pytest worker repeats)."""
    return {name: _imports(name, path) for name, path in MODULES.items()}


def _internal(graph: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    return {m: {d for d in deps if d in MODULES and d != m} for m, deps in graph.items()}


def _fold(module: str) -> str:
    for pkg in SUBPACKAGES:
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return module


def _package(module: str) -> str:
    """The package a module belongs to: a subpackage, or the top-level `exporter`."""
    folded = _fold(module)
    return folded if folded in SUBPACKAGES else "exporter"


def _cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def _reachable(start: str) -> set[str]:
    """Every module `start` imports, directly or through other modules of the package."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in imports()[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                if dep in MODULES:
                    todo.append(dep)
    return seen


def test_the_graph_is_read() -> None:
    # Guards the checks below against a parser that finds nothing.
    assert {"exporter.app", "exporter.config.schema", "exporter.simulator.server"} <= set(MODULES)
    assert "exporter.config.schema" in imports()["exporter.config.loading"]
    assert "exporter.demo" in imports()["exporter.cli"]  # a function-level import counts
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_between_modules() -> None:
    assert _cycle(_internal(imports())) is None


def test_no_import_cycle_between_subpackages() -> None:
    folded: dict[str, set[str]] = {}
    for module, deps in _internal(imports()).items():
        node = _fold(module)
        folded.setdefault(node, set()).update(_fold(d) for d in deps if _fold(d) != node)
    assert _cycle(folded) is None


# What each package of the exporter may import (besides itself, the standard library and
# third-party packages). The leaves import nothing else of the exporter; every arrow points
# down the layers of the package docstring (exporter/__init__.py).
LEAVES = {
    "exporter.config",
    "exporter.signing",
    "exporter.telemetry",
    "exporter.aio",
    "exporter.text",
    "exporter.stdout",
}
ALLOWED: dict[str, set[str]] = {
    **{leaf: set() for leaf in LEAVES},
    "exporter.core": {"exporter.config", "exporter.text"},
    "exporter.cloud": LEAVES | {"exporter.core"},
    "exporter.exposition": LEAVES | {"exporter.core"},
    "exporter.polling": LEAVES | {"exporter.core", "exporter.cloud", "exporter.exposition"},
    "exporter.web": LEAVES | {"exporter.core", "exporter.exposition"},
    # First contact with an account: reads like a poll, keeps nothing.
    "exporter.probe": LEAVES | {"exporter.core", "exporter.cloud", "exporter.polling"},
    "exporter.simulator": {"exporter.signing"},
    # Entry points wire the layers together.
    "exporter.demo": {"exporter.simulator"},
}
ENTRY_POINTS = {"exporter.app", "exporter.cli", "exporter.__main__"}
TOP_LEVEL_LIMIT = 8  # modules directly under exporter/
MODULE_LINE_LIMIT = 500  # outside the simulator


def _unit(module: str) -> str:
    """The package (or top-level module) a module belongs to, for the rules above."""
    parts = module.split(".")
    if len(parts) == 1:
        return module  # `exporter` itself: its __init__ holds the version
    return ".".join(parts[:2])


def test_every_module_belongs_to_a_ruled_unit() -> None:
    units = {_unit(m) for m in MODULES} - {"exporter"}
    assert units <= set(ALLOWED) | ENTRY_POINTS, units - set(ALLOWED) - ENTRY_POINTS


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_each_package_imports_only_what_its_layer_may(unit: str) -> None:
    allowed = ALLOWED[unit] | {unit, "exporter"}
    for module, deps in _internal(imports()).items():
        if _unit(module) == unit:
            outside = {d for d in deps if _unit(d) not in allowed}
            assert not outside, (module, outside)


def test_no_package_reaches_the_entry_points() -> None:
    for module, deps in _internal(imports()).items():
        if _unit(module) not in ENTRY_POINTS:
            assert not {d for d in deps if _unit(d) in ENTRY_POINTS}, module


def test_the_snapshot_and_the_web_are_free_of_cloud_access() -> None:
    """What every scrape reads holds values: no HTTP client, no cloud access."""
    for start in ("exporter.exposition.snapshot", "exporter.web.routes"):
        deps = _reachable(start)
        assert "httpx" not in deps, start
        assert not {d for d in deps if _unit(d) in ("exporter.cloud", "exporter.polling")}, start


def test_cloud_knows_nothing_of_counting() -> None:
    for module in MODULES:
        if _unit(module) == "exporter.cloud":
            assert "exporter.core.counting" not in _reachable(module), module
    assert "exporter.core.tasks" not in _reachable("exporter.cloud.credentials")


def test_task_list_value_object_holds_no_provider() -> None:
    assert "exporter.cloud.credentials" not in _reachable("exporter.core.tasklists")


def test_demo_and_simulator_cli_are_independent() -> None:
    assert "exporter.simulator.__main__" not in _reachable("exporter.demo")
    assert "exporter.demo" not in _reachable("exporter.simulator.__main__")


def test_the_tree_stays_small_enough_to_read() -> None:
    top = list(PACKAGE.glob("*.py"))
    assert len(top) <= TOP_LEVEL_LIMIT, sorted(p.name for p in top)
    for name, path in MODULES.items():
        if _fold(name) != "exporter.simulator":
            lines = len(path.read_text(encoding="utf-8").splitlines())
            assert lines <= MODULE_LINE_LIMIT, (name, lines)


def test_every_package_says_what_it_may_import() -> None:
    for unit in ALLOWED:
        init = PACKAGE / unit.split(".")[1] / "__init__.py"
        if init.exists():
            doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
            assert doc, unit


def test_no_import_cycle_between_packages() -> None:
    """Each package (and each top-level module) as one node: the layers form no cycle; the
    simulator and the exporter share only the signing leaf, so neither depends on the other
    both ways."""
    folded: dict[str, set[str]] = {}
    for module, deps in _internal(imports()).items():
        node = _unit(module)
        folded.setdefault(node, set()).update(_unit(d) for d in deps if _unit(d) != node)
    nodes = set(folded).union(*folded.values())
    assert nodes >= set(ALLOWED) | ENTRY_POINTS
    assert "exporter.simulator" in folded["exporter.demo"]  # the demo runs it
    assert _cycle(folded) is None


def test_simulator_uses_only_the_signing_leaf() -> None:
    """The simulator may check signatures with `exporter.signing`, which imports nothing else
    of the exporter; so the simulator never pulls in the exporter it stands in for."""
    assert not {d for d in imports()["exporter.signing"] if d.startswith("exporter")}
    for module in MODULES:
        if _fold(module) == "exporter.simulator":
            outside = {d for d in _internal(imports())[module] if _fold(d) != "exporter.simulator"}
            assert outside <= {"exporter.signing"}, (module, outside)


def test_shipped_package_never_imports_the_sdk() -> None:
    """The official SDKs are test dependencies: nothing of the exporter may need them."""
    for module, deps in imports().items():
        assert not {d for d in deps if d.split(".")[0].startswith("huaweicloudsdk")}, module
