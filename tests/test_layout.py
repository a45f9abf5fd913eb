"""The layout keeps its arrows one way: no import cycle among the project's modules, and
nothing in the migrator, the test kit or the developer tools imports from ``tests/``."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "fast_note_migrate": REPO / "hooks" / "fast_note_migrate",
    "testkit": REPO / "testkit",
    "tools": REPO / "tools",
    "tests": REPO / "tests",
}


def _module_name(path: Path) -> str:
    for package, root in PACKAGES.items():
        if root in path.parents:
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise AssertionError(path)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for root in PACKAGES.values() for path in root.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (anywhere in the file, lazily too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle, or [] (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_module_imports_itself_back_through_others() -> None:
    graph = {name: targets for name, targets in _graph().items() if not name.startswith("tests")}
    assert _cycle(graph) == []


def test_the_migrator_the_test_kit_and_the_tools_do_not_import_the_tests() -> None:
    wrong = {
        name: sorted(t for t in targets if t == "tests" or t.startswith("tests."))
        for name, targets in _graph().items()
        if not name.startswith("tests")
    }
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_the_migrator_imports_only_itself() -> None:
    """The runtime package stands alone: no test kit, no developer tools."""
    wrong = {
        name: sorted(t for t in targets if not t.startswith("fast_note_migrate"))
        for name, targets in _graph().items()
        if name.startswith("fast_note_migrate")
    }
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
