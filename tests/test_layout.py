"""The shape of the house, checked: who may import what.

- ``store/`` is the only package that speaks SQL: nothing else imports SQLAlchemy.
- The CLI is an entry point at the top: nothing outside ``cli/`` imports it.
- No CLI module imports another module's private names.
- Module-level imports form no cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rasa_personalize"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.parts
    }


def imports_of(path: Path, *, top_level_only: bool = False) -> Iterator[tuple[str, list[str]]]:
    """(module imported, names imported from it) for each import statement in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # Relative imports resolve against the module's package (a package's own __init__ is
    # that package).
    package = module_name(path)
    package = package if path.name == "__init__.py" else package.rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, [alias.name for alias in node.names]


def test_only_the_store_imports_sqlalchemy() -> None:
    """No module outside rasa_personalize/store imports sqlalchemy, even lazily."""
    offenders = sorted(
        name
        for name, path in package_modules().items()
        if not name.startswith("rasa_personalize.store")
        and any(
            imported == "sqlalchemy" or imported.startswith("sqlalchemy.")
            for imported, _ in imports_of(path)
        )
    )
    assert offenders == []


def test_nothing_below_the_cli_imports_it() -> None:
    """The CLI is an entry point: no other module of the package imports it."""
    offenders = sorted(
        name
        for name, path in package_modules().items()
        if not name.startswith("rasa_personalize.cli")
        and any(imported.startswith("rasa_personalize.cli") for imported, _ in imports_of(path))
    )
    assert offenders == []


def test_no_module_imports_private_names_of_a_cli_module() -> None:
    """Shared CLI helpers are public; no module reaches into another's ``_private`` names."""
    offenders = sorted(
        f"{name} imports {imported}.{symbol}"
        for name, path in package_modules().items()
        for imported, symbols in imports_of(path)
        if ".cli" in f".{imported}" and imported.startswith("rasa_personalize")
        for symbol in symbols
        if symbol.startswith("_")
    )
    assert offenders == []


def test_module_level_imports_have_no_cycle() -> None:
    """Importing any module never needs that module half-initialised."""
    modules = package_modules()
    graph = {
        name: sorted(
            {
                imported
                for imported, _ in imports_of(path, top_level_only=True)
                if imported in modules and imported != name
            }
        )
        for name, path in modules.items()
    }

    # A package's __init__ importing its own submodules is the normal re-export pattern;
    # count only edges between modules where neither is the other's package.
    def related(a: str, b: str) -> bool:
        return a.startswith(f"{b}.") or b.startswith(f"{a}.")

    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in graph[node]:
            if related(node, target):
                continue
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for start in graph:
        if start not in state:
            visit(start, [start])
    assert cycles == []


@pytest.mark.parametrize("folder", ["rasa_personalize", "actions", "rasa_sdk_plugins", "bench"])
def test_documents_named_in_code_are_in_the_repository(folder: str) -> None:
    """Code points only at documents this repository has (``docs/x.md``, ``README.md``).

    A path (``docs/operations.md``) must exist from the repository's root; a bare upper
    case name (``README.md``) must exist somewhere in it. Lower case bare names are files
    the code writes (a report's ``segments.md``), not pointers.
    """
    documents = {path.name for path in ROOT.rglob("*.md") if ".venv" not in str(path)}
    missing = []
    for path in (ROOT / folder).rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r"(?:\.\./|[\w-]+/)*[\w-]+\.md\b", text):
            pointer = "/" in name
            outside = ".." in name or not (ROOT / name).exists()
            if (pointer and outside) or (
                not pointer and name[0].isupper() and name not in documents
            ):
                missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert missing == []
