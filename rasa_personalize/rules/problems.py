"""What is wrong with a rule file: one :class:`Problem` per mistake, all raised together."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rasa_personalize.errors import ConfigurationError


@dataclass(frozen=True)
class Problem:
    """One mistake in a rule file, located well enough for a person to fix it.

    ``str(problem)`` reads like a compiler message::

        personalization.yml:14: rule 'bargain discount': unknown field 'segmnet' (did you mean 'segment'?)
    """  # noqa: E501  # the example is one line on purpose

    file: str
    line: int | None  # 1-based; None when the problem is about the whole file
    message: str
    scope: str = ""  # "rule 'name'", "rule #3", "defaults" or "" for the file itself
    rule: str | None = None  # the rule's name, when the problem is inside a named rule
    field: str | None = None  # the fact field or output the problem is about

    def __str__(self) -> str:
        location = self.file if self.line is None else f"{self.file}:{self.line}"
        scope = f" {self.scope}:" if self.scope else ""
        return f"{location}:{scope} {self.message}"


class RulesError(ConfigurationError):
    """A rule file is invalid; ``problems`` lists every mistake found, in file order."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(str(problem) for problem in self.problems)
        super().__init__(f"{file}: {count} problem{'s' if count != 1 else ''}\n{lines}")


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""`` if none is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""
