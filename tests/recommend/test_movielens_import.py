"""`import_movielens` on a small MovieLens-shaped dataset built here (no download).

The real dataset is only read at run time from the recbole wheel; these tests build the
same structures by hand, so they run offline and the right answers are known.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.identity import customer_key
from rasa_personalize.recommend.datasets import Items, MovieLens100k, Ratings, Users
from rasa_personalize.recommend.demo_data import load_store_events
from rasa_personalize.recommend.movielens_import import event_id, external_id, import_movielens, sku
from rasa_personalize.store.models import Customer, CustomerProfile, Interaction, Product
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET

FIRST_TIMESTAMP = 880_000_000
# Two tastes: users 1-6 like comedies (movies 1-5), users 7-12 action (movies 6-9);
# each rates one movie of the other taste low. Movie 10 has no genre and no year.
COMEDY_FANS = [str(user) for user in range(1, 7)]
ACTION_FANS = [str(user) for user in range(7, 13)]
COMEDIES = [str(item) for item in range(1, 6)]
ACTION_MOVIES = [str(item) for item in range(6, 10)]


def fake_movielens(users: list[str] | None = None) -> MovieLens100k:
    """A tiny MovieLens-100k look-alike; ``users`` keeps only those users' ratings."""
    user_ids = COMEDY_FANS + ACTION_FANS
    item_ids = [*COMEDIES, *ACTION_MOVIES, "10"]
    genres: list[tuple[str, ...]] = [("Comedy", "Romance")] * 5 + [("Action", "Thriller")] * 4
    genres.append(())
    rating_users, rating_items, stars = [], [], []
    for position, user in enumerate(user_ids):
        liked, other = (
            (COMEDIES, ACTION_MOVIES) if user in COMEDY_FANS else (ACTION_MOVIES, COMEDIES)
        )
        for index, item in enumerate(liked):
            if index != position % len(liked):  # leave one liked movie to discover
                rating_users.append(user)
                rating_items.append(item)
                stars.append(5.0 if index % 2 == 0 else 4.0)
        rating_users.append(user)
        rating_items.append(other[0])
        stars.append(2.0 if user in COMEDY_FANS else 1.0)
    keep = np.asarray([users is None or user in users for user in rating_users])
    numbers = [int(user) for user in user_ids]
    return MovieLens100k(
        ratings=Ratings(
            user_ids=np.asarray(rating_users)[keep],
            item_ids=np.asarray(rating_items)[keep],
            ratings=np.asarray(stars)[keep],
            timestamps=FIRST_TIMESTAMP + 3_600 * np.arange(int(keep.sum()), dtype=np.int64),
        ),
        users=Users(
            user_ids=np.asarray(user_ids),
            ages=np.asarray([20 + number for number in numbers], dtype=np.int64),
            genders=np.asarray(["M" if number % 2 else "F" for number in numbers]),
            occupations=np.asarray(["engineer" if number < 7 else "artist" for number in numbers]),
            zip_codes=np.asarray([f"{10000 + number}" for number in numbers]),
        ),
        items=Items(
            item_ids=np.asarray(item_ids),
            titles=np.asarray([f"Movie {item}" for item in item_ids]),
            release_years=np.asarray([1990 + int(item) for item in item_ids[:-1]] + [0]),
            genres=tuple(genres),
        ),
    )


async def _count(store: SqlStore, model: type[object]) -> int:
    async with store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _profile_versions(session: AsyncSession) -> dict[int, int]:
    rows = await session.execute(select(CustomerProfile.customer_id, CustomerProfile.version))
    return {int(customer_id): int(version) for customer_id, version in rows.all()}


async def test_import_maps_users_movies_and_ratings(store: SqlStore) -> None:
    """Customers, products and rating interactions hold the documented values (both backends)."""
    data = fake_movielens()
    async with store.sessions.begin() as session:
        report = await import_movielens(session, data, secret_key=TEST_SECRET)

    ratings = len(data.ratings)
    customers = report.customers
    assert (customers.read, customers.inserted, customers.skipped) == (12, 12, 0)
    assert (report.products.read, report.products.inserted) == (10, 10)
    assert (report.interactions.read, report.interactions.inserted) == (ratings, ratings)
    assert report.profiles == 12

    async with store.sessions() as session:
        key = customer_key(TEST_SECRET, "ml-user-1")
        customer = (
            await session.scalars(select(Customer).where(Customer.customer_key == key))
        ).one()
        assert (customer.age, customer.gender, customer.loyalty_tier) == (21, "male", "none")
        assert customer.created_at == datetime.fromtimestamp(FIRST_TIMESTAMP, timezone.utc)
        profile = await session.get(CustomerProfile, customer.id)
        assert profile is not None
        assert profile.attributes["occupation"] == "engineer"
        assert profile.attributes["zip_code"] == "10001"
        assert profile.metrics["interaction_count"] == 5  # four comedies, one action movie

        comedy = (await session.scalars(select(Product).where(Product.sku == "ML-1"))).one()
        assert comedy.title == "Movie 1"
        assert comedy.category == "comedy"
        assert comedy.attributes["genres"] == ["Comedy", "Romance"]
        assert comedy.attributes["year"] == 1991
        assert (comedy.price, comedy.in_stock) == (0.0, True)
        no_genre = (await session.scalars(select(Product).where(Product.sku == "ML-10"))).one()
        assert no_genre.category == "unknown"
        assert no_genre.attributes["year"] is None

        kinds = set((await session.scalars(select(Interaction.kind))).all())
        assert kinds == {"rating"}
        values = sorted(set((await session.scalars(select(Interaction.value))).all()))
        assert values == [1.0, 2.0, 4.0, 5.0]
        first = (
            await session.scalars(select(Interaction).where(Interaction.event_id == "ml-1-2"))
        ).one()
        assert first.customer_id == customer.id
        assert first.value == 4.0
        assert first.occurred_at == datetime.fromtimestamp(FIRST_TIMESTAMP, timezone.utc)


