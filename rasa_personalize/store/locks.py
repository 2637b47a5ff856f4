"""Row locks that serialise the writers of one customer's derived data."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from rasa_personalize.store.dialect import dialect_of, member_of
from rasa_personalize.store.models import Customer
from rasa_personalize.store.types import Session


async def lock_customers(session: Session, customer_ids: Sequence[int]) -> dict[int, str]:
    """Hold these customers' rows until the transaction ends; returns the keys of those
    that exist, by id.

    Concurrent refreshes of the same customer serialise here (PostgreSQL; SQLite has one
    writer anyway): the second waits for the first to commit, then sees both batches'
    events, so the last profile written is complete. Locks are taken in id order, and
    FOR NO KEY UPDATE does not conflict with the KEY SHARE locks that the interactions'
    foreign keys already hold (FOR UPDATE would deadlock on them). The keys come with
    the lock, so a caller that invalidates caches needs no other query.
    """
    rows = await session.execute(
        select(Customer.id, Customer.customer_key)
        .where(member_of(Customer.id, customer_ids, dialect_of(session)))
        .order_by(Customer.id)
        .with_for_update(key_share=True)
    )
    return {int(customer_id): str(key) for customer_id, key in rows}
