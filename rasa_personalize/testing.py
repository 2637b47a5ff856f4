"""Test your Rasa actions without Rasa: trackers, a throwaway store, and actions run for real.

Public on purpose: assistant developers test their own actions the way the plugin tests
its own. With pytest, the fixtures of :mod:`rasa_personalize.pytest_plugin` (installed
with the package) hand out a :class:`ThrowawayStore` and a running service::

    async def test_gold_members_are_welcomed(personalize_store, personalize_service):
        await personalize_store.add_customer("c-1", loyalty_tier="gold")
        run = await run_action(ActionWelcome(), make_tracker(user_id="c-1"))
        assert run.responses == ["utter_welcome_member"]
        assert run.slots["loyalty_tier"] == "gold"
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from rasa_personalize.clock import utc_now
from rasa_personalize.engine import PersonalizationService
from rasa_personalize.identity import customer_key, sign_user_id
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.settings import Settings, load_settings
from rasa_personalize.slots import CUSTOMER_SEGMENTS, LOYALTY_TIERS
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade, upgrade_connection
from rasa_personalize.store.models import INTERACTION_KINDS
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.seeding import (
    CustomerRow,
    InteractionRow,
    ProductRow,
    ProfileRow,
    TagRow,
    bulk_insert_tags,
    customer_ids,
    insert_new_customers,
    insert_new_interactions,
    insert_new_products,
    insert_new_profiles,
    product_ids,
)
from rasa_personalize.store.segments import write_segment_assignments
from rasa_personalize.store.sql_store import SqlStore

# Test data only: a store filled by these helpers is keyed with it, and so is the service
# they start. Never a real deployment's secret.
TESTING_SECRET_KEY: Final = "rasa-personalize-testing-secret"  # noqa: S105  # public: test data
DATABASE_FILE: Final = "personalize.db"
# Who put rows there, in the store's bookkeeping columns.
TESTING_SOURCE: Final = "manual"


def user_message(
    text: str = "hi",
    intent: str = "greet",
    *,
    metadata: Mapping[str, Any] | None = None,
    entities: Sequence[Mapping[str, Any]] = (),
    input_channel: str = "rest",
    timestamp: float = 1_700_000_000.0,
) -> dict[str, Any]:
    """A ``user`` event as Rasa sends it in a tracker."""
    return {
        "event": "user",
        "timestamp": timestamp,
        "text": text,
        "parse_data": {
            "intent": {"name": intent, "confidence": 0.98},
            "entities": [dict(e) for e in entities],
            "text": text,
        },
        "input_channel": input_channel,
        "metadata": dict(metadata or {}),
    }


def signed(metadata: Mapping[str, Any], identity_secret: str | None) -> dict[str, Any]:
    """``metadata`` with the ``user_hash`` of its ``user_id`` under ``identity_secret``, as a
    shop's server sends it for a logged-in customer; unchanged without a secret or an id,
    or when it carries a hash already (a forged one, say)."""
    result = dict(metadata)
    user_id = result.get("user_id")
    if identity_secret is not None and isinstance(user_id, str) and "user_hash" not in result:
        result["user_hash"] = sign_user_id(identity_secret, user_id)
    return result


def tracker_state(
    *,
    sender_id: str = "default",
    user_id: str | None = None,
    text: str | None = None,
    intent: str | None = None,
    entities: Sequence[Mapping[str, Any]] = (),
    session_metadata: Mapping[str, Any] | None = None,
    slots: Mapping[str, Any] | None = None,
    events: Sequence[Mapping[str, Any]] = (),
    message_metadata: Mapping[str, Any] | None = None,
    identity_secret: str | None = None,
) -> dict[str, Any]:
    """A tracker as Rasa serialises it in an action call.

    Args:
        sender_id: the conversation id.
        user_id: the customer's id, in the latest message's metadata.
        text, intent, entities: the latest message (default ``"hi"``, ``greet``).
        session_metadata: fills the ``session_started_metadata`` slot, as Rasa does at
            session start (the first message's metadata).
        slots: the conversation's slots so far.
        events: earlier events; the latest message is appended after them unless they
            end the conversation with one already and no message part is given.
        message_metadata: more metadata of the latest message.
        identity_secret: sign every ``user_id`` (the message's and the session's) with
            this ``PERSONALIZE_IDENTITY_SECRET``, as a shop's server signs a logged-in
            customer's.
    """
    metadata = dict(message_metadata or {})
    if user_id is not None:
        metadata["user_id"] = user_id
    metadata = signed(metadata, identity_secret)
    all_events = [dict(e) for e in events]
    message_given = text is not None or intent is not None or bool(entities)
    if metadata or message_given or not any(e.get("event") == "user" for e in all_events):
        all_events.append(
            user_message(text or "hi", intent or "greet", metadata=metadata, entities=entities)
        )
    latest = next(e for e in reversed(all_events) if e.get("event") == "user")
    all_slots = dict(slots or {})
    if session_metadata is not None:
        all_slots["session_started_metadata"] = signed(session_metadata, identity_secret)
    return {
        "sender_id": sender_id,
        "slots": all_slots,
        "latest_message": {
            "intent": latest["parse_data"]["intent"],
            "entities": latest["parse_data"]["entities"],
            "text": latest["text"],
            "message_id": "m-1",
            "metadata": latest["metadata"],
        },
        "latest_event_time": latest["timestamp"],
        "followup_action": None,
        "paused": False,
        "events": all_events,
        "latest_input_channel": latest["input_channel"],
        "active_loop": {},
        "latest_action": {"action_name": "action_listen"},
        "latest_action_name": "action_listen",
    }


def make_tracker(**kwargs: Any) -> Tracker:
    """A rasa-sdk Tracker built by :func:`tracker_state` (same keyword arguments)."""
    return Tracker.from_dict(tracker_state(**kwargs))


def load_tracker(path: str | Path) -> Tracker:
    """A Tracker from a recorded tracker JSON file (as in ``tests/data``)."""
    return Tracker.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def action_call(
    action_name: str, tracker: Mapping[str, Any], domain: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The body Rasa POSTs to the action server's ``/webhook``."""
    return {
        "next_action": action_name,
        "sender_id": tracker["sender_id"],
        "tracker": dict(tracker),
        "domain": dict(domain or {}),
        "version": "3.6.21",
    }


# A list, so that a test compares the events directly (`run == [SlotSet(...)]`), as
# rasa-sdk's own tests compare an action's return value.
class ActionRun(list[dict[str, Any]]):
    """What one action did: the events it returned (this list) and the messages it sent.

    Attributes:
        messages: the dispatcher's messages in order, as rasa-sdk sends them to Rasa
            (``{"response": "utter_x", ...}``, ``{"text": "..."}``).
    """

    def __init__(self, events: Sequence[dict[str, Any]], messages: Sequence[dict[str, Any]]):
        super().__init__(events)
        self.messages: list[dict[str, Any]] = list(messages)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events, as a plain list."""
        return list(self)

    @property
    def slots(self) -> dict[str, Any]:
        """Slot name -> the last value the events set."""
        return slots_from_events(self)

    @property
    def responses(self) -> list[str]:
        """The names of the responses uttered (``utter_message(response=...)``), in order."""
        return [str(m["response"]) for m in self.messages if m.get("response")]

    @property
    def texts(self) -> list[str]:
        """The plain texts uttered (``utter_message(text=...)``), in order."""
        return [str(m["text"]) for m in self.messages if m.get("text")]


async def run_action(
    action: Action,
    tracker: Tracker,
    domain: Mapping[str, Any] | None = None,
    *,
    dispatcher: CollectingDispatcher | None = None,
) -> ActionRun:
    """Run one action as the executor would: its events, and the messages it sent.

    A fresh ``CollectingDispatcher`` unless one is given (its ``messages`` then hold the
    same messages too).
    """
    dispatcher = dispatcher if dispatcher is not None else CollectingDispatcher()
    already = len(dispatcher.messages)
    events: list[dict[str, Any]] = await action.run(dispatcher, tracker, dict(domain or {}))
    return ActionRun(events or [], dispatcher.messages[already:])


def slots_from_events(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The last value each ``slot`` event sets, by slot name."""
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


def migrate_database(database_file: Path) -> Path:
    """Create a SQLite store at ``database_file`` with the schema at head (blocking: run
    it outside an event loop, once, and copy the file for each test)."""
    upgrade(f"sqlite:///{database_file}")
    return database_file


class ThrowawayStore:
    """A SQLite store in a folder of its own, filled by external ids like real callers do.

    The helpers write through the store's own functions, keyed with ``secret_key`` as
    ``personalize import`` would, and date events relative to ``now`` (the clock of the
    service :meth:`start_service` starts). Each helper is one committed unit of work;
    :meth:`add_interactions` also recomputes the profile metrics the segments read.
    """

    def __init__(
        self,
        folder: Path,
        *,
        secret_key: str = TESTING_SECRET_KEY,
        now: datetime | None = None,
    ) -> None:
        """Point at ``folder/personalize.db`` (connects to nothing yet; see :meth:`migrate`)."""
        self.folder = folder
        self.database_url = f"sqlite:///{folder / DATABASE_FILE}"
        self.secret_key = secret_key
        self.now = now or utc_now()
        self.store: SqlStore = SqlStore(self.database_url, StoreTimeouts(statement_s=None))
        self.service: PersonalizationService | None = None
        self._prices: dict[str, float] = {}

    async def migrate(self) -> ThrowawayStore:
        """Bring the schema to head (not needed on a copy of :func:`migrate_database`'s)."""
        async with self.store.engine.begin() as connection:
            await upgrade_connection(connection)
        return self

    def key(self, external_id: str) -> str:
        """The store's key of a customer id."""
        return customer_key(self.secret_key, external_id)

    async def add_product(
        self,
        sku: str,
        category: str,
        *,
        price: float = 50.0,
        title: str | None = None,
        description: str = "",
        brand: str | None = None,
        in_stock: bool = True,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a product to the catalogue.

        Raises:
            ValueError: a negative price, or the sku is in the store already.
        """
        if price < 0:
            raise ValueError(f"product {sku!r}: price must be >= 0")
        row: ProductRow = {
            "sku": sku,
            "title": title or f"Product {sku}",
            "description": description,
            "category": category,
            "brand": brand,
            "price": price,
            "in_stock": in_stock,
            "attributes": dict(attributes or {}),
        }
        async with self.store.sessions.begin() as session:
            if not await insert_new_products(session, [row]):
                raise ValueError(f"product {sku!r} is in the store already")
        self._prices[sku] = price

    async def add_customer(
        self,
        external_id: str,
        *,
        loyalty_tier: str = "none",
        segment: str | None = None,
        tags: Sequence[str] = (),
        attributes: Mapping[str, Any] | None = None,
        age: int | None = None,
        gender: str | None = None,
        country: str | None = None,
        city: str | None = None,
        customer_for_days: float = 365.0,
    ) -> None:
        """Add a customer, known by ``external_id`` (what the chat sends as ``user_id``).

        Args:
            loyalty_tier: none, silver, gold or platinum (from the CRM).
            segment: a stored segment assignment, as ``personalize segment`` writes;
                None leaves the segment to the archetype rules (a customer without
                history is a new visitor).
            tags: tags, strongest first.
            attributes: profile attributes the decision rules read as
                ``attributes.<name>``.
            customer_for_days: how long before ``now`` the customer signed up.

        Raises:
            ValueError: an unknown tier or segment, or the customer exists already.
        """
        if loyalty_tier not in LOYALTY_TIERS:
            raise ValueError(f"loyalty_tier {loyalty_tier!r}: expected one of {LOYALTY_TIERS}")
        if segment is not None and segment not in CUSTOMER_SEGMENTS:
            raise ValueError(f"segment {segment!r}: expected one of {CUSTOMER_SEGMENTS}")
        key = self.key(external_id)
        row: CustomerRow = {
            "customer_key": key,
            "created_at": self.now - timedelta(days=customer_for_days),
            "age": age,
            "gender": gender,
            "country": country,
            "city": city,
            "loyalty_tier": loyalty_tier,
            "synthetic_group": None,
        }
        async with self.store.sessions.begin() as session:
            # The message never repeats the id: tests should not teach logging customer ids.
            if not await insert_new_customers(session, [row]):
                raise ValueError("that customer is in the store already")
            (customer_id,) = (await customer_ids(session, [key])).values()
            if attributes:
                profile: ProfileRow = {
                    "customer_id": customer_id,
                    "attributes": dict(attributes),
                    "metrics": {},
                    "version": 1,
                    "updated_at": self.now,
                }
                await insert_new_profiles(session, [profile])
            tag_rows: list[TagRow] = [
                {
                    "customer_id": customer_id,
                    "tag": tag,
                    "source": TESTING_SOURCE,
                    "weight": float(len(tags) - rank),
                    "updated_at": self.now,
                }
                for rank, tag in enumerate(tags)
            ]
            await bulk_insert_tags(session, tag_rows)
            if segment is not None:
                await write_segment_assignments(
                    session,
                    method=TESTING_SOURCE,
                    model_version="testing",
                    customer_ids=[customer_id],
                    segments=[segment],
                    scores=[1.0],
                    now=self.now,
                )

    async def add_interactions(
        self,
        external_id: str,
        sku: str,
        kind: str = "purchase",
        count: int = 1,
        *,
        days_ago: float = 1.0,
        price: float | None = None,
        quantity: int = 1,
        channel: str = "web",
        device: str = "desktop",
    ) -> None:
        """Add ``count`` interactions of one kind with a product, a day apart, the latest
        ``days_ago`` before ``now``; then recompute the profile metrics.

        Args:
            kind: one of the store's interaction kinds (view, cart, purchase, ...).
            price: what was paid per item (purchases; default the product's price, so
                a lower one makes a discounted purchase).

        Raises:
            ValueError: an unknown kind, or a customer or product not in the store.
        """
        if kind not in INTERACTION_KINDS:
            raise ValueError(f"kind {kind!r}: expected one of {INTERACTION_KINDS}")
        if count < 1:
            raise ValueError(f"count must be >= 1, not {count}")
        paid = price if price is not None else self._prices.get(sku)
        async with self.store.sessions.begin() as session:
            customers = await customer_ids(session, [self.key(external_id)])
            products = await product_ids(session, [sku])
            if not customers:
                raise ValueError("no such customer: add_customer() first")
            if sku not in products:
                raise ValueError(f"no product {sku!r}: add_product() first")
            rows: list[InteractionRow] = [
                {
                    "event_id": f"testing-{uuid.uuid4().hex}",
                    "customer_id": next(iter(customers.values())),
                    "product_id": products[sku],
                    "kind": kind,
                    "value": None,
                    "quantity": quantity,
                    "price": paid if kind == "purchase" else None,
                    "channel": channel,
                    "device": device,
                    "occurred_at": self.now - timedelta(days=days_ago + n),
                }
                for n in range(count)
            ]
            await insert_new_interactions(session, rows)
            await rebuild_profile_metrics(session, now=self.now)

    def settings(self, **overrides: Any) -> Settings:
        """Settings of a service over this store: your ``PERSONALIZE_*`` environment and
        ``personalization.yml``, as your server reads them, except the store, its secret,
        no Redis, no identity secret and a model folder of its own; ``overrides`` on top
        (``identity_secret="..."`` to test signed identities, ``rules_path=...``).

        Raises:
            ConfigurationError: an override or a ``PERSONALIZE_*`` variable is invalid.
        """
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "secret_key": self.secret_key,
            "redis_url": None,
            "identity_secret": None,
            "model_dir": self.folder / "models",
        }
        values.update(overrides)
        return load_settings(**values)

    async def start_service(self, **overrides: Any) -> PersonalizationService:
        """A service over this store, installed as what ``personalization_service()``
        returns on the running loop, warmed up as a server does at start (it reads the
        catalogue now: add products first). :meth:`close` shuts it down.

        Args:
            overrides: :meth:`settings` overrides.
        """
        await self.stop_service()
        now = self.now
        self.service = PersonalizationService(self.settings(**overrides), self.store, lambda: now)
        install_service(self.service)
        await self.service.warm_up()
        return self.service

    async def stop_service(self) -> None:
        """Shut the started service down (its store connections with it), if any."""
        if self.service is not None:
            self.service = None
            await shutdown_service()

    async def close(self) -> None:
        """Stop the service and release the store's connections."""
        await self.stop_service()
        await self.store.dispose()
