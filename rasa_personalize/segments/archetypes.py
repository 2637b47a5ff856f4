"""The built-in archetype rule: a customer's segment from profile metrics alone.

It answers until a clustering model has stored an assignment for the customer, and it is
the rule the demo data was generated to exercise. In order, first match wins:

1. no interactions at all                                  -> ``new_visitor``
2. no purchase yet                                         -> ``browser``
3. last purchase more than ``AT_RISK_AFTER`` ago           -> ``at_risk``
4. gold/platinum tier and >= ``LOYAL_MIN_PURCHASES``       -> ``loyal``
5. >= ``PRICE_SENSITIVE_SHARE`` of purchases discounted    -> ``price_sensitive``
6. >= ``FREQUENT_MIN_PURCHASES`` purchases                 -> ``frequent_buyer``
7. otherwise (a purchase or two among many views)          -> ``browser``
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from rasa_personalize.store.records import ProfileMetrics

AT_RISK_AFTER: Final = timedelta(days=90)
LOYAL_MIN_PURCHASES: Final = 5
PRICE_SENSITIVE_SHARE: Final = 0.5
FREQUENT_MIN_PURCHASES: Final = 4
PREMIUM_TIERS: Final = frozenset({"gold", "platinum"})


def archetype_for(  # noqa: PLR0911  # one return per documented rule reads best
    metrics: ProfileMetrics, loyalty_tier: str, now: datetime
) -> str:
    """The archetype segment the rule above gives for these metrics."""
    if metrics.interaction_count == 0:
        return "new_visitor"
    if metrics.purchase_count == 0 or metrics.last_purchase_at is None:
        return "browser"
    if now - metrics.last_purchase_at > AT_RISK_AFTER:
        return "at_risk"
    if loyalty_tier in PREMIUM_TIERS and metrics.purchase_count >= LOYAL_MIN_PURCHASES:
        return "loyal"
    if metrics.discounted_purchase_share >= PRICE_SENSITIVE_SHARE:
        return "price_sensitive"
    if metrics.purchase_count >= FREQUENT_MIN_PURCHASES:
        return "frequent_buyer"
    return "browser"
