"""Tag rule files: the demo file is valid, and mistakes are named with line and suggestion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rasa_personalize.segments.errors import TagRulesError
from rasa_personalize.segments.tag_rules import (
    CountCondition,
    FeatureCondition,
    check_tag_file,
    load_tag_rules,
    parse_tag_rules,
    validate_tag_rules,
)

DEMO_RULES = Path(__file__).resolve().parents[2] / "tags.yml"


def test_the_demo_tag_file_is_valid() -> None:
    """tags.yml at the project root loads, with the issue's two examples in it."""
    rules = load_tag_rules(DEMO_RULES)
    by_tag = {rule.tag: rule for rule in rules.rules}
    assert by_tag["interested_in_running"].condition == CountCondition(
        kind="view", at_least=3, category="running", within_days=30
    )
    assert by_tag["premium"].condition == FeatureCondition("monetary", (("gte", 1500.0),))
    assert check_tag_file(DEMO_RULES) == []


def test_a_valid_file_compiles_every_field() -> None:
    """Weights, descriptions, optional count fields and several bounds are kept."""
    rules = parse_tag_rules(
        """
tags:
  - tag: clicker
    description: clicks recommendations
    weight: 0.5
    when: {count: {kind: chat_click, at_least: 2}}
  - tag: mid_spender
    when: {feature: monetary, gte: 100, lt: 1000}
"""
    )
    clicker, mid = rules.rules
    assert (clicker.tag, clicker.weight, clicker.description, clicker.line) == (
        "clicker", 0.5, "clicks recommendations", 3,
    )  # fmt: skip
    assert clicker.condition == CountCondition("chat_click", 2)
    assert isinstance(mid.condition, FeatureCondition)
    values = np.array([99.0, 100.0, 999.0, 1000.0])
    assert mid.condition.holds(values).tolist() == [False, True, True, False]
    assert rules.tags == frozenset({"clicker", "mid_spender"})


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        # A misspelt interaction kind gets the closest real one.
        (
            "  - tag: t\n    when: {count: {kind: veiw, at_least: 3}}\n",
            3,
            "tag 't': unknown kind 'veiw' (did you mean 'view'?)",
        ),
        # A misspelt key inside 'count'.
        (
            "  - tag: t\n    when:\n      count:\n        kind: view\n        at_least: 3\n"
            "        within_dayz: 30\n",
            7,
            "tag 't': unknown key 'within_dayz' (did you mean 'within_days'?)",
        ),
        # A misspelt feature.
        (
            "  - tag: rich\n    when:\n      feature: monetry\n      gte: 5\n",
            4,
            "tag 'rich': unknown feature 'monetry' (did you mean 'monetary'?)",
        ),
        # An operator people write instead of ours.
        (
            "  - tag: rich\n    when: {feature: monetary, '>=': 5}\n",
            3,
            "tag 'rich': unknown key '>=' (did you mean 'gte'?) next to 'feature'",
        ),
        # Counts are whole numbers of at least one.
        (
            "  - tag: t\n    when: {count: {kind: view, at_least: 0}}\n",
            3,
            "'at_least' must be a whole number >= 1, got 0",
        ),
        # Weights live in (0, 1].
        (
            "  - tag: t\n    weight: 2\n    when: {count: {kind: view, at_least: 1}}\n",
            3,
            "'weight' must be a number in (0, 1], got 2",
        ),
        # Tag names are stored as keys: lower-case words only.
        (
            "  - tag: Big Spender\n    when: {feature: monetary, gte: 5}\n",
            2,
            "tag rule #1: 'tag' must be a name of a-z, 0-9 and _",
        ),
        # One condition per rule.
        (
            "  - tag: t\n    when: {count: {kind: view, at_least: 1}, feature: monetary}\n",
            3,
            "'when' takes one condition",
        ),
        # A misspelt condition kind.
        (
            "  - tag: t\n    when: {cont: {kind: view, at_least: 1}}\n",
            3,
            "unknown key 'cont' (did you mean 'count'?)",
        ),
        # A feature needs at least one bound.
        (
            "  - tag: t\n    when: {feature: monetary}\n",
            3,
            "feature 'monetary' needs a bound",
        ),
        # Missing parts are named.
        ("  - tag: t\n", 2, "missing 'when'"),
        ("  - when: {feature: monetary, gte: 1}\n", 2, "missing 'tag'"),
    ],
)
def test_mistakes_are_reported_with_file_line_tag_and_hint(
    body: str, line: int, message: str
) -> None:
    """Each mistake is one problem naming the file, the line, the tag and the fix."""
    rules, problems = validate_tag_rules("tags:\n" + body, "tags.yml")
    assert rules is None
    assert len(problems) == 1, problems
    assert str(problems[0]).startswith(f"tags.yml:{line}:")
    assert message in str(problems[0])


def test_every_problem_is_reported_at_once() -> None:
    """Three mistakes in three rules: three problems in file order, and a duplicate tag."""
    text = """tags:
  - tag: a
    when: {count: {kind: veiw, at_least: 1}}
  - tag: b
    when: {feature: monetry, gte: 1}
  - tag: a
    when: {count: {kind: view, at_least: 1}}
"""
    with pytest.raises(TagRulesError) as caught:
        parse_tag_rules(text, "tags.yml")
    problems = caught.value.problems
    assert [p.line for p in problems] == [3, 5, 6]
    assert problems[2].message == "tag 'a' has a rule already (line 2)"
    assert [p.rule for p in problems] == ["a", "b", "a"]
    assert [p.field for p in problems] == ["kind", "feature", "tag"]
    assert str(caught.value).startswith("tags.yml: 3 problems")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("- tag: a\n", "must be a mapping with a 'tags:' list"),
        ("tag: []\n", "unknown key 'tag' (did you mean 'tags'?)"),
        ("tags: {a: 1}\n", "'tags' must be a list"),
        ("version: 2\ntags: []\n", "version must be 1"),
        ("tags: [\n", "not valid YAML"),
    ],
)
def test_file_level_mistakes(text: str, message: str) -> None:
    """Problems with the file as a whole say what the file should look like."""
    _, problems = validate_tag_rules(text, "tags.yml")
    assert any(message in str(problem) for problem in problems), problems


def test_a_missing_file_is_one_problem(tmp_path: Path) -> None:
    """check_tag_file reports a missing file instead of raising; load_tag_rules raises."""
    missing = tmp_path / "nope.yml"
    assert [str(p) for p in check_tag_file(missing)] == [f"{missing}: file not found"]
    with pytest.raises(TagRulesError, match="file not found"):
        load_tag_rules(missing)
