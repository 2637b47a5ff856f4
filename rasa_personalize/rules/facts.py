"""Facts: the flat namespace of values that decision rules read about one customer, now.

The field names here are the vocabulary of the rule file: ``segment``, ``tags``,
``days_since_last_purchase``, ``device``... :data:`FIELDS` registers each one with its kind
so the loader can check a rule against it, and three prefixed families reach into mappings:
``category_affinity.<category>``, ``intent_counts.<intent>`` (the customer's chat messages
with that intent, from the profile's metrics: no query of its own) and ``attributes.<name>``
(the profile's free attributes).
The ``session_*`` facts count what happened in the current conversation (recommendations
shown, accepted, rejected; categories asked), from :mod:`rasa_personalize.cache.counters`.

A missing value is ``None`` ("unknown"): a rule that needs it simply does not match.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal

from rasa_personalize.context import ConversationContext, time_of_day
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.slots import CUSTOMER_SEGMENTS, LOYALTY_TIERS, TIMES_OF_DAY
from rasa_personalize.store.records import PURCHASE_7D, CustomerSnapshot

if TYPE_CHECKING:
    # Only the type: the rules (and `personalize rules check`) need no Redis client.
    from rasa_personalize.cache.counters import SessionCounts

WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKEND: Final = frozenset({"saturday", "sunday"})
_SECONDS_PER_DAY: Final = 86_400.0
# Location comes from message metadata: free text from a channel, kept short.
_MAX_LOCATION = 64

FieldKind = Literal["category", "text", "number", "bool", "list", "any"]


def _no_entries() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Facts:
    """What the rules may know about one customer in one conversation, as plain values.

    Build it with :func:`facts_from`; construct it directly in tests. Every field has a
    default, so ``Facts()`` is an unknown new visitor at an unknown time.
    """

    # Who the customer is.
    segment: str = "new_visitor"
    loyalty_tier: str = "none"
    tags: tuple[str, ...] = ()
    is_known_customer: bool = False
    is_returning_customer: bool = False
    # What they did (profile metrics).
    interaction_count: int = 0
    view_count: int = 0
    purchase_count: int = 0
    total_spent: float = 0.0
    average_order_value: float | None = None
    discounted_purchase_share: float = 0.0
    days_since_last_purchase: float | None = None
    days_since_last_seen: float | None = None
    favorite_category: str | None = None
    category_affinity: Mapping[str, float] = field(default_factory=_no_entries)
    # What they said in chats (profile metrics, from Rasa's event broker).
    chat_message_count: int = 0
    intent_counts: Mapping[str, int] = field(default_factory=_no_entries)
    # What the offline models predict (``personalize propensity train``).
    propensity_purchase_7d: float | None = None
    # What the CRM knows.
    age: int | None = None
    gender: str | None = None
    country: str | None = None
    city: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=_no_entries)
    # Where and when the conversation happens (customer's local time when known).
    time_of_day: str | None = None
    weekday: str | None = None
    hour: int | None = None
    is_weekend: bool = False
    channel: str | None = None
    device: str | None = None
    location: str | None = None
    # What happened in this conversation so far (zeros for a new one or outside a chat).
    session_recommendations_shown: int = 0
    session_recommendations_accepted: int = 0
    session_recommendations_rejected: int = 0
    session_categories_asked: int = 0


@dataclass(frozen=True)
class FieldSpec:
    """One name a rule may test: its kind, meaning and, for categories, allowed values."""

    name: str
    kind: FieldKind
    description: str
    values: tuple[str, ...] = ()


FIELDS: Final[Mapping[str, FieldSpec]] = {
    spec.name: spec
    for spec in (
        FieldSpec("segment", "category", "the customer's archetype segment", CUSTOMER_SEGMENTS),
        FieldSpec("loyalty_tier", "category", "tier from the CRM", LOYALTY_TIERS),
        FieldSpec("tags", "list", "fine-grained tags, e.g. interested_in_running"),
        FieldSpec("is_known_customer", "bool", "the store has a profile for this customer"),
        FieldSpec("is_returning_customer", "bool", "the customer has any history"),
        FieldSpec("interaction_count", "number", "interactions of any kind"),
        FieldSpec("view_count", "number", "product views"),
        FieldSpec("purchase_count", "number", "purchases"),
        FieldSpec("total_spent", "number", "money spent, all purchases"),
        FieldSpec("average_order_value", "number", "total_spent / purchase_count"),
        FieldSpec("discounted_purchase_share", "number", "share of purchases bought on discount"),
        FieldSpec("days_since_last_purchase", "number", "days since the last purchase"),
        FieldSpec("days_since_last_seen", "number", "days since the last interaction"),
        FieldSpec("favorite_category", "text", "top category by affinity"),
        FieldSpec(
            "chat_message_count",
            "number",
            "the customer's chat messages on record (stored by personalize broker)",
        ),
        FieldSpec(
            "propensity_purchase_7d",
            "number",
            "calibrated probability of a purchase in the next 7 days, 0-1 (unknown until "
            "personalize propensity train has scored the customer)",
        ),
        FieldSpec("age", "number", "age in years"),
        FieldSpec("gender", "text", "gender as recorded in the CRM"),
        FieldSpec("country", "text", "country as recorded in the CRM"),
        FieldSpec("city", "text", "city as recorded in the CRM"),
        FieldSpec("time_of_day", "category", "local time of day", TIMES_OF_DAY),
        FieldSpec("weekday", "category", "local day of the week", WEEKDAYS),
        FieldSpec("hour", "number", "local hour, 0-23"),
        FieldSpec("is_weekend", "bool", "it is Saturday or Sunday, local time"),
        FieldSpec("channel", "text", "chat channel from message metadata, e.g. web, app"),
        FieldSpec("device", "text", "device from message metadata, e.g. mobile, desktop"),
        FieldSpec("location", "text", "location from message metadata"),
        FieldSpec(
            "session_recommendations_shown",
            "number",
            "products recommended in this conversation so far",
        ),
        FieldSpec(
            "session_recommendations_accepted",
            "number",
            "times the customer said yes to recommendations in this conversation",
        ),
        FieldSpec(
            "session_recommendations_rejected",
            "number",
            "times the customer said no to recommendations in this conversation",
        ),
        FieldSpec(
            "session_categories_asked",
            "number",
            "messages in which the customer asked for a category in this conversation",
        ),
    )
}

# Families of names that read one entry of a mapping field: "attributes.vip".
FIELD_PREFIXES: Final[Mapping[str, FieldSpec]] = {
    "category_affinity": FieldSpec(
        "category_affinity.<category>", "number", "affinity to one category, 0-1"
    ),
    "intent_counts": FieldSpec(
        "intent_counts.<intent>",
        "number",
        "the customer's chat messages with this intent on record (unknown when none)",
    ),
    "attributes": FieldSpec("attributes.<name>", "any", "one of the profile's free attributes"),
}


def field_spec(name: str) -> FieldSpec | None:
    """The spec of a field name, prefixed names included; ``None`` if the name is unknown."""
    spec = FIELDS.get(name)
    if spec is not None:
        return spec
    prefix, dot, key = name.partition(".")
    family = FIELD_PREFIXES.get(prefix)
    if dot and key and family is not None:
        return FieldSpec(name, family.kind, family.description)
    return None


def closest_field(name: str) -> str | None:
    """The valid field name closest to a misspelt one, if any is close enough."""
    prefix, dot, key = name.partition(".")
    if dot and key:
        families = difflib.get_close_matches(prefix, list(FIELD_PREFIXES), n=1)
        return f"{families[0]}.{key}" if families else None
    candidates = [*FIELDS, *(f"{family}.<name>" for family in FIELD_PREFIXES)]
    matches = difflib.get_close_matches(name, candidates, n=1)
    return matches[0] if matches else None


def getter(name: str) -> Callable[[Facts], Any]:
    """A function reading field ``name`` from facts; ``None`` when a mapping lacks the key.

    It never raises, whatever the facts hold: rules must not crash a conversation.
    """
    prefix, dot, key = name.partition(".")
    if not dot:
        return attrgetter(name)

    def read_entry(facts: Facts) -> Any:
        try:
            return getattr(facts, prefix).get(key)
        except (AttributeError, TypeError):
            # A mapping field holding something else (only hand-built facts do that).
            return None

    return read_entry


def facts_from(
    snapshot: CustomerSnapshot | None,
    segment: str,
    context: ConversationContext,
    now: datetime,
    location: str | None = None,
    *,
    session: SessionCounts | None = None,
    local: datetime | None = None,
) -> Facts:
    """The facts about one customer now.

    Args:
        snapshot: the stored profile, or ``None`` for an unknown customer (then every
            profile fact keeps its default: no tier, no tags, no history).
        segment: the segment the engine decided (stored assignment or archetype rule).
        context: channel, device and time zone from message metadata.
        now: the current time, timezone-aware.
        location: the location from message metadata, when the channel sends one.
        session: the conversation's counters (``None``: none yet, all zero).
        local: ``context.local_time(now)``, when the caller has it already.
    """
    if local is None:
        local = context.local_time(now)
    weekday = WEEKDAYS[local.weekday()]
    # One Facts built from one dict: the hot path pays for a single __init__.
    values: dict[str, Any] = {
        "segment": segment,
        "time_of_day": time_of_day(local),
        "weekday": weekday,
        "hour": local.hour,
        "is_weekend": weekday in _WEEKEND,
        "channel": context.channel,
        "device": context.device,
        "location": _location(location),
    }
    if session is not None:
        values["session_recommendations_shown"] = session.recommendations_shown
        values["session_recommendations_accepted"] = session.recommendations_accepted
        values["session_recommendations_rejected"] = session.recommendations_rejected
        values["session_categories_asked"] = session.categories_asked
    if snapshot is not None:
        metrics = snapshot.metrics
        values.update(_profile_facts(snapshot))
        values["days_since_last_purchase"] = _days_since(metrics.last_purchase_at, now)
        values["days_since_last_seen"] = _days_since(metrics.last_seen_at, now)
    return Facts(**values)


# Snapshot id -> (snapshot, the facts read off it alone). A stored profile is kept across
# a conversation's turns (the store's snapshot cache hands back the same object), so its
# facts are built once per snapshot, not once per turn; the snapshot itself is in the
# entry, so an id reused by a newer object never matches. Bounded: cleared when full.
_PROFILE_FACTS_KEPT: Final = 4_096
_profile_facts_by_snapshot: dict[int, tuple[CustomerSnapshot, dict[str, Any]]] = {}


def _profile_facts(snapshot: CustomerSnapshot) -> dict[str, Any]:
    """The facts that depend on the stored profile only (not on the time)."""
    kept = _profile_facts_by_snapshot.get(id(snapshot))
    if kept is not None and kept[0] is snapshot:
        return kept[1]
    metrics = snapshot.metrics
    demographics = snapshot.demographics
    purchases = metrics.purchase_count
    purchase_7d = metrics.propensity.get(PURCHASE_7D)
    values = {
        "loyalty_tier": (
            snapshot.loyalty_tier if snapshot.loyalty_tier in LOYALTY_TIERS else "none"
        ),
        "tags": tuple(tag.tag for tag in snapshot.tags),
        "is_known_customer": True,
        "is_returning_customer": metrics.interaction_count > 0,
        "interaction_count": metrics.interaction_count,
        "view_count": metrics.view_count,
        "purchase_count": purchases,
        "total_spent": metrics.total_spent,
        "average_order_value": metrics.total_spent / purchases if purchases > 0 else None,
        "discounted_purchase_share": metrics.discounted_purchase_share,
        "favorite_category": metrics.favorite_category,
        "category_affinity": MappingProxyType(dict(metrics.category_affinity)),
        "chat_message_count": metrics.chat_message_count,
        # Read-only, not copied: up to 50 entries, and nobody writes a snapshot.
        "intent_counts": MappingProxyType(metrics.intent_counts),
        "propensity_purchase_7d": purchase_7d.score if purchase_7d is not None else None,
        "age": demographics.age,
        "gender": demographics.gender,
        "country": demographics.country,
        "city": demographics.city,
        "attributes": MappingProxyType(dict(snapshot.attributes)),
    }
    if len(_profile_facts_by_snapshot) >= _PROFILE_FACTS_KEPT:
        _profile_facts_by_snapshot.clear()
    _profile_facts_by_snapshot[id(snapshot)] = (snapshot, values)
    return values


def _location(value: str | None) -> str | None:
    if isinstance(value, str) and 0 < len(value.strip()) <= _MAX_LOCATION:
        return value.strip()
    return None


def _days_since(then: datetime | None, now: datetime) -> float | None:
    if then is None:
        return None
    # Stored times are UTC; an old row without an offset must not crash the hot path.
    if (then.tzinfo is None) != (now.tzinfo is None):
        then, now = _as_utc(then), _as_utc(now)
    # Clock skew between writers can put "last seen" a little in the future.
    return max(0.0, (now - then).total_seconds() / _SECONDS_PER_DAY)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


_TRUE_WORDS: Final = frozenset({"true", "yes", "1"})
_FALSE_WORDS: Final = frozenset({"false", "no", "0"})
_UNKNOWN_WORDS: Final = frozenset({"", "none", "null", "unknown"})


def with_overrides(facts: Facts, overrides: Mapping[str, str]) -> Facts:
    """Facts with some fields replaced by values typed as text (``--context hour=20``).

    For "what if" questions: overriding ``hour`` also sets ``time_of_day``, and ``weekday``
    also sets ``is_weekend``, unless those are overridden too. ``none`` means unknown.

    Raises:
        InvalidInputError: a name is not a field, or a value does not fit its field.
    """
    changes: dict[str, Any] = {}
    entries: dict[str, dict[str, Any]] = {}
    for name, text in overrides.items():
        spec = field_spec(name)
        if spec is None:
            suggestion = closest_field(name)
            hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
            raise InvalidInputError(f"unknown field {name!r}{hint}")
        value = _parse_override(spec, text)
        prefix, dot, key = name.partition(".")
        if dot:
            entries.setdefault(prefix, dict(getattr(facts, prefix)))[key] = value
        else:
            changes[name] = value
    if isinstance(changes.get("hour"), int) and "time_of_day" not in changes:
        # Only the hour matters to time_of_day; the date is arbitrary.
        changes["time_of_day"] = time_of_day(
            datetime(2000, 1, 1, changes["hour"], tzinfo=timezone.utc)
        )
    if "weekday" in changes and "is_weekend" not in changes:
        changes["is_weekend"] = changes["weekday"] in _WEEKEND
    for prefix, mapping in entries.items():
        changes[prefix] = MappingProxyType(mapping)
    return replace(facts, **changes)


def _parse_override(spec: FieldSpec, text: str) -> Any:  # noqa: PLR0911  # one return per kind
    word = text.strip()
    folded = word.casefold()
    if folded in _UNKNOWN_WORDS and spec.kind not in ("category", "bool", "list"):
        return None
    if spec.kind == "category":
        if folded in spec.values:
            return folded
        close = difflib.get_close_matches(folded, spec.values, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidInputError(
            f"{spec.name} cannot be {word!r}{hint}; it is one of {', '.join(spec.values)}"
        )
    if spec.kind == "bool":
        if folded in _TRUE_WORDS | _FALSE_WORDS:
            return folded in _TRUE_WORDS
        raise InvalidInputError(f"{spec.name} needs true or false, got {word!r}")
    if spec.kind == "list":
        return tuple(item.strip() for item in word.split(",") if item.strip())
    if spec.kind == "number":
        number = _number(word)
        if number is None:
            raise InvalidInputError(f"{spec.name} needs a number, got {word!r}")
        if spec.name == "hour" and not (isinstance(number, int) and 0 <= number <= 23):
            raise InvalidInputError(f"hour needs a whole number from 0 to 23, got {word!r}")
        return number
    if spec.kind == "any":
        if folded in _TRUE_WORDS - {"1"} or folded in _FALSE_WORDS - {"0"}:
            return folded in _TRUE_WORDS
        number = _number(word)
        return word if number is None else number
    return word


def _number(word: str) -> int | float | None:
    try:
        return int(word)
    except ValueError:
        pass
    try:
        value = float(word)
    except ValueError:
        return None
    # "nan" and "inf" parse as floats but are no number a rule could sensibly compare.
    return value if math.isfinite(value) else None


def field_names() -> tuple[str, ...]:
    """Every exact field name of :class:`Facts`, in declaration order."""
    return tuple(item.name for item in fields(Facts))
