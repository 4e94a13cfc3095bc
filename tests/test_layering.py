"""The import graph of the `exporter` package: no cycle, and the layering rules kept.

Every module is parsed with `ast` (nothing is imported), and every `import` counts, at
module level or inside a function: a function-level import is still a dependency, only a
later one. Two graphs are checked for cycles: modules, and the same with each subpackage
(`exporter.config`, `exporter.simulator`) folded into one node.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

pytestmark = pytest.mark.smoke

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "exporter"
SUBPACKAGES = ("exporter.config", "exporter.signing", "exporter.simulator")


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


IMPORTS: dict[str, set[str]] = {name: _imports(name, path) for name, path in MODULES.items()}


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
        for dep in IMPORTS[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                if dep in MODULES:
                    todo.append(dep)
    return seen


def test_the_graph_is_read() -> None:
    # Guards the checks below against a parser that finds nothing.
    assert {"exporter.app", "exporter.config.schema", "exporter.simulator.server"} <= set(MODULES)
    assert "exporter.config.schema" in IMPORTS["exporter.config.loading"]
    assert "exporter.demo" in IMPORTS["exporter.cli"]  # a function-level import counts
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_between_modules() -> None:
    assert _cycle(_internal(IMPORTS)) is None


def test_no_import_cycle_between_subpackages() -> None:
    folded: dict[str, set[str]] = {}
    for module, deps in _internal(IMPORTS).items():
        node = _fold(module)
        folded.setdefault(node, set()).update(_fold(d) for d in deps if _fold(d) != node)
    assert _cycle(folded) is None


def test_snapshot_is_free_of_io() -> None:
    """The snapshot (read by every scrape) holds values: no HTTP client, no cloud access."""
    deps = _reachable("exporter.exposition.snapshot")
    assert "httpx" not in IMPORTS["exporter.exposition.snapshot"]
    assert not deps & {
        "exporter.polling.targets",
        "exporter.cloud.client",
        "exporter.cloud.transport",
    }


def test_credentials_do_not_know_tasks() -> None:
    assert "exporter.core.tasks" not in _reachable("exporter.cloud.credentials")


def test_task_list_value_object_holds_no_provider() -> None:
    assert "exporter.cloud.credentials" not in _reachable("exporter.core.tasklists")


def test_demo_and_simulator_cli_are_independent() -> None:
    assert "exporter.simulator.__main__" not in _reachable("exporter.demo")
    assert "exporter.demo" not in _reachable("exporter.simulator.__main__")


def test_config_imports_nothing_else_of_the_exporter() -> None:
    for module in MODULES:
        if _fold(module) == "exporter.config":
            outside = {
                d
                for d in IMPORTS[module]
                if d.startswith("exporter") and _fold(d) != "exporter.config"
            }
            assert not outside, (module, outside)


def test_no_import_cycle_between_packages() -> None:
    """The top-level package as one node: the simulator and the exporter share only the
    signing leaf, so neither depends on the other both ways."""
    folded: dict[str, set[str]] = {}
    for module, deps in _internal(IMPORTS).items():
        node = _package(module)
        targets = {_package(d) for d in deps}
        folded.setdefault(node, set()).update(t for t in targets if t != node)
    nodes = set(folded).union(*folded.values())
    assert nodes >= {"exporter", "exporter.config", "exporter.signing", "exporter.simulator"}
    assert "exporter.simulator" in folded["exporter"]  # the demo runs it
    assert _cycle(folded) is None


def test_simulator_uses_only_the_signing_leaf() -> None:
    """The simulator may check signatures with `exporter.signing`, which imports nothing else
    of the exporter; so the simulator never pulls in the exporter it stands in for."""
    assert not {d for d in IMPORTS["exporter.signing"] if d.startswith("exporter")}
    for module in MODULES:
        if _fold(module) == "exporter.simulator":
            outside = {d for d in _internal(IMPORTS)[module] if _fold(d) != "exporter.simulator"}
            assert outside <= {"exporter.signing"}, (module, outside)


def test_shipped_package_never_imports_the_sdk() -> None:
    """The official SDKs (core and the service packages) are test dependencies: nothing of
    the package may need them, the simulator included (it runs in `--demo`)."""
    assert _is_sdk("huaweicloudsdkdcs.v2.model")
    assert _is_sdk("huaweicloudsdkcore")
    assert not _is_sdk("exporter.signing")
    for module, deps in IMPORTS.items():
        assert not {d for d in deps if _is_sdk(d)}, module


def _is_sdk(module: str) -> bool:
    return module.split(".", maxsplit=1)[0].startswith("huaweicloudsdk")
