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
(inserts that ignore stored keys, :mod:`rasa_personalize.store.seeding`), so a rerun
inserts nothing and an interrupted import can be run again. Everything happens in the
caller's transaction. The data are read at run time from the cached wheel
(``rasa_personalize.recommend.datasets``) and never copied anywhere but the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final

import numpy as np

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.identity import customer_key
from rasa_personalize.recommend.datasets import MovieLens100k
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.seeding import (
    ChunkProgress,
    CustomerRow,
    InteractionRow,
    ProductRow,
    ProfileRow,
    customer_ids,
    insert_new_customers,
    insert_new_interactions,
    insert_new_products,
    insert_new_profiles,
    product_ids,
)
from rasa_personalize.store.types import Session

EXTERNAL_ID_PREFIX: Final = "ml-user-"
SKU_PREFIX: Final = "ML-"
EVENT_PREFIX: Final = "ml-"
SOURCE: Final = "movielens-100k"
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
    session: Session,
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
    customer_rows: list[CustomerRow] = [
        {
            "customer_key": keys[user],
            "created_at": first_rating.get(user, datetime.fromtimestamp(0, timezone.utc)),
            "age": int(age),
            "gender": _GENDERS.get(gender, gender.lower() or None),
            "country": None,
            "city": None,
            "loyalty_tier": "none",
            "synthetic_group": None,
        }
        for user, age, gender in zip(
            user_ids, data.users.ages.tolist(), data.users.genders.tolist(), strict=True
        )
    ]
    customers = ImportCounts(
        len(customer_rows),
        await insert_new_customers(session, customer_rows, _stage(notify, "customers")),
    )
    ids_of_customers = await customer_ids(session, keys.values())
    profile_rows: list[ProfileRow] = [
        {
            "customer_id": ids_of_customers[keys[user]],
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
    await insert_new_profiles(session, profile_rows)

    product_rows = [_product_row(data, position) for position in range(len(item_ids))]
    products = ImportCounts(
        len(product_rows),
        await insert_new_products(session, product_rows, _stage(notify, "products")),
    )
    ids_of_products = await product_ids(session, (sku(i) for i in item_ids))

    interaction_rows: list[InteractionRow] = [
        {
            "event_id": event_id(user, item),
            "customer_id": ids_of_customers[keys[user]],
            "product_id": ids_of_products[sku(item)],
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
    interactions = ImportCounts(
        len(interaction_rows),
        await insert_new_interactions(session, interaction_rows, _stage(notify, "ratings")),
    )

    notify("profiles", 0, len(user_ids))
    profiles = await rebuild_profile_metrics(session)
    notify("profiles", len(user_ids), len(user_ids))
    return MovieLensImportReport(customers, products, interactions, profiles)


def _stage(notify: ImportProgress, stage: str) -> ChunkProgress:
    """The store's per-chunk progress, reported as ``stage``."""
    return lambda done, total: notify(stage, done, total)


def _product_row(data: MovieLens100k, position: int) -> ProductRow:
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
