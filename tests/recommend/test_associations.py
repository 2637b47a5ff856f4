"""Products bought together: lift on baskets whose answer is known, the artifact, arrivals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rasa_personalize.demo.generator import COMPLEMENTS, DemoShopConfig, _generate_shop
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.association_artifacts import (
    load_association_artifact,
    save_association_artifact,
)
from rasa_personalize.recommend.associations import ItemAssociations
from rasa_personalize.recommend.errors import ArtifactError, NotFittedError
from rasa_personalize.store.models import INTERACTION_KINDS


def baskets() -> tuple[list[str], list[str]]:
    """Ten customers: all buy shoes; six of them socks with them (and nothing else); the
    other four a tent; two of the tent buyers a stove too. Twenty more buy one book each.

    N = 30 baskets. support: shoes 10, socks 6, tent 4, stove 2, each book 1.
    lift(shoes, socks) = 6 * 30 / (10 * 6) = 3; lift(tent, stove) = 2 * 30 / (4 * 2) = 7.5;
    lift(shoes, tent) = 4 * 30 / (10 * 4) = 3; socks and tent are never bought together.
    """
    customers, items = [], []
    for person in range(10):
        bought = ["shoes", "socks"] if person < 6 else ["shoes", "tent"]
        if person >= 8:
            bought.append("stove")
        for item in bought:
            customers.append(f"c{person}")
            items.append(item)
    for person in range(20):
        customers.append(f"reader{person}")
        items.append(f"book{person}")
    # A repeated purchase in one basket counts once.
    customers.append("c0")
    items.append("socks")
    return customers, items


@pytest.fixture
def model() -> ItemAssociations:
    customers, items = baskets()
    return ItemAssociations(shrink=0.0).fit(customers, items)


def test_lift_of_known_pairs(model: ItemAssociations) -> None:
    """With no shrinkage the score is the lift, worked out by hand in ``baskets``."""
    assert model.baskets_ == 30
    assert model.score("shoes", "socks") == pytest.approx(3.0)
    assert model.score("socks", "shoes") == pytest.approx(3.0)
    assert model.score("tent", "stove") == pytest.approx(7.5)
    assert model.score("shoes", "tent") == pytest.approx(3.0)
    # Never together, bought once, or unknown: no score.
    assert model.score("socks", "tent") == 0.0
    assert model.score("book1", "book2") == 0.0
    assert model.score("shoes", "no-such-sku") == 0.0


def test_rare_pairs_are_dropped_and_shrunk() -> None:
    """Fewer than min_together baskets: no pair; shrinkage lowers the rarer pair most."""
    customers, items = baskets()
    strict = ItemAssociations(min_together=3, shrink=0.0).fit(customers, items)
    assert strict.score("tent", "stove") == 0.0  # only two baskets
    shrunk = ItemAssociations(shrink=3.0).fit(customers, items)
    # tent-stove: 7.5 * 2 / 5 = 3.0; shoes-socks: 3 * 6 / 9 = 2.0.
    assert shrunk.score("tent", "stove") == pytest.approx(3.0)
    assert shrunk.score("shoes", "socks") == pytest.approx(2.0)


def test_partners_and_recommendations(model: ItemAssociations) -> None:
    """Partners best first; recommending never returns an anchor or an excluded item."""
    assert [s.item_id for s in model.partners("tent")] == ["stove", "shoes"]
    assert model.partners("no-such-sku") == []
    # Anchors newest first: the tent counts fully, the shoes half.
    assert [s.item_id for s in model.recommend(["tent", "shoes"], 5)] == ["stove", "socks"]
    assert [s.item_id for s in model.recommend(["tent"], 5, exclude={"stove"})] == ["shoes"]
    assert model.recommend(["book1"], 5) == []
    assert model.recommend([], 5) == []


def test_first_seen_times_are_kept_for_arrivals() -> None:
    """Products only seen (never bought) are kept, with their arrival time."""
    customers, items = baskets()
    model = ItemAssociations().fit(customers, items, first_seen={"shoes": 10.0, "new": 99.0})
    assert model.arrivals() == {"shoes": 10.0, "new": 99.0}
    assert model.partners("new") == []


def test_bad_input_and_unfitted_use_are_refused() -> None:
    """Lengths must match, parameters be positive; an unfitted model says so."""
    with pytest.raises(InvalidInputError, match="same length"):
        ItemAssociations().fit(["a", "b"], ["x"])
    with pytest.raises(InvalidInputError, match="min_together"):
        ItemAssociations(min_together=0).fit(["a"], ["x"])
    with pytest.raises(NotFittedError):
        ItemAssociations().partners("x")


def test_artifact_round_trip(model: ItemAssociations, tmp_path: Path) -> None:
    """What is saved loads back equal, and a damaged payload is refused."""
    saved = save_association_artifact(model, tmp_path / "associations")
    loaded = load_association_artifact(saved.path)
    assert loaded.version == saved.version
    assert loaded.model.item_ids_.ids.tolist() == model.item_ids_.ids.tolist()
    assert (loaded.model.related_ != model.related_).nnz == 0
    assert loaded.model.baskets_ == 30
    assert loaded.model.shrink == 0.0
    np.testing.assert_array_equal(loaded.model.first_seen_, model.first_seen_)
    (saved.path / "associations.npz").write_bytes(b"not an npz")
    with pytest.raises(ArtifactError):
        load_association_artifact(saved.path)


def test_demo_shop_complements_are_bought_together() -> None:
    """The demo generator's complementary types come out of its purchases: road running
    shoes are bought with tights or socks (their complements) more than with any other
    type, running gear included, and far more than by chance."""
    shop = _generate_shop(DemoShopConfig(customers=600, products=150, interactions=15_000))
    events, catalogue = shop.events, shop.catalogue
    bought = (events.kind == INTERACTION_KINDS.index("purchase")) & (events.product >= 0)
    customers = events.customer[bought].astype(str)
    types = catalogue.nouns[events.product[bought]]
    model = ItemAssociations(shrink=0.0).fit(customers, types)
    partners = model.partners("Road Running Shoes")
    assert partners[0].item_id in COMPLEMENTS["Road Running Shoes"]
    assert partners[0].score > 3.0
    assert partners[0].score > model.score("Road Running Shoes", "Running Jacket")
