"""Facts: built from a snapshot and the conversation's context; the field registry."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import datetime, timedelta, timezone

import pytest

from rasa_personalize.cache.counters import SessionCounts
from rasa_personalize.context import ConversationContext
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.rules import evaluate, parse_rules
from rasa_personalize.rules.facts import (
    FIELDS,
    Facts,
    closest_field,
    facts_from,
    field_names,
    field_spec,
    getter,
    with_overrides,
)
from rasa_personalize.store.records import (
    CustomerSnapshot,
    Demographics,
    ProfileMetrics,
    SegmentRecord,
    TagRecord,
)

# A Saturday, 19:30 UTC.
NOW = datetime(2026, 6, 6, 19, 30, tzinfo=timezone.utc)


def snapshot(**changes: object) -> CustomerSnapshot:
    values: dict[str, object] = {
        "customer_id": 7,
        "created_at": NOW - timedelta(days=400),
        "loyalty_tier": "gold",
        "demographics": Demographics(age=41, gender="female", country="Germany", city="Berlin"),
        "attributes": {"staff": False, "newsletter": "weekly"},
        "metrics": ProfileMetrics(
            interaction_count=30,
            view_count=20,
            purchase_count=4,
            total_spent=200.0,
            last_seen_at=NOW - timedelta(days=2),
            last_purchase_at=NOW - timedelta(days=10, hours=12),
            discounted_purchase_share=0.25,
            favorite_category="running",
            category_affinity={"running": 0.7, "books": 0.1},
        ),
        "profile_version": 3,
        "tags": (TagRecord("interested_in_running", "rule", 1.0, NOW),),
        "segment": SegmentRecord("loyal", "kmeans", "v1", 0.8, NOW),
    }
    values.update(changes)
    return CustomerSnapshot(**values)  # type: ignore[arg-type]


def test_facts_of_a_known_customer() -> None:
    """Every profile, metric and context fact is filled in from the snapshot and context."""
    context = ConversationContext(channel="web", device="mobile", timezone_name="Europe/Berlin")
    facts = facts_from(snapshot(), "loyal", context, NOW, location=" Berlin, DE ")
    assert facts == Facts(
        segment="loyal",
        loyalty_tier="gold",
        tags=("interested_in_running",),
        is_known_customer=True,
        is_returning_customer=True,
        interaction_count=30,
        view_count=20,
        purchase_count=4,
        total_spent=200.0,
        average_order_value=50.0,
        discounted_purchase_share=0.25,
        days_since_last_purchase=10.5,
        days_since_last_seen=2.0,
        favorite_category="running",
        category_affinity={"running": 0.7, "books": 0.1},
        age=41,
        gender="female",
        country="Germany",
        city="Berlin",
        attributes={"staff": False, "newsletter": "weekly"},
        # 21:30 in Berlin (summer time).
        time_of_day="evening",
        weekday="saturday",
        hour=21,
        is_weekend=True,
        channel="web",
        device="mobile",
        location="Berlin, DE",
    )


def test_facts_of_an_unknown_customer_are_the_defaults_plus_context() -> None:
    """No snapshot: new visitor, no tier, no history; the context is still known."""
    context = ConversationContext(channel="app", utc_offset_minutes=-10 * 60)
    facts = facts_from(None, "new_visitor", context, NOW)
    assert facts == Facts(
        segment="new_visitor",
        time_of_day="morning",  # 09:30 at UTC-10
        weekday="saturday",
        hour=9,
        is_weekend=True,
        channel="app",
    )
    assert (facts.loyalty_tier, facts.tags, facts.purchase_count) == ("none", (), 0)


def test_the_local_day_can_differ_from_the_servers() -> None:
    """At 19:30 UTC on Saturday it is already Sunday in Auckland."""
    facts = facts_from(
        None, "new_visitor", ConversationContext(timezone_name="Pacific/Auckland"), NOW
    )
    assert (facts.weekday, facts.hour, facts.time_of_day) == ("sunday", 7, "morning")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # A tier outside the contract reads as none, as in the engine.
        ({"loyalty_tier": "diamond"}, {"loyalty_tier": "none"}),
        # No purchase: no average order value, no days since a purchase.
        (
            {"metrics": ProfileMetrics(interaction_count=3, view_count=3)},
            {"average_order_value": None, "days_since_last_purchase": None, "purchase_count": 0},
        ),
        # A last-seen time a little in the future (clock skew) counts as now.
        (
            {
                "metrics": ProfileMetrics(
                    interaction_count=1, last_seen_at=NOW + timedelta(minutes=5)
                )
            },
            {"days_since_last_seen": 0.0},
        ),
        # An old row without a time zone is read as UTC instead of crashing.
        (
            {
                "metrics": ProfileMetrics(
                    interaction_count=1, last_seen_at=datetime(2026, 6, 5, 19, 30)
                )
            },
            {"days_since_last_seen": 1.0},
        ),
        # No interactions: not a returning customer, but known to the store.
        (
            {"metrics": ProfileMetrics()},
            {"is_returning_customer": False, "is_known_customer": True},
        ),
    ],
)
def test_facts_from_edge_cases(changes: dict[str, object], expected: dict[str, object]) -> None:
    """Odd but possible profiles give sensible facts."""
    facts = facts_from(snapshot(**changes), "browser", ConversationContext(), NOW)
    assert {name: getattr(facts, name) for name in expected} == expected


@pytest.mark.parametrize("location", ["", "   ", "x" * 65, None])
def test_implausible_locations_are_dropped(location: str | None) -> None:
    """Metadata is free text from a channel: empty or overlong locations are unknown."""
    assert facts_from(None, "new_visitor", ConversationContext(), NOW, location).location is None


def test_registry_covers_every_fact_field_and_nothing_else() -> None:
    """The YAML vocabulary and the Facts dataclass never drift apart."""
    mappings = {"category_affinity", "intent_counts", "attributes"}
    assert set(FIELDS) == set(field_names()) - mappings
    assert field_names() == tuple(item.name for item in fields(Facts))
    assert all(spec.name == name for name, spec in FIELDS.items())


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("segment", "category"),  # a plain field
        ("category_affinity.running", "number"),  # an entry of the affinity map
        ("attributes.vip", "any"),  # an entry of the free attributes
        ("attributes", None),  # a family needs a key
        ("attributes.", None),  # ... a non-empty one
        ("segmnet", None),  # a typo
    ],
)
def test_field_spec(name: str, kind: str | None) -> None:
    """field_spec knows exact and prefixed names."""
    spec = field_spec(name)
    assert (spec.kind if spec else None) == kind


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("segmnet", "segment"),  # a swapped letter
        ("loyality_tier", "loyalty_tier"),  # a common misspelling
        ("atributes.vip", "attributes.vip"),  # a typo in the family, key kept
        ("catgory_affinity.books", "category_affinity.books"),
        ("completely_different", None),  # nothing close
    ],
)
def test_closest_field(name: str, suggestion: str | None) -> None:
    """Typos get the closest valid name."""
    assert closest_field(name) == suggestion


def test_getter_never_raises_on_odd_mapping_fields() -> None:
    """A mapping field holding something else reads as unknown."""
    assert getter("attributes.vip")(Facts(attributes=None)) is None  # type: ignore[arg-type]
    assert getter("attributes.vip")(Facts(attributes=["vip"])) is None  # type: ignore[arg-type]
    assert getter("attributes.vip")(Facts(attributes={"vip": 1})) == 1


def test_with_overrides_parses_text_per_field_kind() -> None:
    """--context key=value: values typed per field; hour sets time_of_day, weekday is_weekend."""
    facts = with_overrides(
        Facts(segment="browser", attributes={"a": 1}),
        {
            "device": "mobile",
            "hour": "20",
            "weekday": "Saturday",
            "tags": "vip, new",
            "is_returning_customer": "yes",
            "age": "none",
            "total_spent": "99.5",
            "attributes.staff": "true",
            "attributes.level": "3",
            "category_affinity.running": "0.4",
        },
    )
    assert (facts.device, facts.hour, facts.time_of_day) == ("mobile", 20, "evening")
    assert (facts.weekday, facts.is_weekend) == ("saturday", True)
    assert (facts.tags, facts.is_returning_customer, facts.age) == (("vip", "new"), True, None)
    assert facts.total_spent == 99.5
    assert dict(facts.attributes) == {"a": 1, "staff": True, "level": 3}
    assert dict(facts.category_affinity) == {"running": 0.4}


def test_explicit_overrides_win_over_derived_ones() -> None:
    """time_of_day given with hour is kept as given."""
    facts = with_overrides(Facts(), {"hour": "20", "time_of_day": "morning"})
    assert (facts.hour, facts.time_of_day) == (20, "morning")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"segmnet": "loyal"}, "unknown field 'segmnet' (did you mean 'segment'?)"),
        ({"segment": "loyl"}, "segment cannot be 'loyl' (did you mean 'loyal'?); it is one of"),
        ({"hour": "25"}, "hour needs a whole number from 0 to 23, got '25'"),
        ({"age": "old"}, "age needs a number, got 'old'"),
        ({"total_spent": "nan"}, "total_spent needs a number, got 'nan'"),
        ({"is_weekend": "maybe"}, "is_weekend needs true or false, got 'maybe'"),
    ],
)
def test_with_overrides_rejects_bad_input(overrides: dict[str, str], message: str) -> None:
    """CLI input errors name the field and suggest a fix."""
    with pytest.raises(InvalidInputError) as caught:
        with_overrides(Facts(), overrides)
    assert str(caught.value).startswith(message)


def test_session_counts_become_session_facts() -> None:
    """The conversation's counters are facts; without any they are zero."""
    counts = SessionCounts(
        recommendations_shown=6,
        recommendations_accepted=1,
        recommendations_rejected=2,
        categories_asked=3,
    )
    facts = facts_from(snapshot(), "loyal", ConversationContext(), NOW, session=counts)
    assert (
        facts.session_recommendations_shown,
        facts.session_recommendations_accepted,
        facts.session_recommendations_rejected,
        facts.session_categories_asked,
    ) == (6, 1, 2, 3)
    unknown = facts_from(None, "new_visitor", ConversationContext(), NOW, session=counts)
    assert unknown.session_recommendations_rejected == 2  # no profile, still a conversation
    assert facts_from(None, "new_visitor", ConversationContext(), NOW).session_categories_asked == 0


