"""Tiny data whose right answers are known, shared by the recommend tests."""

from __future__ import annotations

import numpy as np
import pytest

from rasa_personalize.recommend.als import AlsRecommender
from rasa_personalize.recommend.evaluation import EvaluationData
from rasa_personalize.recommend.filters import ItemCatalogue
from rasa_personalize.recommend.interactions import InteractionData

BLOCK_SIZE = 10
# Each user leaves out these positions of their block, so there is something to recommend.
HELD_OUT = 3


def block_users(block: str) -> list[str]:
    return [f"{block}-user-{i:02d}" for i in range(BLOCK_SIZE)]


def block_items(block: str) -> list[str]:
    return [f"{block}-sku-{i:02d}" for i in range(BLOCK_SIZE)]


def checkerboard() -> InteractionData:
    """Two blocks: users of block A touch only A items, users of block B only B items.

    User i of a block skips items i, i+1, i+2 (mod 10) of its block, so every user has
    seven items and three block items left to discover.
    """
    users, items, weights = [], [], []
    for block in ("A", "B"):
        for position, user in enumerate(block_users(block)):
            skipped = {(position + offset) % BLOCK_SIZE for offset in range(HELD_OUT)}
            for index, item in enumerate(block_items(block)):
                if index not in skipped:
                    users.append(user)
                    items.append(item)
                    weights.append(1.0 + (index % 3))
    return InteractionData.from_pairs(users, items, weights)


def seen_items(data: InteractionData, user: str) -> frozenset[str]:
    return frozenset(data.item_ids[data.user_ids == user].tolist())


@pytest.fixture(scope="session")
def checkerboard_data() -> InteractionData:
    return checkerboard()


@pytest.fixture(scope="session")
def checkerboard_model(checkerboard_data: InteractionData) -> AlsRecommender:
    return AlsRecommender(
        factors=2, regularization=0.1, iterations=20, random_state=0, num_threads=1
    ).fit(checkerboard_data)


@pytest.fixture(scope="session")
def checkerboard_catalogue() -> ItemCatalogue:
    """Both blocks' items: odd positions out of stock, prices 10..100, categories by block."""
    ids = block_items("A") + block_items("B") + ["C-sku-only-in-catalogue"]
    categories = ["block-a"] * BLOCK_SIZE + ["block-b"] * BLOCK_SIZE + ["block-c"]
    prices = [10.0 * (i % BLOCK_SIZE + 1) for i in range(2 * BLOCK_SIZE)] + [5.0]
    in_stock = [i % 2 == 0 for i in range(2 * BLOCK_SIZE)] + [True]
    return ItemCatalogue.build(ids, categories, prices, np.array(in_stock))


def block_ratings() -> EvaluationData:
    """Two blocks of 10 users x 10 items, every pair rated; block items rate 5, others 1."""
    users, items, ratings = [], [], []
    for block, other in (("A", "B"), ("B", "A")):
        for user in block_users(block):
            for item in block_items(block):
                users.append(user)
                items.append(item)
                ratings.append(5.0)
            for item in block_items(other)[:3]:
                users.append(user)
                items.append(item)
                ratings.append(1.0)
    return EvaluationData.from_events(
        users,
        items,
        ["rating"] * len(users),
        ratings,
        np.asarray(ratings) >= 4,
        catalogue_size=20,
    )
