"""Naming clusters after the contract archetypes: prototypes, matching, fall-backs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rasa_personalize.segments.naming import (
    NAMING_FEATURES,
    PROTOTYPES,
    archetype_scores,
    name_clusters,
)
from rasa_personalize.slots import CUSTOMER_SEGMENTS


def profile(
    recency: float, frequency: float, sessions: float, discount: float, tier: float
) -> dict[str, float]:
    """A cluster profile in original units."""
    return {
        "recency_days": recency,
        "frequency": frequency,
        "sessions": sessions,
        "discount_share": discount,
        "loyalty_tier": tier,
    }


# Typical centroids of the demo shop's groups (means over members, original units).
TYPICAL = {
    "new_visitor": profile(365, 0, 0, 0, 0),
    "browser": profile(300, 0.4, 16, 0, 0.2),
    "at_risk": profile(123, 2.6, 11, 0.4, 1.2),
    "loyal": profile(8, 10.8, 36, 0.05, 2.3),
    "price_sensitive": profile(16, 6.0, 26, 0.83, 0.2),
    "frequent_buyer": profile(11, 6.9, 27, 0.13, 0.6),
}


def test_there_is_one_prototype_per_contract_segment() -> None:
    """Every contract segment can be named, and nothing else."""
    assert set(PROTOTYPES) == set(CUSTOMER_SEGMENTS)


@pytest.mark.parametrize("segment", sorted(TYPICAL))
def test_a_typical_centroid_scores_highest_for_its_archetype(segment: str) -> None:
    """Each group's typical centroid fits its own archetype fully and better than others."""
    scores = archetype_scores(TYPICAL[segment])
    assert scores[segment] == 1.0
    assert max(scores, key=lambda name: scores[name]) == segment


def test_six_typical_clusters_get_six_different_archetypes() -> None:
    """The matching names each typical cluster after its own group, in any order."""
    order = ["loyal", "browser", "at_risk", "new_visitor", "frequent_buyer", "price_sensitive"]
    assert name_clusters([TYPICAL[s] for s in order]) == order


def test_matching_tells_two_similar_buyer_clusters_apart() -> None:
    """Two buying clusters that both half-fit price_sensitive: the more discounted one gets it."""
    mild = profile(12, 6, 25, 0.42, 0.3)  # price_sensitive 0.6, frequent_buyer 0.4
    strong = profile(12, 6, 25, 0.45, 0.3)  # price_sensitive 0.75, frequent_buyer 0.25
    assert archetype_scores(mild)["price_sensitive"] > archetype_scores(mild)["frequent_buyer"]
    # Best-score alone would call both price_sensitive; the matching keeps one each only
    # when the pairing still fits (>= MIN_FIT), otherwise the better archetype wins.
    assert name_clusters([mild, strong]) == ["price_sensitive", "price_sensitive"]
    frequent = profile(12, 6, 25, 0.1, 0.3)
    assert name_clusters([strong, frequent]) == ["price_sensitive", "frequent_buyer"]


def test_more_clusters_than_archetypes_share_archetypes() -> None:
    """Eight clusters: two browser-like and two at-risk-like ones share those names."""
    clusters = [*TYPICAL.values(), profile(250, 0.6, 14, 0, 0), profile(130, 3, 10, 0.2, 0)]
    names = name_clusters(clusters)
    assert names[:6] == list(TYPICAL)
    assert names[6:] == ["browser", "at_risk"]


def test_a_cluster_that_fits_nothing_is_browser() -> None:
    """Two purchases recently, no discount, regular tier: the archetype rule's fall-through."""
    odd = profile(20, 2.6, 0.0, 0.1, 0)  # buys without sessions: no prototype fits
    assert max(archetype_scores(odd).values()) == 0.0
    assert name_clusters([odd]) == ["browser"]


def test_missing_profile_values_fail_their_conditions() -> None:
    """A profile without the naming columns still gets a contract name, never an error."""
    assert name_clusters([{}]) == ["browser"]
    assert set(archetype_scores({"sessions": math.nan}).values()) == {0.0}


finite_or_not = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=400),
)


@given(st.lists(st.fixed_dictionaries(dict.fromkeys(NAMING_FEATURES, finite_or_not)), max_size=12))
def test_naming_is_total_and_yields_contract_segments(profiles: list[dict[str, float]]) -> None:
    """Any profiles (NaN, infinities, negatives) get one contract segment each; scores in [0, 1]."""
    names = name_clusters(profiles)
    assert len(names) == len(profiles)
    assert set(names) <= set(CUSTOMER_SEGMENTS)
    for item in profiles:
        assert all(0.0 <= score <= 1.0 for score in archetype_scores(item).values())