async def test_rerun_changes_nothing(store: SqlStore) -> None:
    """A second import inserts nothing, skips everything and bumps no profile version."""
    data = fake_movielens()
    async with store.sessions.begin() as session:
        await import_movielens(session, data, secret_key=TEST_SECRET)
    async with store.sessions() as session:
        versions = await _profile_versions(session)

    async with store.sessions.begin() as session:
        again = await import_movielens(session, data, secret_key=TEST_SECRET)

    assert (again.customers.inserted, again.customers.skipped) == (0, 12)
    assert (again.products.inserted, again.products.skipped) == (0, 10)
    assert (again.interactions.inserted, again.interactions.skipped) == (0, len(data.ratings))
    assert await _count(store, Customer) == 12
    assert await _count(store, Product) == 10
    assert await _count(store, Interaction) == len(data.ratings)
    async with store.sessions() as session:
        after = await _profile_versions(session)
    assert after == versions


async def test_import_after_a_partial_import_adds_only_the_rest(sqlite_store: SqlStore) -> None:
    """Rows stored by an earlier (partial) import are skipped, the others inserted."""
    partial = fake_movielens(users=["1", "2"])
    async with sqlite_store.sessions.begin() as session:
        first = await import_movielens(session, partial, secret_key=TEST_SECRET)
    full = fake_movielens()
    async with sqlite_store.sessions.begin() as session:
        second = await import_movielens(session, full, secret_key=TEST_SECRET)

    # The user and movie lists are complete in both; only the ratings differ.
    assert first.customers.inserted == 12
    assert second.customers.inserted == 0
    assert second.interactions.skipped == len(partial.ratings)
    assert second.interactions.inserted == len(full.ratings) - len(partial.ratings)
    assert await _count(sqlite_store, Interaction) == len(full.ratings)


async def test_rating_of_an_unlisted_user_is_refused(sqlite_store: SqlStore) -> None:
    """Inconsistent data fail before anything is written."""
    data = fake_movielens()
    broken = MovieLens100k(
        ratings=Ratings(
            user_ids=np.asarray([*data.ratings.user_ids.tolist()[:-1], "999"]),
            item_ids=data.ratings.item_ids,
            ratings=data.ratings.ratings,
            timestamps=data.ratings.timestamps,
        ),
        users=data.users,
        items=data.items,
    )
    with pytest.raises(InvalidInputError, match="'999'"):
        async with sqlite_store.sessions.begin() as session:
            await import_movielens(session, broken, secret_key=TEST_SECRET)
    assert await _count(sqlite_store, Customer) == 0


async def test_empty_secret_is_refused(sqlite_store: SqlStore) -> None:
    """Customer keys need the HMAC secret."""
    with pytest.raises(InvalidInputError, match="secret"):
        async with sqlite_store.sessions.begin() as session:
            await import_movielens(session, fake_movielens(), secret_key="")


async def test_imported_ratings_are_evaluation_data_with_star_positives(
    sqlite_store: SqlStore,
) -> None:
    """load_store_events reads imported ratings in order; 4-5 stars are the positives."""
    data = fake_movielens()
    async with sqlite_store.sessions.begin() as session:
        await import_movielens(session, data, secret_key=TEST_SECRET)
    async with sqlite_store.sessions() as session:
        events = await load_store_events(session)

    assert len(events) == len(data.ratings)
    assert events.catalogue_size == 10
    assert set(events.kinds.tolist()) == {"rating"}
    assert events.values.tolist() == data.ratings.ratings.tolist()
    assert events.positive.tolist() == (data.ratings.ratings >= 4).tolist()
    assert events.item_ids[0] == sku(data.ratings.item_ids[0])


def test_ids_follow_the_documented_formats() -> None:
    """External ids, skus and event ids as documented (and as the CLI help says)."""
    assert external_id("42") == "ml-user-42"
    assert sku("7") == "ML-7"
    assert event_id("42", "7") == "ml-42-7"
