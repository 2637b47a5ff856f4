"""``personalize import movielens``: MovieLens-100k into the store, as a shop's data.

So the whole pipeline (training, segments, recommendations in conversations,
``personalize evaluate --dataset demo``) can run on real data. What goes where:

- Users become customers. External id ``ml-user-<id>``, stored only as its keyed hash
  (``rasa_personalize.identity.customer_key``), like every other customer; age and gender
  (``male``/``female``) in the customer row; occupation and zip code in the profile's
  attributes. ``created_at`` is the user's first rating.
- Movies become products: sku ``ML-<id>``, the title, category = the first genre in
  lower case (``unknown`` when there is none), all genres and the release year in the
  attributes, price 0, in stock.
- Ratings become interactions of kind ``rating`` with the stars as value, at the
  rating's time, with event id ``ml-<user id>-<movie id>``.
- Then every profile's metrics are rebuilt.

Idempotent: rows whose customer key, sku or event id is already stored are skipped
(``INSERT ... ON CONFLICT DO NOTHING``), so a rerun inserts nothing and an interrupted
import can be run again. Everything happens in the caller's transaction. The data are
read at run time from the cached wheel (``rasa_personalize.recommend.datasets``) and never copied
anywhere but the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final, cast

import numpy as np
from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.identity import customer_key
from rasa_personalize.recommend.datasets import MovieLens100k
from rasa_personalize.store.models import Base, Customer, CustomerProfile, Interaction, Product
from rasa_personalize.store.repository import rebuild_profile_metrics

EXTERNAL_ID_PREFIX: Final = "ml-user-"
SKU_PREFIX: Final = "ML-"
EVENT_PREFIX: Final = "ml-"
SOURCE: Final = "movielens-100k"
INSERT_CHUNK: Final = 5_000
LOOKUP_CHUNK: Final = 5_000
UNKNOWN_CATEGORY: Final = "unknown"
_GENDERS: Final[Mapping[str, str]] = {"M": "male", "F": "female"}

# Called as progress(stage, done, total) while rows are written.
ImportProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ImportCounts:
    """Rows of one kind: read from the dataset, newly inserted, skipped as already stored."""

    read: int
    inserted: int

    @property
    def skipped(self) -> int:
        """Rows that were already in the store."""
        return self.read - self.inserted


@dataclass(frozen=True)
class MovieLensImportReport:
    """What ``import_movielens`` did."""

    customers: ImportCounts
    products: ImportCounts
    interactions: ImportCounts
    profiles: int  # profiles whose metrics were rebuilt (every customer with interactions)


def external_id(user_id: str) -> str:
    """The external id of a MovieLens user, before hashing."""
    return f"{EXTERNAL_ID_PREFIX}{user_id}"


def sku(item_id: str) -> str:
    """The sku of a MovieLens movie."""
    return f"{SKU_PREFIX}{item_id}"


def event_id(user_id: str, item_id: str) -> str:
    """The event id of a rating: one rating per (user, movie) in MovieLens."""
    return f"{EVENT_PREFIX}{user_id}-{item_id}"


async def import_movielens(
    session: AsyncSession,
    data: MovieLens100k,
    *,
    secret_key: str,
    progress: ImportProgress | None = None,
) -> MovieLensImportReport:
    """Insert MovieLens users, movies and ratings that are not stored yet; rebuild profiles.

    Args:
        session: a session inside the caller's transaction; nothing is committed here.
        data: from ``rasa_personalize.recommend.datasets.load_movielens_100k``.
        secret_key: the HMAC key of customer keys.
        progress: told ``(stage, done, total)`` for customers, products, ratings, profiles.

    Raises:
        InvalidInputError: an empty secret, or a rating of a user or movie the dataset
            does not list.
    """
    if not secret_key:
        raise InvalidInputError("MovieLens import: the secret key for customer keys is empty")
    notify: ImportProgress = progress or (lambda _stage, _done, _total: None)
    ratings = data.ratings
    user_ids = data.users.user_ids.tolist()
    item_ids = data.items.item_ids.tolist()
    _check_references(ratings.user_ids.tolist(), user_ids, "user")
    _check_references(ratings.item_ids.tolist(), item_ids, "movie")
    keys = {user: customer_key(secret_key, external_id(user)) for user in user_ids}
    first_rating = _first_rating_times(ratings.user_ids, ratings.timestamps)
    customer_rows = [
        {
            "customer_key": keys[user],
            "created_at": first_rating.get(user, datetime.fromtimestamp(0, timezone.utc)),
            "age": int(age),
            "gender": _GENDERS.get(gender, gender.lower() or None),
            "loyalty_tier": "none",
        }
        for user, age, gender in zip(
            user_ids, data.users.ages.tolist(), data.users.genders.tolist(), strict=True
        )
    ]
    customers = await _insert_new(
        session, Customer, customer_rows, unique_column="customer_key",
        stage="customers", notify=notify,
    )  # fmt: skip
    customer_ids = await _ids_by(session, Customer.customer_key, Customer.id, keys.values())
    profile_rows = [
        {
            "customer_id": customer_ids[keys[user]],
            "attributes": {"occupation": occupation, "zip_code": zip_code, "source": SOURCE},
            "metrics": {},
            "version": 1,
            "updated_at": first_rating.get(user, datetime.fromtimestamp(0, timezone.utc)),
        }
        for user, occupation, zip_code in zip(
            user_ids,
            data.users.occupations.tolist(),
            data.users.zip_codes.tolist(),
            strict=True,
        )
    ]
    # A customer imported earlier keeps its profile (and whatever was learned since).
    await _insert_new(session, CustomerProfile, profile_rows, unique_column="customer_id")

    product_rows = [_product_row(data, position) for position in range(len(item_ids))]
    products = await _insert_new(
        session, Product, product_rows, unique_column="sku", stage="products",
        notify=notify,
    )  # fmt: skip
    product_ids = await _ids_by(session, Product.sku, Product.id, (sku(i) for i in item_ids))

    interaction_rows = [
        {
            "event_id": event_id(user, item),
            "customer_id": customer_ids[keys[user]],
            "product_id": product_ids[sku(item)],
            "kind": "rating",
            "value": float(stars),
            "quantity": 1,
            "price": None,
            "channel": None,
            "device": None,
            "occurred_at": datetime.fromtimestamp(int(stamp), timezone.utc),
        }
        for user, item, stars, stamp in zip(
            ratings.user_ids.tolist(),
            ratings.item_ids.tolist(),
            ratings.ratings.tolist(),
            ratings.timestamps.tolist(),
            strict=True,
        )
    ]
    interactions = await _insert_new(
        session, Interaction, interaction_rows, unique_column="event_id",
        stage="ratings", notify=notify,
    )  # fmt: skip

    notify("profiles", 0, len(user_ids))
    profiles = await rebuild_profile_metrics(session)
    notify("profiles", len(user_ids), len(user_ids))
    return MovieLensImportReport(customers, products, interactions, profiles)


def _product_row(data: MovieLens100k, position: int) -> dict[str, Any]:
    items = data.items
    item_id = str(items.item_ids[position])
    genres = list(items.genres[position])
    year = int(items.release_years[position])
    title = str(items.titles[position])
    # The description feeds content-based similarity (TF-IDF): genres and year say most.
    described = ", ".join(genres) if genres else "no genre"
    return {
        "sku": sku(item_id),
        "title": title[:256],
        "description": f"{described} ({year})" if year else described,
        "category": genres[0].lower() if genres else UNKNOWN_CATEGORY,
        "brand": None,
        "price": 0.0,
        "in_stock": True,
        "attributes": {
            "genres": genres,
            "year": year or None,
            "source": SOURCE,
            "movielens_id": item_id,
        },
    }


def _first_rating_times(
    user_ids: np.typing.NDArray[np.str_], timestamps: np.typing.NDArray[np.int64]
) -> dict[str, datetime]:
    first: dict[str, int] = {}
    for user, stamp in zip(user_ids.tolist(), timestamps.tolist(), strict=True):
        if user not in first or stamp < first[user]:
            first[user] = stamp
    return {user: datetime.fromtimestamp(int(stamp), timezone.utc) for user, stamp in first.items()}


def _check_references(referenced: Iterable[str], known: Sequence[str], what: str) -> None:
    missing = set(referenced) - set(known)
    if missing:
        example = sorted(missing)[0]
        raise InvalidInputError(
            f"MovieLens data: {len(missing)} rated {what} id(s) are not in the {what} "
            f"list, e.g. {example!r}"
        )


async def _insert_new(
    session: AsyncSession,
    model: type[Base],
    rows: list[dict[str, Any]],
    *,
    unique_column: str,
    stage: str | None = None,
    notify: ImportProgress | None = None,
) -> ImportCounts:
    """Insert ``rows`` in chunks, skipping those whose ``unique_column`` is already stored.

    ``ON CONFLICT DO NOTHING`` rather than a read-then-insert: also safe when another
    import runs at the same time. ``RETURNING`` lists only the rows really inserted.
    """
    upsert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # Core insert on the model's table (every mapped model has one): rows go in as they
    # are, without the ORM's per-object bookkeeping.
    table = cast("Table", model.__table__)
    column = table.c[unique_column]
    statement = upsert(table).on_conflict_do_nothing(index_elements=[column]).returning(column)
    report: ImportProgress = (
        notify if notify is not None and stage else (lambda _stage, _done, _total: None)
    )
    inserted = 0
    report(stage or "", 0, len(rows))
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        result = await session.execute(statement, chunk)
        inserted += len(result.all())
        report(stage or "", start + len(chunk), len(rows))
    return ImportCounts(read=len(rows), inserted=inserted)


async def _ids_by(
    session: AsyncSession, key_column: Any, id_column: Any, keys: Iterable[str]
) -> dict[str, int]:
    """Row ids of stored rows by a unique column (customer key, sku), in chunks."""
    wanted = list(keys)
    found: dict[str, int] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        rows = await session.execute(
            select(key_column, id_column).where(
                key_column.in_(wanted[start : start + LOOKUP_CHUNK])
            )
        )
        found.update({str(key): int(row_id) for key, row_id in rows.all()})
    return found
