"""Plumbing shared by the YAML files non-programmers edit (decision rules, tag rules):
reading the file, line numbers of nodes, and a checker that collects every problem."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Final

from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import Node

from rasa_personalize.rules.problems import Problem

# What YamlChecker.value returns for a node YAML cannot build (already reported).
NO_VALUE: Final = object()


def read_text_file(path: Path) -> tuple[str | None, Problem | None]:
    """The file's text, or None and a problem that says why it could not be read."""
    try:
        return path.read_text(encoding="utf-8"), None
    except FileNotFoundError:
        return None, Problem(str(path), None, "file not found")
    except UnicodeDecodeError:
        return None, Problem(str(path), None, "the file is not UTF-8 text")
    except OSError as error:
        return None, Problem(str(path), None, f"cannot read the file: {error.strerror}")


def node_line(node: Node | None) -> int | None:
    """The 1-based line a node starts on."""
    return node.start_mark.line + 1 if node is not None else None


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class YamlChecker:
    """Walks a composed YAML document, collecting every problem with file and line.

    ``scope`` and ``item`` say where the walk is ("rule #3", the rule or tag name), so a
    problem names them.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.scope = ""
        self.item: str | None = None
        self._constructor = SafeConstructor()

    def report(self, node: Node | None, message: str, field: str | None = None) -> None:
        """Record a problem at ``node``'s line."""
        self.problems.append(
            Problem(self.source, node_line(node), message, self.scope, self.item, field)
        )

    def value(self, node: Node) -> Any:
        """The Python value of a node, or ``NO_VALUE`` (reported) if YAML cannot build it."""
        try:
            return self._constructor.construct_object(node, deep=True)
        except ConstructorError as error:
            self.report(node, f"cannot read this value: {error.problem}")
            return NO_VALUE
