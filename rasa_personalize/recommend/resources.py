"""What recommending needs in memory: the catalogue, content vectors, popularity, types.

Built from the store's rows once per refresh (:func:`build_resources`, CPU work run in a
thread by the service), and read by every request without I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final, Protocol

from rasa_personalize.recommend.content import ContentRecommender, ProductText
from rasa_personalize.recommend.content_artifacts import ContentArtifact
from rasa_personalize.recommend.filters import ItemCatalogue
from rasa_personalize.recommend.popularity import PopularityRecommender
from rasa_personalize.recommend.reranking import SubstituteKey, substitute_key
from rasa_personalize.store.records import ProductRecord

# How much one interaction of each kind adds to an item's popularity.
POPULARITY_WEIGHTS: Final = {
    "purchase": 8.0,
    "cart": 4.0,
    "chat_click": 2.0,
    "view": 1.0,
    "search": 0.5,
    "rating": 1.0,
    "feedback": 0.0,
}


@dataclass(frozen=True)
class Resources:
    """What recommending needs in memory, built from the store once per refresh."""

    catalogue: ItemCatalogue
    products: dict[str, ProductRecord]
    content: ContentRecommender | None
    popularity: PopularityRecommender | None
    built_at: float = field(default_factory=time.monotonic)
    # The content model version the content vectors come from (None: no content model).
    content_version: str | None = None
    # sku -> (category, type): which products substitute each other (reranking).
    types: dict[str, SubstituteKey] = field(default_factory=dict)

    @cached_property
    def categories(self) -> frozenset[str]:
        """The catalogue's categories (computed once per build: read on every request)."""
        return frozenset(p.category for p in self.products.values())

    @cached_property
    def titles(self) -> dict[str, str]:
        """Lowercased title -> sku (the first product of a title): "More like this" names
        a product by its title, and a scan of the catalogue per request would cost more
        than the recommendation."""
        titles: dict[str, str] = {}
        for sku, product in self.products.items():
            titles.setdefault(product.title.lower(), sku)
        return titles

    @cached_property
    def in_stock_by_category(self) -> tuple[tuple[str, int], ...]:
        """(category, products in stock), most first, ties by name; computed once per build."""
        counts = Counter(p.category for p in self.products.values() if p.in_stock)
        return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


class _CatalogueSource(Protocol):
    async def read_recommendation_inputs(
        self,
    ) -> tuple[list[ProductRecord], list[tuple[str, str | None, str, int]]]: ...

    async def read_products(self) -> list[ProductRecord]: ...


async def read_inputs(
    store: _CatalogueSource, content_model: ContentArtifact | None
) -> tuple[list[ProductRecord], Sequence[tuple[str, str | None, str, int]]]:
    """The catalogue and popularity counts for :func:`build_resources`.

    The counts come from the content artifact when training stored them there (one
    read of the products, instead of grouping every interaction in the store: 15 s at
    ten million rows); from the store otherwise (artifacts written before, or none).
    """
    # Reading 800,000 rows from the artifact takes about a second: not on the loop.
    stored = (
        await asyncio.to_thread(content_model.popularity) if content_model is not None else None
    )
    if stored is None:
        return await store.read_recommendation_inputs()
    return await store.read_products(), stored


def build_resources(
    products: Sequence[ProductRecord],
    popularity_rows: Sequence[tuple[str, str | None, str, int]],
    content_model: ContentArtifact | None = None,
) -> Resources:
    """Catalogue, content vectors and popularity from plain rows (CPU work: run in a thread).

    The content model is the trained one, carried over to the current catalogue: products
    new or changed since training are vectorised with its vocabulary (numpy only).
    """
    catalogue = ItemCatalogue.build(
        [p.sku for p in products],
        [p.category for p in products],
        [p.price for p in products],
        [p.in_stock for p in products],
    )
    content = (
        content_model.model.for_catalogue(
            [
                ProductText(p.sku, p.title, p.description, p.category, p.brand or "")
                for p in products
            ]
        )
        if products and content_model is not None
        else None
    )
    weighted = [
        (sku, segment or "", POPULARITY_WEIGHTS.get(kind, 0.0) * count)
        for sku, segment, kind, count in popularity_rows
    ]
    weighted = [row for row in weighted if row[2] > 0]
    popularity = (
        PopularityRecommender().fit(
            [row[0] for row in weighted],
            [row[2] for row in weighted],
            [row[1] for row in weighted],
        )
        if weighted
        else None
    )
    resources = Resources(
        catalogue,
        {p.sku: p for p in products},
        content,
        popularity,
        content_version=content_model.version if content is not None and content_model else None,
        types={p.sku: substitute_key(p) for p in products},
    )
    _ = resources.titles  # indexed here, in the build's thread, not on a request
    return resources
