"""The synthetic shop at scale: generated and written a chunk of customers at a time.

A million customers do not fit the small shop's way (:mod:`rasa_personalize.demo.generator`):
a Python object per customer and per event, and a product distribution per customer.
Here:

- the catalogue and each customer's behaviour group come from the same seeded generator
  as in the small shop: the same products, the same group for ``customer-00042``;
- everything else is drawn per customer from addressed draws
  (:class:`~rasa_personalize.demo.draws.Draws`), vectorised over a chunk, so the shop is
  the same for any chunk size and memory holds a few numbers per customer plus one
  chunk's events;
- a product is drawn in two steps, the customer's category and then a product of that
  category by the group's price bias: the small shop's distribution exactly;
- each chunk is written as soon as it is drawn (``COPY`` on PostgreSQL, through
  :func:`rasa_personalize.store.seeding.load_records`), with ids reserved up front.

Each group behaves as in the small shop (``_BEHAVIOURS``, the named customers' personas,
complementary purchases, the last week's purchases, the tags). One difference: with
fewer interactions than full purchase funnels need (about 13 per customer at the default
mix), a purchase keeps its product view, and a carted purchase its cart event, only with
one probability for everyone (``SeedReport.funnel_share``), chosen so that a tenth of
the interactions remain browsing. Purchases, and so every group, stay as drawn.

Every customer's plan comes from :mod:`~rasa_personalize.demo.chunk_plans`, a chunk's
events from :mod:`~rasa_personalize.demo.chunk_events`; this module writes them.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.demo.chunk_events import Chunk, ChunkDrawer
from rasa_personalize.demo.chunk_plans import (
    GROUPS,
    TIERS,
    GroupTable,
    Planner,
    Plans,
)
from rasa_personalize.demo.draws import Draws
from rasa_personalize.demo.generator import (
    _CHANNELS,
    _COUNTRIES,
    _DAY,
    _DEVICES,
    _GENDERS,
    _PREMIUM_SHARE,
    TAG_SOURCE,
    DemoShopConfig,
    ProgressCallback,
    SeedReport,
    _build_catalogue,
    external_id,
    group_codes,
)
from rasa_personalize.identity import customer_key
from rasa_personalize.store.models import INTERACTION_KINDS
from rasa_personalize.store.seeding import (
    bulk_insert_products,
    load_records,
    product_ids,
    refresh_statistics,
    reserve_ids,
)
from rasa_personalize.store.types import Session

logger = logging.getLogger(__name__)

_CUSTOMER_COLUMNS: Final = (
    "id", "customer_key", "created_at", "age", "gender", "country", "city",
    "loyalty_tier", "synthetic_group", "synthetic_purchase_probability",
)  # fmt: skip
_INTERACTION_COLUMNS: Final = (
    "event_id", "customer_id", "product_id", "kind", "value", "quantity", "price",
    "channel", "device", "occurred_at",
)  # fmt: skip
_TAG_COLUMNS: Final = ("customer_id", "tag", "source", "weight", "updated_at")


def _nullable(values: NDArray[np.float64]) -> list[float | None]:
    """Floats with NaN as None (SQL NULL)."""
    boxed = values.astype(object)
    boxed[np.isnan(values)] = None
    result: list[float | None] = boxed.tolist()
    return result


async def seed_in_chunks(
    session: Session,
    config: DemoShopConfig,
    *,
    chunk: int,
    secret_key: str,
    now: datetime,
    notify: ProgressCallback,
) -> SeedReport:
    """Generate and write the shop ``chunk`` customers at a time (see the module
    docstring); the caller has checked the config, ``now`` and that the store is empty.

    Raises:
        InvalidInputError: too few interactions for the customers' behaviour groups
            (before anything is written).
    """
    rng = np.random.default_rng(config.seed)
    catalogue = _build_catalogue(rng, config.products)
    groups = group_codes(rng, config.customers)
    draws = Draws(config.seed)
    table = GroupTable.build()
    plans = Planner(draws, table, catalogue, groups).plan(config.interactions)
    drawer = ChunkDrawer(draws, plans, table, catalogue, config.days * _DAY)

    await bulk_insert_products(
        session, catalogue.rows, lambda done, total: notify("products", done, total)
    )
    # The store was empty: every stored product is one of ours.
    ids_by_sku = await product_ids(session)
    product_id = np.array([ids_by_sku[row["sku"]] for row in catalogue.rows], dtype=np.int64)
    first_id = await reserve_ids(session, "customers", config.customers)

    n = config.customers
    spend = np.zeros(n)
    written = tags = 0
    expected = config.interactions
    notify("customers", 0, n)
    notify("interactions", 0, expected)
    for start in range(0, n, chunk):
        drawn = drawer.draw(start, min(n, start + chunk))
        spend[start : start + len(drawn.spend)] = drawn.spend
        await load_records(
            session,
            "customers",
            _CUSTOMER_COLUMNS,
            _customer_records(drawn, plans, first_id, secret_key, now),
        )
        notify("customers", start + len(drawn.spend), n)
        records = _interaction_records(drawn, config.seed, first_id, product_id, now)
        await load_records(session, "interactions", _INTERACTION_COLUMNS, records)
        written += len(records)
        notify("interactions", written, max(expected, written))
        customer, category, weight = drawn.interest
        interest = [
            (first_id + start + c, f"interested_in_{catalogue.categories[k]}", TAG_SOURCE, w, now)
            for c, k, w in zip(customer.tolist(), category.tolist(), weight.tolist(), strict=True)
        ]
        await load_records(session, "customer_tags", _TAG_COLUMNS, interest)
        tags += len(interest)
        notify("tags", tags, tags)
    notify("interactions", written, written)
    # Top 10 % of all customers by spend, ties to the earlier customer; never a non-buyer.
    ranked = np.lexsort((np.arange(n), -spend))[: math.ceil(n * _PREMIUM_SHARE)]
    premium = [
        (first_id + int(c), "premium", TAG_SOURCE, 1.0, now)
        for c in ranked.tolist()
        if spend[c] > 0
    ]
    await load_records(session, "customer_tags", _TAG_COLUMNS, premium)
    tags += len(premium)
    notify("tags", tags, tags)
    await refresh_statistics(session)
    counts = np.bincount(groups, minlength=len(GROUPS))
    report = SeedReport(
        customers=n,
        products=len(catalogue.rows),
        interactions=written,
        tags=tags,
        groups={name: int(counts[i]) for i, name in enumerate(GROUPS)},
        funnel_share=plans.funnel_share,
    )
    logger.info(
        "seeded demo shop in chunks of %d: %d customers, %d products, %d interactions, "
        "%d tags, funnel share %.2f",
        chunk, report.customers, report.products, report.interactions, report.tags,
        report.funnel_share,
    )  # fmt: skip
    return report


def _customer_records(
    drawn: Chunk, plans: Plans, first_id: int, secret_key: str, now: datetime
) -> list[tuple[Any, ...]]:
    start, n = drawn.start, len(drawn.spend)
    countries = list(_COUNTRIES)
    cities = [city for _, names in _COUNTRIES.values() for city in names]
    city_offset = np.cumsum([0] + [len(names) for _, names in _COUNTRIES.values()])[:-1]
    index = range(start, start + n)
    return list(
        zip(
            range(first_id + start, first_id + start + n),
            [customer_key(secret_key, external_id(i)) for i in index],
            [now - timedelta(seconds=s) for s in drawn.signed_up.tolist()],
            drawn.age.tolist(),
            np.array(_GENDERS, dtype=object)[drawn.gender].tolist(),
            np.array(countries, dtype=object)[drawn.country].tolist(),
            np.array(cities, dtype=object)[city_offset[drawn.country] + drawn.city].tolist(),
            np.array(TIERS, dtype=object)[plans.tier[start : start + n]].tolist(),
            np.array(GROUPS, dtype=object)[plans.group[start : start + n]].tolist(),
            np.round(drawn.probability, 6).tolist(),
            strict=True,
        )
    )


def _interaction_records(
    drawn: Chunk, seed: int, first_id: int, product_id: NDArray[np.int64], now: datetime
) -> list[tuple[Any, ...]]:
    """The chunk's interactions, written oldest first; event ids name the customer and
    the event's place in their history, so they do not depend on the chunking."""
    events = drawn.events
    order = np.lexsort((drawn.position, events.customer, -events.age))
    customer = events.customer[order] + drawn.start
    position = drawn.position[order]
    product = events.product[order]
    products: list[int | None] = product_id[np.maximum(product, 0)].tolist()
    for missing in np.flatnonzero(product < 0).tolist():
        products[missing] = None
    return list(
        zip(
            [
                f"seed-{seed}-{c + 1:07d}-{k + 1:04d}"
                for c, k in zip(customer.tolist(), position.tolist(), strict=True)
            ],
            (customer + first_id).tolist(),
            products,
            np.array(INTERACTION_KINDS, dtype=object)[events.kind[order]].tolist(),
            _nullable(events.value[order]),
            events.quantity[order].tolist(),
            _nullable(events.price[order]),
            np.array(_CHANNELS, dtype=object)[drawn.channel[order]].tolist(),
            np.array(_DEVICES, dtype=object)[drawn.device[order]].tolist(),
            [now - timedelta(seconds=s) for s in events.age[order].tolist()],
            strict=True,
        )
    )
