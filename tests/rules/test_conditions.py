"""The condition language: each operator's meaning, combinations, and the words of why_not."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from rasa_personalize.rules.conditions import (
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Not,
    compile_condition,
    describe,
    why_not,
)
from rasa_personalize.rules.facts import Facts


def holds(condition: Condition, facts: Facts) -> bool:
    return compile_condition(condition)(facts)


@pytest.mark.parametrize(
    ("condition", "facts", "expected"),
    [
        # eq on a category: same value.
        (Compare("segment", "eq", "loyal"), Facts(segment="loyal"), True),
        # eq ignores case on both sides.
        (Compare("segment", "eq", "Loyal"), Facts(segment="LOYAL"), True),
        # eq: a different value.
        (Compare("segment", "eq", "loyal"), Facts(segment="browser"), False),
        # eq on a number: 4 equals 4.0.
        (Compare("purchase_count", "eq", 4), Facts(purchase_count=4), True),
        # eq never confuses kinds: the text "4" is not the number 4.
        (Compare("attributes.size", "eq", 4), Facts(attributes={"size": "4"}), False),
        # eq never confuses kinds: true is not 1.
        (Compare("attributes.vip", "eq", 1), Facts(attributes={"vip": True}), False),
        # eq on a bool.
        (Compare("is_weekend", "eq", True), Facts(is_weekend=True), True),
        # eq on an unknown value is false.
        (Compare("country", "eq", "france"), Facts(country=None), False),
        # ne is "not eq": a different value passes.
        (Compare("segment", "ne", "loyal"), Facts(segment="browser"), True),
        # ne is "not eq": the same value fails.
        (Compare("segment", "ne", "loyal"), Facts(segment="loyal"), False),
        # ne is "not eq", so an unknown value passes.
        (Compare("country", "ne", "france"), Facts(country=None), True),
        # in: one of the listed values.
        (Compare("loyalty_tier", "in", ("gold", "platinum")), Facts(loyalty_tier="gold"), True),
        # in: not among them.
        (Compare("loyalty_tier", "in", ("gold", "platinum")), Facts(loyalty_tier="silver"), False),
        # in on a list field: any element among them.
        (Compare("tags", "in", ("premium", "vip")), Facts(tags=("new", "vip")), True),
        # in on a list field: no element among them.
        (Compare("tags", "in", ("premium", "vip")), Facts(tags=("new",)), False),
        # in on numbers: true is not 1 there either.
        (Compare("attributes.level", "in", (1, 2)), Facts(attributes={"level": True}), False),
        # not_in is "not in".
        (Compare("loyalty_tier", "not_in", ("gold",)), Facts(loyalty_tier="silver"), True),
        # not_in on a list field: fails when any element is listed.
        (Compare("tags", "not_in", ("vip",)), Facts(tags=("new", "vip")), False),
        # gt: strictly more.
        (Compare("purchase_count", "gt", 4), Facts(purchase_count=5), True),
        # gt: equal is not more.
        (Compare("purchase_count", "gt", 4), Facts(purchase_count=4), False),
        # gte: equal is enough.
        (Compare("purchase_count", "gte", 4), Facts(purchase_count=4), True),
        # lt: strictly less, floats too.
        (
            Compare("discounted_purchase_share", "lt", 0.5),
            Facts(discounted_purchase_share=0.49),
            True,
        ),
        # lte: equal is enough.
        (Compare("total_spent", "lte", 100), Facts(total_spent=100.0), True),
        # gt on an unknown value is false.
        (Compare("age", "gt", 30), Facts(age=None), False),
        # lt on an unknown value is false too: unknown is not "small".
        (Compare("age", "lt", 30), Facts(age=None), False),
        # gt never compares text with numbers.
        (Compare("attributes.score", "gt", 3), Facts(attributes={"score": "9"}), False),
        # gt: true is not a number.
        (Compare("attributes.score", "gt", 0), Facts(attributes={"score": True}), False),
        # between includes the low end.
        (
            Compare("days_since_last_purchase", "between", (45, 90)),
            Facts(days_since_last_purchase=45.0),
            True,
        ),
        # between includes the high end.
        (
            Compare("days_since_last_purchase", "between", (45, 90)),
            Facts(days_since_last_purchase=90.0),
            True,
        ),
        # between: outside.
        (
            Compare("days_since_last_purchase", "between", (45, 90)),
            Facts(days_since_last_purchase=90.5),
            False,
        ),
        # between: unknown is outside.
        (Compare("days_since_last_purchase", "between", (45, 90)), Facts(), False),
        # NaN is no number that passes any comparison.
        (Compare("total_spent", "gte", 0), Facts(total_spent=float("nan")), False),
        # contains on a list: has the element, case ignored.
        (Compare("tags", "contains", "premium"), Facts(tags=("new", "Premium")), True),
        # contains on a list: lacks it.
        (Compare("tags", "contains", "premium"), Facts(tags=("new",)), False),
        # contains on text: a substring, case ignored.
        (Compare("location", "contains", "berlin"), Facts(location="Berlin, DE"), True),
        # contains on unknown text is false.
        (Compare("location", "contains", "berlin"), Facts(location=None), False),
        # exists: a known value.
        (Compare("favorite_category", "exists", True), Facts(favorite_category="running"), True),
        # exists: unknown.
        (Compare("favorite_category", "exists", True), Facts(), False),
        # exists: an empty list counts as not there.
        (Compare("tags", "exists", True), Facts(tags=()), False),
        # exists: an empty text counts as not there.
        (Compare("channel", "exists", True), Facts(channel=""), False),
        # exists false: holds for an unknown value.
        (Compare("city", "exists", False), Facts(city=None), True),
        # exists on a missing mapping entry.
        (Compare("category_affinity.running", "exists", True), Facts(), False),
        # a mapping entry is read by its key.
        (
            Compare("category_affinity.running", "gte", 0.3),
            Facts(category_affinity=MappingProxyType({"running": 0.4})),
            True,
        ),
        # zero is a known value: exists holds.
        (Compare("purchase_count", "exists", True), Facts(purchase_count=0), True),
    ],
)
def test_operator_semantics(condition: Compare, facts: Facts, expected: bool) -> None:
    """Each operator means exactly what the module documents."""
    assert holds(condition, facts) is expected


LOYAL = Compare("segment", "eq", "loyal")
GOLD = Compare("loyalty_tier", "eq", "gold")


@pytest.mark.parametrize(
    ("condition", "facts", "expected"),
    [
        # all: every part holds.
        (AllOf((LOYAL, GOLD)), Facts(segment="loyal", loyalty_tier="gold"), True),
        # all: one part fails.
        (AllOf((LOYAL, GOLD)), Facts(segment="loyal"), False),
        # all with three parts (the looping version).
        (
            AllOf((LOYAL, GOLD, Compare("is_weekend", "eq", True))),
            Facts(segment="loyal", loyalty_tier="gold", is_weekend=True),
            True,
        ),
        # any: one part is enough.
        (AnyOf((LOYAL, GOLD)), Facts(loyalty_tier="gold"), True),
        # any: none holds.
        (AnyOf((LOYAL, GOLD)), Facts(), False),
        # any with three parts: the last one holds.
        (AnyOf((LOYAL, GOLD, Compare("is_weekend", "eq", True))), Facts(is_weekend=True), True),
        # not: the opposite.
        (Not(LOYAL), Facts(segment="browser"), True),
        # not not: the same.
        (Not(Not(LOYAL)), Facts(segment="loyal"), True),
        # a single-part all is that part.
        (AllOf((GOLD,)), Facts(loyalty_tier="silver"), False),
    ],
)
def test_combinations(condition: Condition, facts: Facts, expected: bool) -> None:
    """all, any and not combine conditions as in logic."""
    assert holds(condition, facts) is expected


@pytest.mark.parametrize(
    ("condition", "facts", "reason"),
    [
        # The example of `personalize rules explain` in docs/segments-and-rules.md.
        (
            LOYAL,
            Facts(segment="price_sensitive"),
            "segment is 'price_sensitive', rule needs 'loyal'",
        ),
        (
            Compare("loyalty_tier", "in", ("gold", "platinum")),
            Facts(loyalty_tier="silver"),
            "loyalty_tier is 'silver', rule needs one of 'gold', 'platinum'",
        ),
        (
            Compare("purchase_count", "gte", 4),
            Facts(purchase_count=2),
            "purchase_count is 2, rule needs at least 4",
        ),
        (Compare("age", "gt", 30), Facts(), "age is unknown, rule needs more than 30"),
        (
            Compare("days_since_last_purchase", "between", (45, 90)),
            Facts(days_since_last_purchase=12.5),
            "days_since_last_purchase is 12.5, rule needs between 45 and 90",
        ),
        (
            Compare("tags", "contains", "vip"),
            Facts(tags=("new",)),
            "tags is ['new'], rule needs it to contain 'vip'",
        ),
        (
            Compare("segment", "ne", "loyal"),
            Facts(segment="loyal"),
            "segment is 'loyal', rule needs anything but 'loyal'",
        ),
        (
            Compare("city", "exists", False),
            Facts(city="Paris"),
            "city is 'Paris', rule needs it to be unknown",
        ),
        # Every failing part of an "all" is named, in order.
        (
            AllOf((LOYAL, GOLD)),
            Facts(segment="browser", loyalty_tier="none"),
            "segment is 'browser', rule needs 'loyal'; loyalty_tier is 'none', rule needs 'gold'",
        ),
        # Only the failing parts.
        (AllOf((LOYAL, GOLD)), Facts(segment="loyal"), "loyalty_tier is 'none', rule needs 'gold'"),
        (
            AnyOf((LOYAL, GOLD)),
            Facts(),
            "none of the alternatives holds: segment is 'new_visitor', rule needs 'loyal'; "
            "loyalty_tier is 'none', rule needs 'gold'",
        ),
        (Not(LOYAL), Facts(segment="loyal"), "rule needs not (segment is 'loyal'), but it holds"),
    ],
)
def test_why_not_says_which_condition_failed(
    condition: Condition, facts: Facts, reason: str
) -> None:
    """why_not names the field, its value and what the rule needed."""
    assert why_not(condition, facts) == reason


def test_why_not_is_none_when_the_condition_holds() -> None:
    """A condition that holds has no reason to fail."""
    assert why_not(AllOf((LOYAL, GOLD)), Facts(segment="loyal", loyalty_tier="gold")) is None


def test_describe_reads_like_the_rule() -> None:
    """describe gives a one-line text of the whole tree."""
    condition = AllOf(
        (
            LOYAL,
            AnyOf((Compare("tags", "contains", "vip"), Compare("total_spent", "gte", 500))),
            Not(Compare("channel", "exists", True)),
            Compare("hour", "between", (18, 23)),
        )
    )
    assert describe(condition) == (
        "(segment is 'loyal' and (tags contains 'vip' or total_spent >= 500) "
        "and not (channel is known) and hour between 18 and 23)"
    )


def test_unknown_operator_is_a_programming_error() -> None:
    """Only the loader builds conditions from text; a bad operator in code fails loudly."""
    bad: Any = Compare("segment", "like", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown operator 'like'"):
        compile_condition(bad)
