"""How much each stored interaction counts, for training and serving alike.

Training weighs the store's interactions with :func:`store_confidence`, and a server
recalculating a customer's vector from their newest interactions must weigh them the
same way; so both read it here, and serving needs nothing of the evaluation code.
"""

from __future__ import annotations

from typing import Final

from rasa_personalize.recommend.interactions import ConfidenceWeights

# Confidence per star rating, chosen by tune_on_validation on MovieLens-100k: 1-2 stars
# add nothing, 3 a little, 4-5 most.
TUNED_RATING_WEIGHTS: Final = {1.0: 0.0, 2.0: 0.0, 3.0: 1.0, 4.0: 3.0, 5.0: 5.0}


def store_confidence() -> ConfidenceWeights:
    """Confidence per stored interaction kind: the shop's kinds plus star ratings."""
    shop = ConfidenceWeights.ecommerce()
    return ConfidenceWeights(
        kinds=dict(shop.kinds), values={**shop.values, "rating": TUNED_RATING_WEIGHTS}
    )
