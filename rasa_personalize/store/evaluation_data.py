"""The store's interactions as rows for offline evaluation (``personalize evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select

from rasa_personalize.store.collector import collector_paused
from rasa_personalize.store.models import Interaction, Product
from rasa_personalize.store.types import Session

# Rows fetched per round trip while streaming: bounded memory on the driver's side.
READ_BATCH: Final = 20_000


@dataclass(frozen=True)
class EvaluationRows:
    """Every interaction that names a product, in insertion order, as parallel lists.

    Attributes:
        customer_ids: the customer's row id per interaction.
        skus: the product's sku per interaction.
        kinds: the interaction kind (view, purchase, rating, ...).
        values: the interaction's value (stars, feedback), None when it has none.
        catalogue_size: products in the store, with or without interactions.
    """

    customer_ids: list[int]
    skus: list[str]
    kinds: list[str]
    values: list[float | None]
    catalogue_size: int

    def __len__(self) -> int:
        return len(self.kinds)


async def read_evaluation_rows(session: Session) -> EvaluationRows:
    """Every interaction with a product, streamed in batches, ordered by ``interactions.id``.

    Insertion order makes a seeded split the same on every run and every backend.
    Interactions without a product (a search) are left out.
    """
    catalogue_size = int(await session.scalar(select(func.count()).select_from(Product)) or 0)
    rows = EvaluationRows([], [], [], [], catalogue_size)
    result = await session.stream(
        select(Interaction.customer_id, Product.sku, Interaction.kind, Interaction.value)
        .join(Product, Product.id == Interaction.product_id)
        .order_by(Interaction.id)
        .execution_options(yield_per=READ_BATCH)
    )
    with collector_paused():
        async for partition in result.partitions():
            for customer_id, sku, kind, value in partition:
                rows.customer_ids.append(customer_id)
                rows.skus.append(sku)
                rows.kinds.append(kind)
                rows.values.append(value)
    return rows
