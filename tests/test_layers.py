"""The house keeps its shape: imports go one way between the packages, and no module imports
itself back through another (docs/ARCHITECTURE.md, "The map")."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "tools", "memory", "prompts")


def modules() -> dict[str, Path]:
    """Every module of the project by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> Iterator[str]:
    """The project modules ``path`` imports, anywhere in it (lazy imports inside functions too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            yield from (name for name in names if name in known)
            if not any(name in known for name in names) and node.module in known:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)


GRAPH = {name: set(imports(path, set(modules()))) - {name} for name, path in modules().items()}


@pytest.mark.parametrize("package", ["memory", "tools"])
def test_memory_and_tools_import_only_the_core_of_agent(package: str) -> None:
    wrong = {
        (module, target)
        for module, targets in GRAPH.items()
        if module.startswith(f"{package}.")
        for target in targets
        if target.startswith("agent.") and not target.startswith("agent.core")
    }
    assert not wrong


def test_memory_does_not_import_tools() -> None:
    assert not {
        (m, t) for m, ts in GRAPH.items() if m.startswith("memory.") for t in ts if t.startswith("tools")
    }


def test_no_module_imports_itself_back() -> None:
    """No cycle of imports between modules (a package's ``__init__`` re-exporting its own is not one)."""

    cycles = []
    for start in GRAPH:
        stack, seen = [(start, (start,))], set()
        while stack:
            module, path = stack.pop()
            for target in GRAPH.get(module, ()):
                if target == start and not _reexport(path):
                    cycles.append(" -> ".join((*path, start)))
                elif target not in seen and target != start:
                    seen.add(target)
                    stack.append((target, (*path, target)))
    assert not cycles, "\n".join(sorted(set(cycles))[:10])


def _reexport(path: tuple[str, ...]) -> bool:
    """A path through a package's ``__init__`` to its own submodule: imports, not a cycle of code."""
    return any(
        modules()[module].name == "__init__.py" and any(other.startswith(f"{module}.") for other in path)
        for module in path
    )
