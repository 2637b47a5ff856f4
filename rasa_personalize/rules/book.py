"""RuleBook: the current rules of a file, reloaded when the file changes, without restart.

The hot path calls :meth:`RuleBook.current` (or :meth:`RuleBook.decide`) for every
conversation. That costs one clock read until ``check_every_s`` has passed; then one
``stat`` of the file, and only when its size or modification time changed is it read,
hashed and compiled. An invalid version is rejected, logged once (the same bad text is
not logged again) and the last good rules stay in service. Rule files hold no personal
data, so the problems are logged in full.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rasa_personalize.rules.builtin import builtin_rules
from rasa_personalize.rules.explain import Explanation, explain
from rasa_personalize.rules.facts import Facts
from rasa_personalize.rules.loader import validate
from rasa_personalize.rules.problems import Problem, RulesError
from rasa_personalize.rules.ruleset import Decision, RuleSet, evaluate

logger = logging.getLogger(__name__)

# (size, mtime in ns, inode): a save by an editor that replaces the file changes the inode.
_Signature = tuple[int, int, int]


class RuleBook:
    """Serves the current compiled rules of ``path``; safe to share between threads.

    Args:
        path: the rule file. Missing: the built-in rules (one offer per segment) serve
            until the file appears.
        check_every_s: how often, at most, the hot path looks at the file.
        clock: monotonic seconds; tests pass a fake one.
        strict: an invalid file at construction raises :class:`RulesError` (fail fast at
            start-up); with ``strict=False`` it is logged and the built-in rules serve.

    Raises:
        RulesError: ``strict`` and the file exists but is invalid.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        check_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        strict: bool = True,
    ) -> None:
        self.path = Path(path)
        self.check_every_s = check_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._rules: RuleSet = builtin_rules()
        self._signature: _Signature | None = None
        self._digest: str | None = None
        self._problems: tuple[Problem, ...] = ()
        self._missing = False
        self._next_check = clock() + check_every_s
        signature = self._stat()
        if signature is None:
            self._missing = True
            logger.info(
                "No rule file at %s; using the built-in offers per segment until it appears.",
                self.path,
            )
            return
        self._load(signature, initial=True, strict=strict)

    @property
    def rules(self) -> RuleSet:
        """The rules in service, without looking at the file."""
        return self._rules

    @property
    def problems(self) -> tuple[Problem, ...]:
        """The problems of the file's latest version if it was rejected, else ``()``."""
        return self._problems

    def current(self) -> RuleSet:
        """The rules in service, reloading first if the file changed (checked at most every
        ``check_every_s``)."""
        if self._clock() >= self._next_check:
            self._check(force=False)
        return self._rules

    def refresh(self) -> bool:
        """Look at the file now, whatever the interval; True if new rules were loaded."""
        return self._check(force=True)

    def decide(self, facts: Facts) -> Decision:
        """The current rules' decision for ``facts``."""
        return evaluate(self.current(), facts)

    def explain(self, facts: Facts) -> Explanation:
        """The current rules' explanation for ``facts``."""
        return explain(self.current(), facts)

    def _stat(self) -> _Signature | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as error:
            logger.warning("Cannot stat rule file %s: %s", self.path, error.strerror)
            return None
        return (stat.st_size, stat.st_mtime_ns, stat.st_ino)

    def _check(self, *, force: bool) -> bool:
        with self._lock:
            self._next_check = self._clock() + self.check_every_s
            signature = self._stat()
            if signature is None:
                if not self._missing:
                    self._missing = True
                    logger.warning(
                        "Rule file %s has gone; keeping the rules from %s.",
                        self.path,
                        _version(self._rules),
                    )
                self._signature = None
                return False
            self._missing = False
            if signature == self._signature and not force:
                return False
            return self._load(signature, initial=False, strict=False)

    def _load(self, signature: _Signature, *, initial: bool, strict: bool) -> bool:
        try:
            data = self.path.read_bytes()
        except OSError as error:
            # Vanished or unreadable between stat and read: try again at the next check.
            logger.warning("Cannot read rule file %s: %s", self.path, error.strerror)
            return False
        self._signature = signature
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return False  # touched, or saved again without changes
        self._digest = digest
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            rules = None
            problems: tuple[Problem, ...] = (
                Problem(str(self.path), None, "the file is not UTF-8 text"),
            )
        else:
            rules, problems = validate(text, str(self.path))
        if rules is None:
            self._problems = problems
            if initial and strict:
                raise RulesError(str(self.path), problems)
            logger.warning(
                "Rule file %s has %d problem(s); keeping the rules from %s:\n%s",
                self.path,
                len(problems),
                _version(self._rules),
                "\n".join(str(problem) for problem in problems),
            )
            return False
        self._rules = rules
        self._problems = ()
        logger.info("Loaded %d rules from %s.", len(rules.rules), _version(rules))
        return True


def _version(rules: RuleSet) -> str:
    return f"{rules.source} ({rules.digest})" if rules.digest else rules.source
