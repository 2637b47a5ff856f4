"""RuleBook: reloads a changed file without restart, keeps the last good rules on a bad edit."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from rasa_personalize.rules.book import RuleBook
from rasa_personalize.rules.builtin import BUILTIN_SOURCE
from rasa_personalize.rules.facts import Facts
from rasa_personalize.rules.problems import RulesError

LOYAL = Facts(segment="loyal")


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def rules_for_loyal(offer: str) -> str:
    return (
        f"rules:\n  - name: loyal {offer}\n"
        f"    when: {{segment: loyal}}\n    then: {{offer_type: {offer}}}\n"
    )


BROKEN = "rules:\n  - name: broken\n    when: {segmnet: loyal}\n    then: {offer_type: bundle}\n"


def write(path: Path, text: str) -> None:
    """Write and move the modification time on, as a later save would."""
    previous = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    # Two writes within the file system's timestamp granularity look alike to stat.
    os.utime(path, ns=(previous + 10**9, previous + 10**9))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    rules_path = tmp_path / "personalization.yml"
    write(rules_path, rules_for_loyal("bundle"))
    return rules_path


def test_serves_the_file_and_reloads_it_after_the_interval(path: Path, clock: FakeClock) -> None:
    """A change shows after check_every_s, not before: the hot path does not stat every call."""
    book = RuleBook(path, check_every_s=5.0, clock=clock)
    assert book.decide(LOYAL).offer_type == "bundle"
    write(path, rules_for_loyal("exclusive_access"))
    clock.advance(4.9)
    assert book.decide(LOYAL).offer_type == "bundle"
    clock.advance(0.1)
    assert book.decide(LOYAL).offer_type == "exclusive_access"
    assert book.current().source == str(path)


def test_refresh_checks_at_once(path: Path, clock: FakeClock) -> None:
    """refresh() ignores the interval and says whether new rules were loaded."""
    book = RuleBook(path, check_every_s=60.0, clock=clock)
    assert book.refresh() is False  # nothing changed
    write(path, rules_for_loyal("free_shipping"))
    assert book.refresh() is True
    assert book.decide(LOYAL).offer_type == "free_shipping"


def test_same_content_saved_again_is_not_reloaded(path: Path, clock: FakeClock) -> None:
    """A touch changes the timestamp, not the rules: same compiled object, no log."""
    book = RuleBook(path, check_every_s=1.0, clock=clock)
    before = book.current()
    write(path, rules_for_loyal("bundle"))
    clock.advance(1.0)
    assert book.current() is before


def test_invalid_edit_keeps_the_last_good_rules_and_warns_once(
    path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad version is rejected with one warning that says why; a fix is picked up."""
    book = RuleBook(path, check_every_s=1.0, clock=clock)
    caplog.set_level(logging.INFO, logger="rasa_personalize.rules.book")
    write(path, BROKEN)
    clock.advance(1.0)
    assert book.decide(LOYAL).offer_type == "bundle"
    assert [problem.line for problem in book.problems] == [3]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (
        f"Rule file {path} has 1 problem(s); keeping the rules from {path} "
        f"({book.rules.digest}):\n"
        f"{path}:3: rule 'broken': unknown field 'segmnet' (did you mean 'segment'?)"
    )

    # Checked again (and touched again): the same bad version is not logged again.
    write(path, BROKEN)
    clock.advance(1.0)
    book.current()
    assert book.refresh() is False
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

    # Another bad version is news.
    write(path, BROKEN.replace("bundle", "bundel"))
    clock.advance(1.0)
    book.current()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2

    # The fix is loaded and the problems are cleared.
    write(path, rules_for_loyal("exclusive_access"))
    clock.advance(1.0)
    assert book.decide(LOYAL).offer_type == "exclusive_access"
    assert book.problems == ()
    assert caplog.records[-1].getMessage() == (f"Loaded 1 rules from {path} ({book.rules.digest}).")


def test_missing_file_at_start_serves_builtin_rules_until_it_appears(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """No file: today's offers per segment, with a log line; the file is picked up later."""
    caplog.set_level(logging.INFO, logger="rasa_personalize.rules.book")
    path = tmp_path / "personalization.yml"
    book = RuleBook(path, check_every_s=1.0, clock=clock)
    assert book.rules.source == BUILTIN_SOURCE
    assert book.decide(LOYAL).offer_type == "exclusive_access"
    assert caplog.records[0].getMessage() == (
        f"No rule file at {path}; using the built-in offers per segment until it appears."
    )
    write(path, rules_for_loyal("bundle"))
    clock.advance(1.0)
    assert book.decide(LOYAL).offer_type == "bundle"


def test_deleted_file_keeps_the_rules_and_warns_once(
    path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that disappears (a deploy in progress?) leaves the rules in service."""
    book = RuleBook(path, check_every_s=1.0, clock=clock)
    caplog.set_level(logging.WARNING, logger="rasa_personalize.rules.book")
    path.unlink()
    for _ in range(3):
        clock.advance(1.0)
        assert book.decide(LOYAL).offer_type == "bundle"
    assert [r.getMessage() for r in caplog.records] == [
        f"Rule file {path} has gone; keeping the rules from {path} ({book.rules.digest})."
    ]
    write(path, rules_for_loyal("free_shipping"))
    clock.advance(1.0)
    assert book.decide(LOYAL).offer_type == "free_shipping"


def test_invalid_file_at_start_fails_fast_when_strict(tmp_path: Path) -> None:
    """At start-up an invalid file is an error the operator sees, with every problem."""
    path = tmp_path / "personalization.yml"
    write(path, BROKEN)
    with pytest.raises(RulesError) as caught:
        RuleBook(path)
    assert [problem.field for problem in caught.value.problems] == ["segmnet"]


def test_invalid_file_at_start_serves_builtin_rules_when_not_strict(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """strict=False: a warning, built-in rules, and the fix is loaded when it comes."""
    path = tmp_path / "personalization.yml"
    write(path, BROKEN)
    book = RuleBook(path, check_every_s=1.0, clock=clock, strict=False)
    assert book.rules.source == BUILTIN_SOURCE
    assert len(book.problems) == 1
    assert "keeping the rules from <built-in rules>" in caplog.records[-1].getMessage()
    write(path, rules_for_loyal("bundle"))
    clock.advance(1.0)
    assert book.decide(LOYAL).offer_type == "bundle"


def test_non_utf8_edit_is_rejected(path: Path, clock: FakeClock) -> None:
    """A file saved in another encoding is a problem like any other."""
    book = RuleBook(path, check_every_s=1.0, clock=clock)
    path.write_bytes("rules: []  # caf\xe9\n".encode("latin-1"))
    assert book.refresh() is False
    assert [problem.message for problem in book.problems] == ["the file is not UTF-8 text"]
    assert book.decide(LOYAL).offer_type == "bundle"


def test_explain_uses_the_current_rules(path: Path, clock: FakeClock) -> None:
    """RuleBook.explain explains what decide decides."""
    book = RuleBook(path, check_every_s=1.0, clock=clock)
    assert book.explain(LOYAL).decision == book.decide(LOYAL)