def test_rules_can_test_session_facts() -> None:
    """The rule file's vocabulary has them, with typo hints and what-if overrides."""
    rules = parse_rules(
        "version: 1\n"
        "rules:\n"
        "  - name: second chance\n"
        "    when: {session_recommendations_rejected: {gte: 2}}\n"
        "    then: {offer_type: free_shipping}\n"
    )
    assert evaluate(rules, Facts(session_recommendations_rejected=2)).offer_type == "free_shipping"
    assert evaluate(rules, Facts(session_recommendations_rejected=1)).offer_type == "none"
    assert field_spec("session_categories_asked") is not None
    assert closest_field("session_recomendations_rejected") == "session_recommendations_rejected"
    overridden = with_overrides(Facts(), {"session_recommendations_shown": "4"})
    assert overridden.session_recommendations_shown == 4


def test_rules_read_intent_counts_from_the_stored_metrics() -> None:
    """Per-intent counts come from the profile (no query of their own); an intent never
    seen is unknown, so `exists: false` tells "never asked"."""
    rules = parse_rules(
        "version: 1\n"
        "rules:\n"
        "  - name: keeps asking prices\n"
        "    when: {intent_counts.ask_price: {gte: 3}}\n"
        "    then: {offer_type: discount, discount_pct: 10}\n"
        "  - name: never complained\n"
        "    when: {field: intent_counts.complain, op: exists, value: false}\n"
        "    then: {offer_type: free_shipping}\n"
    )
    chatty = replace(
        snapshot().metrics, chat_message_count=5, intent_counts={"ask_price": 3, "greet": 2}
    )
    complained = replace(chatty, intent_counts={"ask_price": 1, "complain": 1})
    facts = facts_from(snapshot(metrics=chatty), "loyal", ConversationContext(), NOW)
    assert (facts.chat_message_count, facts.intent_counts) == (5, {"ask_price": 3, "greet": 2})
    assert evaluate(rules, facts).offer_type == "discount"
    unknown = facts_from(None, "new_visitor", ConversationContext(), NOW)
    assert evaluate(rules, unknown).offer_type == "free_shipping"
    other = facts_from(snapshot(metrics=complained), "loyal", ConversationContext(), NOW)
    assert evaluate(rules, other).offer_type == "none"
    assert field_spec("intent_counts.ask_price") is not None
    assert closest_field("intent_count.ask_price") == "intent_counts.ask_price"


def test_a_snapshot_read_again_is_not_answered_with_the_facts_of_the_earlier_one() -> None:
    """Facts read off a snapshot are kept per snapshot object: a newer read of the same
    customer (new tier, new tags) gets its own, and the time-dependent facts move."""
    context = ConversationContext()
    first = snapshot()
    facts_from(first, "loyal", context, NOW)
    newer = snapshot(loyalty_tier="silver", tags=())

    again = facts_from(first, "loyal", context, NOW + timedelta(days=1))
    changed = facts_from(newer, "loyal", context, NOW)

    assert (again.loyalty_tier, again.tags) == ("gold", ("interested_in_running",))
    assert again.days_since_last_seen == 3.0
    assert (changed.loyalty_tier, changed.tags) == ("silver", ())
