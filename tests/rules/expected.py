"""The offer each segment got before decision rules existed: the built-in rules keep it."""

from __future__ import annotations

from typing import Final

SEGMENT_OFFERS: Final[dict[str, tuple[str, float]]] = {
    "new_visitor": ("none", 0.0),
    "browser": ("free_shipping", 0.0),
    "frequent_buyer": ("bundle", 0.0),
    "price_sensitive": ("discount", 15.0),
    "at_risk": ("discount", 10.0),
    "loyal": ("exclusive_access", 0.0),
}
