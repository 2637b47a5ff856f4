"""Hypothesis properties: the evaluator is total and deterministic, and agrees with explain."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rasa_personalize.context import ConversationContext
from rasa_personalize.rules.conditions import OPERATORS, Compare, compile_condition
from rasa_personalize.rules.explain import explain
from rasa_personalize.rules.facts import FIELDS, Facts, facts_from, field_names
from rasa_personalize.rules.loader import OPERATORS_BY_KIND, validate
from rasa_personalize.rules.ruleset import RECOMMENDATION_STRATEGIES, RuleSet, evaluate
from rasa_personalize.slots import LOYALTY_TIERS, OFFER_TYPES
from rasa_personalize.store.records import (
    CustomerSnapshot,
    Demographics,
    ProfileMetrics,
    SegmentRecord,
    TagRecord,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- arbitrary facts: right types, wrong types, unknowns ----------------------------------

words = st.sampled_from(["loyal", "Loyal", "gold", "mobile", "running", "vip", "", "x"]) | st.text(
    max_size=6
)
numbers = (
    st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(10**30), 10**30)
)
scalars = st.none() | st.booleans() | numbers | words
odd = (
    scalars
    | st.lists(scalars, max_size=3)
    | st.tuples(scalars, scalars)
    | st.frozensets(st.integers(0, 5), max_size=3)
    | st.dictionaries(words, scalars, max_size=3)
    | st.binary(max_size=3)
    | st.lists(st.lists(scalars, max_size=2), max_size=2)  # unhashable elements
)
mappings = st.dictionaries(
    st.sampled_from(["running", "books", "staff", "vip", "level", "x"]), odd, max_size=4
)


def fact_values(name: str) -> st.SearchStrategy[Any]:
    spec = FIELDS.get(name)
    if spec is None:  # the two mapping fields
        return mappings | odd
    typed: st.SearchStrategy[Any] = {
        "category": st.sampled_from(spec.values) if spec.values else words,
        "text": words,
        "number": numbers,
        "bool": st.booleans(),
        "list": st.lists(words, max_size=3).map(tuple),
        "any": odd,
    }[spec.kind]
    return typed | odd


def typed_fact_values(name: str) -> st.SearchStrategy[Any]:
    spec = FIELDS.get(name)
    if spec is None:
        return st.dictionaries(
            st.sampled_from(["running", "staff", "level"]), element(name), max_size=3
        )
    return {
        "category": st.sampled_from(spec.values) if spec.values else words,
        "text": st.none() | element(name),
        "number": st.none() | element(name),
        "bool": st.booleans(),
        "list": st.lists(element(name), max_size=3).map(tuple),
        "any": element(name),
    }[spec.kind]


def _facts() -> st.SearchStrategy[Facts]:
    # Half the time plausible values (so that rules match often), half anything at all.
    wild = st.builds(Facts, **{name: fact_values(name) for name in field_names()})
    typed = st.builds(Facts, **{name: typed_fact_values(name) for name in field_names()})
    return typed | wild


# -- valid rule files ----------------------------------------------------------------------

FIELD_CHOICES = [
    *FIELDS,
    "category_affinity.running",
    "intent_counts.running",
    "attributes.staff",
    "attributes.level",
]
NUMBER_FAMILIES = ("category_affinity", "intent_counts")


def element(name: str) -> st.SearchStrategy[Any]:
    spec = FIELDS.get(name)
    kind = spec.kind if spec else ("number" if name.startswith(NUMBER_FAMILIES) else "any")
    finite = st.integers(-1000, 1000) | st.floats(-1000, 1000, allow_nan=False).map(
        lambda value: round(value, 3)
    )
    text = st.sampled_from(["loyal", "vip", "mobile", "Berlin", "running", "yes", "a b"])
    if spec is not None and spec.kind == "category":
        return st.sampled_from(spec.values)
    return {
        "text": text,
        "list": text,
        "number": finite,
        "bool": st.booleans(),
        "any": text | finite | st.booleans(),
    }[kind]


@st.composite
def comparisons(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(FIELD_CHOICES))
    spec = FIELDS.get(name)
    kind = spec.kind if spec else ("number" if name.startswith(NUMBER_FAMILIES) else "any")
    op = draw(st.sampled_from(OPERATORS_BY_KIND[kind]))
    value: Any
    if op == "exists":
        value = draw(st.booleans())
    elif op in ("in", "not_in"):
        value = draw(st.lists(element(name), min_size=1, max_size=3))
    elif op == "between":
        low, high = sorted(draw(st.lists(st.integers(-100, 100), min_size=2, max_size=2)))
        value = [low, high]
    elif op in ("gt", "gte", "lt", "lte"):
        value = draw(st.integers(-100, 100) | st.floats(-100, 100).map(lambda v: round(v, 2)))
    else:
        value = draw(element(name))
    form = draw(st.sampled_from(["explicit", "operator_key", "short"]))
    if form == "explicit":
        return {"field": name, "op": op, "value": value}
    if form == "short" and op == "eq" and kind != "list":
        return {name: value}
    return {name: {op: value}}


conditions = st.recursive(
    comparisons(),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"all": parts})
        | st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"any": parts})
        | inner.map(lambda part: {"not": part})
    ),
    max_leaves=6,
)


@st.composite
def outputs(draw: st.DrawFn, *, required: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if draw(st.booleans()) or required:
        offer = draw(st.sampled_from(OFFER_TYPES))
        result["offer_type"] = offer
        if offer == "discount":
            result["discount_pct"] = draw(st.integers(1, 100) | st.sampled_from([2.5, 12.5]))
        elif draw(st.booleans()):
            result["discount_pct"] = 0
    if draw(st.booleans()):
        result["max_price"] = draw(st.none() | st.integers(1, 500) | st.just(59.99))
    if draw(st.booleans()):
        result["recommendation_strategy"] = draw(st.sampled_from(RECOMMENDATION_STRATEGIES))
    return result


@st.composite
def rule_files(draw: st.DrawFn) -> str:
    rules = []
    for index in range(draw(st.integers(0, 8))):
        rule: dict[str, Any] = {"name": f"rule {index}", "when": draw(conditions)}
        rule["then"] = draw(outputs(required=True))
        if draw(st.booleans()):
            rule["priority"] = draw(st.integers(-3, 3))
        if draw(st.integers(0, 9)) == 0:
            rule["enabled"] = False
        rules.append(rule)
    document = {"defaults": draw(outputs(required=False)), "rules": rules}
    return yaml.safe_dump(document, sort_keys=False)


def compiled(text: str) -> RuleSet:
    rules, problems = validate(text, "generated.yml")
    assert problems == (), [str(problem) for problem in problems]
    assert rules is not None
    return rules


any_facts = st.deferred(_facts)

# -- properties ----------------------------------------------------------------------------


@SETTINGS
@given(rule_files())
def test_generated_valid_files_load_without_problems(text: str) -> None:
    """Everything the schema allows is accepted: the validator rejects no valid file."""
    assert len(compiled(text).rules) == text.count("- name: rule")


@SETTINGS
@given(rule_files(), any_facts)
def test_evaluation_is_total_deterministic_and_within_the_contract(text: str, facts: Facts) -> None:
    """Any valid rules and any facts: no exception, the same answer twice, contract values."""
    rules = compiled(text)
    decision = evaluate(rules, facts)
    assert evaluate(rules, facts) == decision
    assert decision.offer_type in OFFER_TYPES
    assert 0 <= decision.discount_pct <= 100
    # The offer and its percentage go together, whatever mix of rule and defaults decided.
    assert (decision.discount_pct > 0) == (decision.offer_type == "discount")
    assert decision.recommendation_strategy in RECOMMENDATION_STRATEGIES
    assert decision.max_price is None or decision.max_price > 0


@SETTINGS
@given(rule_files(), any_facts)
def test_the_decision_is_the_first_match_in_evaluation_order(text: str, facts: Facts) -> None:
    """evaluate (with its segment index) agrees with a plain scan, and with explain."""
    rules = compiled(text)
    first = next(
        (rule for rule in rules.ordered if rule.enabled and compile_condition(rule.when)(facts)),
        None,
    )
    expected = rules.default_decision if first is None else rules.decision_of(first)
    event("a rule decided" if first else "the defaults decided")
    assert evaluate(rules, facts) == expected
    explanation = explain(rules, facts)
    assert explanation.decision == expected
    deciding = [o.name for o in explanation.outcomes if o.verdict == "decides"]
    assert deciding == ([] if first is None else [first.name])
    assert all(bool(o.reason) for o in explanation.outcomes if o.verdict == "no_match")
    # A header, a line per rule (or "(no rules)"), the outcome.
    assert len(str(explanation).splitlines()) == max(len(rules.rules), 1) + 2


@SETTINGS
@given(
    st.sampled_from(FIELD_CHOICES),
    st.sampled_from([("eq", "ne"), ("in", "not_in")]),
    st.data(),
    any_facts,
)
def test_negated_operators_are_exact_complements(
    name: str, pair: tuple[str, str], data: st.DataObject, facts: Facts
) -> None:
    """ne is not eq, not_in is not in, for any value, unknowns included."""
    value = data.draw(element(name))
    expected = (value,) if pair[0] == "eq" else (value, data.draw(element(name)))
    if pair[0] == "eq":
        positive, negative = Compare(name, "eq", value), Compare(name, "ne", value)
    else:
        positive, negative = Compare(name, "in", expected), Compare(name, "not_in", expected)
    assert compile_condition(positive)(facts) is not compile_condition(negative)(facts)


@SETTINGS
@given(st.sampled_from(FIELD_CHOICES), st.sampled_from(OPERATORS), st.data(), any_facts)
def test_every_comparison_returns_a_bool_for_any_facts(
    name: str, op: str, data: st.DataObject, facts: Facts
) -> None:
    """Each operator, on any field, answers True or False (never raises, never None)."""
    value: Any
    if op == "between":
        value = tuple(sorted(data.draw(st.lists(st.integers(-5, 5), min_size=2, max_size=2))))
    elif op in ("in", "not_in"):
        value = tuple(data.draw(st.lists(element(name), min_size=1, max_size=3)))
    elif op == "exists":
        value = data.draw(st.booleans())
    elif op in ("gt", "gte", "lt", "lte"):
        value = data.draw(st.integers(-5, 5) | st.floats(-5, 5))
    else:
        value = data.draw(element(name))
    assert compile_condition(Compare(name, op, value))(facts) in (True, False)  # type: ignore[arg-type]


yamlish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(
        ["rules", "when", "then", "name", "segment", "field", "op", "value", "all", "any", "not"]
    ),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(
        st.sampled_from(["rules", "when", "then", "name", "segment", "field", "op", "value", "all",
                         "any", "not", "defaults", "offer_type", "tags", "gte", "in"]),
        inner,
        max_size=4,
    ),
    max_leaves=12,
)  # fmt: skip


@SETTINGS
@given(yamlish | st.text(max_size=40).map(lambda text: {"raw": text}))
def test_validation_never_raises_on_any_document(document: Any) -> None:
    """Whatever an author writes, validate answers with rules or problems, never a crash."""
    text = (
        document["raw"]
        if isinstance(document, dict) and "raw" in document
        else yaml.safe_dump(document)
    )
    rules, problems = validate(text, "any.yml")
    assert (rules is None) == bool(problems)
    assert all(str(problem).startswith("any.yml") for problem in problems)


NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
# Naive and aware times: old rows may lack an offset.
moments = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2030, 1, 1),
    timezones=st.none() | st.just(timezone.utc),
)


@SETTINGS
@given(
    st.builds(
        ProfileMetrics,
        interaction_count=st.integers(0, 10**6),
        view_count=st.integers(0, 10**6),
        purchase_count=st.integers(0, 10**4),
        total_spent=st.floats(0, 10**7),
        last_seen_at=moments,
        last_purchase_at=moments,
        discounted_purchase_share=st.floats(0, 1),
        favorite_category=st.none() | words,
        category_affinity=st.dictionaries(words, st.floats(0, 1), max_size=3),
        chat_message_count=st.integers(0, 10**5),
        intent_counts=st.dictionaries(words, st.integers(1, 10**5), max_size=3),
    ),
    st.sampled_from([*LOYALTY_TIERS, "diamond", ""]),
    st.lists(words, max_size=3),
    st.dictionaries(words, scalars, max_size=3),
    st.sampled_from([None, "Europe/Berlin", "Pacific/Auckland", "America/Los_Angeles"]),
    st.integers(-14 * 60, 14 * 60),
    rule_files(),
)
def test_any_profile_gets_facts_and_a_decision(
    metrics: ProfileMetrics,
    tier: str,
    tags: list[str],
    attributes: dict[str, Any],
    zone: str | None,
    offset: int,
    text: str,
) -> None:
    """facts_from and evaluate together never fail, whatever the stored profile holds."""
    snapshot = CustomerSnapshot(
        customer_id=1,
        created_at=NOW - timedelta(days=10),
        loyalty_tier=tier,
        demographics=Demographics(),
        attributes=attributes,
        metrics=metrics,
        profile_version=1,
        tags=tuple(TagRecord(tag, "rule", 1.0, NOW) for tag in tags),
        segment=SegmentRecord("loyal", "kmeans", "v1", None, NOW),
    )
    context = ConversationContext(timezone_name=zone, utc_offset_minutes=offset)
    facts = facts_from(snapshot, "loyal", context, NOW)
    assert facts.loyalty_tier in LOYALTY_TIERS
    assert facts.days_since_last_purchase is None or facts.days_since_last_purchase >= 0
    assert evaluate(compiled(text), facts) == evaluate(compiled(text), facts)
