"""The slot contract: names, types and value sets the plugin may set in the Rasa domain.

These names are the plugin's public API. The demo ``domain.yml`` declares every one of them
and a test checks that the declarations match what is here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

SlotType = Literal["categorical", "bool", "list", "text", "float"]

CUSTOMER_SEGMENTS: Final = (
    "new_visitor",
    "frequent_buyer",
    "price_sensitive",
    "loyal",
    "at_risk",
    "browser",
)
LOYALTY_TIERS: Final = ("none", "silver", "gold", "platinum")
OFFER_TYPES: Final = ("discount", "free_shipping", "exclusive_access", "bundle", "none")
RECOMMENDATION_SOURCES: Final = (
    "als",
    "session",
    "content",
    "segment_popular",
    "popular",
    "bought_together",
)
TIMES_OF_DAY: Final = ("morning", "afternoon", "evening", "night")
# "unknown": the customer never answered (PERSONALIZE_CONSENT_DEFAULT decided for them).
CONSENT_VALUES: Final = ("granted", "denied", "unknown")
# The band of the calibrated 7-day purchase propensity (``personalize propensity train``);
# "unknown": no score, or no consent to use the profile.
PURCHASE_PROPENSITIES: Final = ("low", "medium", "high", "unknown")


@dataclass(frozen=True)
class SlotSpec:
    """How one contract slot is declared in the domain."""

    name: str
    type: SlotType
    values: tuple[str, ...] = ()
    influences_conversation: bool = False


SLOT_CONTRACT: Final[Mapping[str, SlotSpec]] = {
    spec.name: spec
    for spec in (
        # Only slots meant for stories and rules to branch on influence the policy; the
        # others pick wording (conditional response variations work whatever this flag
        # says), and each featurized slot multiplies the states a policy must learn.
        SlotSpec("customer_segment", "categorical", CUSTOMER_SEGMENTS, True),
        SlotSpec("loyalty_tier", "categorical", LOYALTY_TIERS),
        SlotSpec("is_returning_customer", "bool"),
        SlotSpec("user_tags", "list"),
        SlotSpec("favorite_category", "text"),
        SlotSpec("offer_type", "categorical", OFFER_TYPES),
        SlotSpec("discount_pct", "float"),
        SlotSpec("recommended_products", "list"),
        SlotSpec("recommendation_text", "text"),
        SlotSpec("recommendation_reason", "text"),
        SlotSpec("recommendation_source", "categorical", RECOMMENDATION_SOURCES),
        SlotSpec("time_of_day", "categorical", TIMES_OF_DAY),
        SlotSpec("personalization_consent", "categorical", CONSENT_VALUES, True),
        SlotSpec("data_summary", "text"),
        # The arm's wording in a running experiment (personalization.yml), else unset.
        SlotSpec("response_variant", "text"),
        SlotSpec("purchase_propensity", "categorical", PURCHASE_PROPENSITIES, True),
    )
}

# The slots that the session-start and refresh actions own: they always set all of them,
# so a conversation never keeps a stale value from an earlier customer or session.
PROFILE_SLOTS: Final = (
    "customer_segment",
    "loyalty_tier",
    "is_returning_customer",
    "user_tags",
    "favorite_category",
    "offer_type",
    "discount_pct",
    "time_of_day",
    "personalization_consent",
    "response_variant",
    "purchase_propensity",
)


class SlotContractError(ValueError):
    """A value outside the slot contract: a bug in the engine, never user input."""


@dataclass(frozen=True)
class SlotPlan:
    """What the engine decided: contract slot name -> value, validated on construction."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in self.values.items():
            check_slot_value(name, value)

    @classmethod
    def of_checked(cls, values: Mapping[str, Any]) -> SlotPlan:
        """A plan of values known to be in the contract (constants), without re-checking.

        For the engine's defaults, built on every turn; tests check them against the
        contract once.
        """
        plan = object.__new__(cls)
        object.__setattr__(plan, "values", dict(values))
        return plan

    def merged(self, **updates: Any) -> SlotPlan:
        """A new plan with ``updates`` on top of this one (only the updates are checked)."""
        for name, value in updates.items():
            check_slot_value(name, value)
        plan = object.__new__(SlotPlan)
        # This plan's own values were checked when it was made: skip __post_init__.
        object.__setattr__(plan, "values", {**self.values, **updates})
        return plan

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


_VALUE_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "text": lambda v: isinstance(v, str),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def _one_of(values: tuple[str, ...]) -> Callable[[Any], bool]:
    allowed = frozenset(values)

    def check(value: Any) -> bool:
        # A set lookup for a plain string; the tuple's equality scan for anything else.
        return value in allowed if type(value) is str else value in values

    return check


# One check per slot, chosen once: every answer checks a dozen values.
_SLOT_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    name: _VALUE_CHECKS.get(spec.type) or _one_of(spec.values)
    for name, spec in SLOT_CONTRACT.items()
}


def check_slot_value(name: str, value: Any) -> None:
    """Raise SlotContractError unless ``value`` may be set in slot ``name``."""
    check = _SLOT_CHECKS.get(name)
    if check is None:
        raise SlotContractError(f"{name!r} is not a contract slot")
    if value is None or check(value):
        return
    spec = SLOT_CONTRACT[name]
    raise SlotContractError(f"slot {name!r} ({spec.type}) cannot hold {value!r}")
