"""Running totals of each customer's interactions, folded forward from new ones only.

A customer's behavioural metrics and tag features are sums over their interactions.
Recomputed from the whole history at every refresh, they cost what the history costs,
and under a steady stream of events (every customer active every second) the refreshes
fall further behind as histories grow. So the stream worker keeps sums instead:

- each interaction stored through the event paths (``write_interactions`` without its
  own refresh, and the chat writer) gets a row in ``interaction_inbox`` in the same
  transaction (:func:`inbox_new_interactions`);
- ``customer_totals`` holds, per customer, the sums over their interactions that are
  **not** in the inbox. Everything here keeps that true;
- :func:`fold_totals` (the worker's refresh, which holds the customers' rows) takes the
  customers' inbox rows out, with their interactions, and adds those to the stored
  totals: a refresh costs what its new events cost. Customers without totals have them
  summed from their history first, read before the inbox is taken, less what the inbox
  held (an interaction committed in between is in the inbox, so counted once);
- whatever changes or removes interactions otherwise (a merge, retention, bulk loads, a
  full recompute) drops the totals of the customers concerned, holding their rows
  (:func:`drop_totals`), and the next fold computes them again from the history.

Count rules ("at least 3 running views in the last 30 days") are sums over a moving
window, which running sums cannot give. For each filter the caller names
(:class:`CountedKind`, from the tag rules), the totals keep the times of the newest
``keep`` matching interactions instead: at least ``n`` of them fall in a window exactly
when the n-th newest does (:func:`reaches`). The filters are part of the document; totals
kept for other filters are computed again, as a document of another layout is.

An interaction's product price is compared with the list price when it is folded in;
a full recompute compares with today's list price (they differ only after a price
change).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final, NamedTuple

from sqlalchemy import (
    BigInteger,
    Select,
    String,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from rasa_personalize.store.bulk import plain_rows
from rasa_personalize.store.dialect import POSTGRESQL, dialect_of, member_of
from rasa_personalize.store.locks import lock_customers
from rasa_personalize.store.models import (
    ASSISTANT_KINDS,
    Customer,
    CustomerRunningTotals,
    Interaction,
    InteractionInbox,
    Product,
)
from rasa_personalize.store.types import Session

# The document's layout; a document of another layout is computed again.
LAYOUT: Final = 1
# Interaction ids or customer ids per statement.
CHUNK: Final = 5_000
# How much one interaction of each kind says about a customer's taste for a category
# (the profile's category affinity and the tag features both weigh by these).
CATEGORY_AFFINITY_WEIGHTS: Final[Mapping[str, float]] = {
    "view": 1.0,
    "search": 0.5,
    "chat_click": 2.0,
    "cart": 3.0,
    "purchase": 5.0,
    "feedback": 2.0,
    "rating": 2.0,
}
# A purchase counts as discounted when paid at least this much below the list price.
DISCOUNT_THRESHOLD: Final = 0.95
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US_PER_DAY: Final = 86_400 * 1_000_000
_ONE_US: Final = timedelta(microseconds=1)
_TABLE: Final = CustomerRunningTotals.metadata.tables[CustomerRunningTotals.__tablename__]
_INBOX: Final = InteractionInbox.metadata.tables[InteractionInbox.__tablename__]


# The most interaction times kept per counted filter: a count rule that needs more is
# counted from the interactions.
MAX_KEPT: Final = 20


class CountedKind(NamedTuple):
    """A count rule's filter: interactions of ``kind`` (with a product of ``category``;
    None: any). The totals keep the times of the newest ``keep`` of them."""

    kind: str
    category: str | None
    keep: int


class CategorySums(NamedTuple):
    """A customer's sums over interactions with products of one category (a tuple: a
    refresh builds thousands of them)."""

    weight: float = 0.0  # CATEGORY_AFFINITY_WEIGHTS per interaction
    priced: int = 0  # purchases with a price
    paid_cents: int = 0  # the prices of those
    discounted: int = 0  # purchases below DISCOUNT_THRESHOLD x list price

    def plus(self, other: CategorySums) -> CategorySums:
        return CategorySums(
            self.weight + other.weight,
            self.priced + other.priced,
            self.paid_cents + other.paid_cents,
            self.discounted + other.discounted,
        )


@dataclass(frozen=True)
class Totals:
    """Sums over some of a customer's interactions (times as epoch microseconds).

    Counts leave out the assistant's own kinds ("shown"); categories count every kind,
    as the category affinity does.
    """

    interactions: int = 0
    views: int = 0
    purchases: int = 0
    spent_cents: int = 0
    first_us: int | None = None
    last_us: int | None = None
    last_purchase_us: int | None = None
    chat_messages: int = 0
    chat_clicks: int = 0
    session_starts: int = 0
    session_seconds: float = 0.0
    session_lengths: int = 0
    categories: Mapping[str, CategorySums] = field(default_factory=dict)
    intents: Mapping[str, int] = field(default_factory=dict)
    # UTC days (since 1970-01-01) with any activity, ascending.
    days: tuple[int, ...] = ()
    # The filters counted, and per filter the newest matching times, newest first.
    counted: tuple[CountedKind, ...] = ()
    newest: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def empty(cls, counted: tuple[CountedKind, ...] = ()) -> Totals:
        """No interactions, counting ``counted``."""
        return cls(counted=counted, newest=((),) * len(counted))

    def plus(self, other: Totals) -> Totals:
        """These sums and ``other``'s (of other interactions of the same customer).

        Raises:
            ValueError: the two count other filters.
        """
        if other.counted != self.counted:
            raise ValueError("totals that count other filters cannot be added")
        categories = dict(self.categories)
        for name, sums in other.categories.items():
            categories[name] = categories[name].plus(sums) if name in categories else sums
        intents = dict(self.intents)
        for name, count in other.intents.items():
            intents[name] = intents.get(name, 0) + count
        return Totals(
            interactions=self.interactions + other.interactions,
            views=self.views + other.views,
            purchases=self.purchases + other.purchases,
            spent_cents=self.spent_cents + other.spent_cents,
            first_us=_least(self.first_us, other.first_us),
            last_us=_greatest(self.last_us, other.last_us),
            last_purchase_us=_greatest(self.last_purchase_us, other.last_purchase_us),
            chat_messages=self.chat_messages + other.chat_messages,
            chat_clicks=self.chat_clicks + other.chat_clicks,
            session_starts=self.session_starts + other.session_starts,
            session_seconds=self.session_seconds + other.session_seconds,
            session_lengths=self.session_lengths + other.session_lengths,
            categories=categories,
            intents=intents,
            days=tuple(sorted(set(self.days) | set(other.days))),
            counted=self.counted,
            newest=tuple(
                _newest_first(mine, theirs, counted.keep) if theirs else mine
                for mine, theirs, counted in zip(
                    self.newest, other.newest, self.counted, strict=True
                )
            ),
        )

    @property
    def discounted_purchases(self) -> int:
        return sum(sums.discounted for sums in self.categories.values())

    def to_document(self) -> dict[str, Any]:
        return {
            "layout": LAYOUT,
            "interactions": self.interactions,
            "views": self.views,
            "purchases": self.purchases,
            "spent_cents": self.spent_cents,
            "first_us": self.first_us,
            "last_us": self.last_us,
            "last_purchase_us": self.last_purchase_us,
            "chat_messages": self.chat_messages,
            "chat_clicks": self.chat_clicks,
            "session_starts": self.session_starts,
            "session_seconds": self.session_seconds,
            "session_lengths": self.session_lengths,
            "categories": {name: list(sums) for name, sums in self.categories.items()},
            "intents": dict(self.intents),
            "days": list(self.days),
            "counted": [list(counted) for counted in self.counted],
            "newest": [list(times) for times in self.newest],
        }

    @classmethod
    def from_document(
        cls, document: Mapping[str, Any], counted: tuple[CountedKind, ...] = ()
    ) -> Totals | None:
        """The stored totals, or None when the document has another layout or counts
        other filters than ``counted``."""
        if document.get("layout") != LAYOUT:
            return None
        # Lists in the document, named tuples here: equal as plain tuples.
        if tuple(map(tuple, document.get("counted", ()))) != counted:
            return None
        return cls(
            interactions=int(document["interactions"]),
            views=int(document["views"]),
            purchases=int(document["purchases"]),
            spent_cents=int(document["spent_cents"]),
            first_us=_optional_int(document["first_us"]),
            last_us=_optional_int(document["last_us"]),
            last_purchase_us=_optional_int(document["last_purchase_us"]),
            chat_messages=int(document["chat_messages"]),
            chat_clicks=int(document["chat_clicks"]),
            session_starts=int(document["session_starts"]),
            session_seconds=float(document["session_seconds"]),
            session_lengths=int(document["session_lengths"]),
            categories={name: CategorySums(*sums) for name, sums in document["categories"].items()},
            intents={str(name): int(n) for name, n in document["intents"].items()},
            days=tuple(int(day) for day in document["days"]),
            counted=counted,
            newest=tuple(tuple(times) for times in document.get("newest", ())),
        )


def reaches(totals: Totals, position: int, at_least: int, since_us: int | None) -> bool:
    """Whether at least ``at_least`` (at most the filter's ``keep``) interactions of the
    filter at ``position`` of ``totals.counted`` happened at or after ``since_us`` (None:
    ever)."""
    times = totals.newest[position]
    if len(times) < at_least:
        return False
    return since_us is None or times[at_least - 1] >= since_us


def _newest_first(mine: Sequence[int], theirs: Sequence[int], keep: int) -> tuple[int, ...]:
    return tuple(sorted((*mine, *theirs), reverse=True)[:keep])


def as_datetime(epoch_us: int | None) -> datetime | None:
    """An epoch-microsecond time as an aware UTC datetime."""
    return None if epoch_us is None else _EPOCH + timedelta(microseconds=epoch_us)


def epoch_us(value: object, tz: timezone = timezone.utc) -> int | None:
    """A stored time (a datetime, or SQLite's text for aggregates) in epoch microseconds."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return (parsed - _EPOCH) // _ONE_US


def inbox_new_interactions(new: Sequence[tuple[str, int]], dialect: str) -> Any:
    """The statement that puts new interactions, as (event id, customer id), in the inbox."""
    if dialect == POSTGRESQL:
        # One statement text and two arrays, whatever the number of rows.
        events = bindparam(None, [event_id for event_id, _ in new], type_=ARRAY(String()))
        customers = bindparam(None, [customer for _, customer in new], type_=ARRAY(BigInteger()))
        return insert(InteractionInbox).from_select(
            ["event_id", "customer_id"], select(func.unnest(events), func.unnest(customers))
        )
    return insert(InteractionInbox).values(
        [{"event_id": event_id, "customer_id": customer} for event_id, customer in new]
    )


async def fold_totals(
    session: Session,
    customer_ids: Sequence[int],
    *,
    known: Collection[int] | None = None,
    counted: tuple[CountedKind, ...] = (),
) -> dict[int, Totals]:
    """Bring these customers' running totals up to date; returns them by customer id.

    The caller holds the customers' rows (:func:`~rasa_personalize.store.locks.lock_customers`),
    so that no other fold or drop of the same customers runs meanwhile, and passes the
    ids it found as ``known`` (None: they are looked up). Unknown ids get empty totals
    and no row. ``counted``: the filters whose newest times the totals keep (one caller's
    filters throughout: totals kept for others are computed again).
    """
    dialect = dialect_of(session)
    wanted = sorted(set(customer_ids))
    # Customers with a row, and those whose row holds totals of this layout.
    present: set[int] = set()
    stored: dict[int, Totals] = {}
    for chunk in _chunks(wanted):
        rows = await plain_rows(
            session,
            select(_TABLE.c.customer_id, _TABLE.c.totals).where(
                member_of(_TABLE.c.customer_id, chunk, dialect)
            ),
        )
        for customer_id, document in rows:
            present.add(int(customer_id))
            totals = Totals.from_document(document, counted)
            if totals is not None:
                stored[int(customer_id)] = totals
    # Customers without usable totals: their whole history, read before the inbox is
    # taken.
    missing = [c for c in wanted if c not in stored]
    history: list[Sequence[Any]] = []
    for chunk in _chunks(missing):
        history += (
            await plain_rows(
                session, _rows_statement().where(member_of(Interaction.customer_id, chunk, dialect))
            )
        ).all()
    taken = await _take_inbox(session, wanted)
    # What the inbox held is added as new below, so it is no part of the history's sums
    # (the invariant); an interaction committed after the history was read is in the
    # inbox taken afterwards, so counted once too.
    in_inbox = {row[0] for row in taken}
    computed = _sum_rows((row for row in history if row[0] not in in_inbox), counted)
    delta = _sum_rows(taken, counted)
    nothing = Totals.empty(counted)
    result: dict[int, Totals] = {}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    now = datetime.now(timezone.utc)
    for customer_id in wanted:
        base = stored.get(customer_id) or computed.get(customer_id) or nothing
        added = delta.get(customer_id)
        totals = base.plus(added) if added is not None else base
        result[customer_id] = totals
        if customer_id not in present:
            row = {"customer_id": customer_id, "totals": totals.to_document(), "updated_at": now}
            inserts.append(row)
        elif added is not None or customer_id not in stored:
            # New interactions, or a document of another layout computed again.
            updates.append({"target": customer_id, "document": totals.to_document(), "now": now})
    if inserts:
        # Customers the store does not know (yet) get no row: they have nothing to sum.
        if known is None:
            known = await _known_customers(session, [row["customer_id"] for row in inserts])
        inserts = [row for row in inserts if row["customer_id"] in known]
        if inserts:
            await session.execute(insert(_TABLE), inserts)
    if updates:
        await session.execute(
            update(_TABLE)
            .where(_TABLE.c.customer_id == bindparam("target"))
            .values(totals=bindparam("document"), updated_at=bindparam("now")),
            updates,
        )
    return result


async def drop_totals(session: Session, customer_ids: Iterable[int] | None) -> None:
    """Forget these customers' running totals (None: everyone's), and their inbox rows:
    the next fold computes the totals again from their history.

    For some customers, their rows are held first (as the worker's refresh holds them),
    so a fold that read the old totals cannot write them back after this transaction.
    """
    if customer_ids is None:
        await session.execute(delete(_INBOX))
        await session.execute(delete(_TABLE))
        return
    dialect = dialect_of(session)
    for chunk in _chunks(sorted(set(customer_ids))):
        await lock_customers(session, chunk)
        await session.execute(delete(_INBOX).where(member_of(_INBOX.c.customer_id, chunk, dialect)))
        await session.execute(delete(_TABLE).where(member_of(_TABLE.c.customer_id, chunk, dialect)))


def _rows_statement() -> Select[Any]:
    """The columns :class:`_Sums` reads, per interaction, with its product's."""
    i = Interaction
    columns: list[Any] = [
        i.event_id, i.customer_id, i.kind, i.price, i.quantity, i.value, i.category,
        i.occurred_at, Product.category, Product.price,
    ]  # fmt: skip
    return select(*columns).select_from(i).outerjoin(Product, Product.id == i.product_id)


async def _take_inbox(session: Session, customer_ids: Sequence[int]) -> list[Sequence[Any]]:
    """Take these customers' inbox rows out; returns their interactions' rows.

    The interactions come back with the inbox rows in one statement, and exactly those
    are deleted: whatever commits meanwhile stays for the next fold. An inbox row whose
    interaction is gone (retention or erasure deleted it) is deleted and not counted:
    the inbox has no foreign key to cascade from.
    """
    dialect = dialect_of(session)
    inbox = InteractionInbox
    i = Interaction
    columns: list[Any] = [
        inbox.event_id, i.customer_id, i.kind, i.price, i.quantity, i.value, i.category,
        i.occurred_at, Product.category, Product.price,
    ]  # fmt: skip
    taken: list[Sequence[Any]] = []
    for chunk in _chunks(customer_ids):
        rows = (
            await plain_rows(
                session,
                select(*columns)
                .select_from(inbox)
                .outerjoin(i, i.event_id == inbox.event_id)
                .outerjoin(Product, Product.id == i.product_id)
                .where(member_of(inbox.customer_id, chunk, dialect)),
            )
        ).all()
        for part in _chunks([row[0] for row in rows]):
            # On the table, not the mapped class: an ORM delete would read every deleted
            # id back to update a session that holds none of these rows.
            await session.execute(delete(_INBOX).where(member_of(_INBOX.c.event_id, part, dialect)))
        taken += [row for row in rows if row[1] is not None]
    return taken


def _sum_rows(
    rows: Iterable[Sequence[Any]], counted: tuple[CountedKind, ...] = ()
) -> dict[int, Totals]:
    """Totals per customer over interaction rows of :func:`_rows_statement`."""
    # kind -> (position in ``counted``, category or None) of the filters of that kind
    filters: dict[str, list[tuple[int, str | None]]] = {}
    for position, each_counted in enumerate(counted):
        filters.setdefault(each_counted.kind, []).append((position, each_counted.category))
    sums: dict[int, _Sums] = {}
    for row in rows:
        customer_id = int(row[1])
        each = sums.get(customer_id)
        if each is None:
            each = sums[customer_id] = _Sums(filters, len(counted))
        each.add(row)
    return {customer_id: each.totals(counted) for customer_id, each in sums.items()}


class _Sums:
    """One customer's sums over interaction rows: the aggregates of the full recompute
    (``write_profile_metrics``, the tag features' statements), kept in Python so that
    they can be added to (tests hold the two equal). Plain attributes: a refresh adds
    hundreds of thousands of rows."""

    __slots__ = (
        "categories",
        "chat_clicks",
        "chat_messages",
        "days",
        "filters",
        "first_us",
        "intents",
        "interactions",
        "last_purchase_us",
        "last_us",
        "newest",
        "purchases",
        "session_lengths",
        "session_seconds",
        "session_starts",
        "spent_cents",
        "views",
    )  # fmt: skip

    def __init__(self, filters: Mapping[str, list[tuple[int, str | None]]], counted: int) -> None:
        self.filters = filters
        # Per counted filter, the times of every matching interaction (cut at totals()).
        self.newest: list[list[int]] = [[] for _ in range(counted)]
        self.interactions = self.views = self.purchases = self.spent_cents = 0
        self.chat_messages = self.chat_clicks = self.session_starts = self.session_lengths = 0
        self.session_seconds = 0.0
        self.first_us: int | None = None
        self.last_us: int | None = None
        self.last_purchase_us: int | None = None
        # category -> [weight, priced, paid cents, discounted]
        self.categories: dict[str, list[Any]] = {}
        self.intents: dict[str, int] = {}
        self.days: set[int] = set()

    def add(self, row: Any) -> None:
        _, _, kind, price, quantity, value, category, occurred_at, product_category, list_price = (
            row
        )
        is_purchase = kind == "purchase"
        if product_category is not None:
            self._add_category(product_category, kind, price if is_purchase else None, list_price)
        when = epoch_us(occurred_at)
        assert when is not None  # occurred_at is NOT NULL
        if kind in self.filters:
            self._add_counted(kind, product_category, when)
        if kind in ASSISTANT_KINDS:
            return
        self.interactions += 1
        self.first_us = when if self.first_us is None else min(self.first_us, when)
        self.last_us = when if self.last_us is None else max(self.last_us, when)
        self.days.add(when // _US_PER_DAY)
        if kind == "view":
            self.views += 1
        elif is_purchase:
            self.purchases += 1
            if self.last_purchase_us is None or when > self.last_purchase_us:
                self.last_purchase_us = when
            if price is not None:
                self.spent_cents += _cents(price) * int(quantity)
        elif kind == "chat_message":
            self.chat_messages += 1
            if category is not None:
                self.intents[category] = self.intents.get(category, 0) + 1
        elif kind == "chat_click":
            self.chat_clicks += 1
        elif kind == "session_start":
            self.session_starts += 1
        elif kind == "session_end" and value is not None and value >= 0:
            self.session_seconds += float(value)
            self.session_lengths += 1

    def _add_counted(self, kind: str, product_category: str | None, when: int) -> None:
        for position, category in self.filters[kind]:
            if category is None or category == product_category:
                self.newest[position].append(when)

    def _add_category(
        self, category: str, kind: str, paid: Any | None, list_price: Any | None
    ) -> None:
        """Every kind weighs on the category; ``paid``: a purchase's price."""
        sums = self.categories.get(category)
        if sums is None:
            sums = self.categories[category] = [0.0, 0, 0, 0]
        sums[0] += CATEGORY_AFFINITY_WEIGHTS.get(kind, 0.0)
        if paid is not None:
            sums[1] += 1
            sums[2] += _cents(paid)
            if list_price is not None and float(paid) < float(list_price) * DISCOUNT_THRESHOLD:
                sums[3] += 1

    def totals(self, counted: tuple[CountedKind, ...]) -> Totals:
        return Totals(
            interactions=self.interactions,
            views=self.views,
            purchases=self.purchases,
            spent_cents=self.spent_cents,
            first_us=self.first_us,
            last_us=self.last_us,
            last_purchase_us=self.last_purchase_us,
            chat_messages=self.chat_messages,
            chat_clicks=self.chat_clicks,
            session_starts=self.session_starts,
            session_seconds=self.session_seconds,
            session_lengths=self.session_lengths,
            categories={name: CategorySums(*sums) for name, sums in self.categories.items()},
            intents=self.intents,
            days=tuple(sorted(self.days)),
            counted=counted,
            newest=tuple(
                _newest_first(times, (), each.keep)
                for times, each in zip(self.newest, counted, strict=True)
            ),
        )


def _cents(price: Any) -> int:
    return round(float(price) * 100)


async def _known_customers(session: Session, customer_ids: Sequence[int]) -> set[int]:
    dialect = dialect_of(session)
    known: set[int] = set()
    for chunk in _chunks(customer_ids):
        rows = await session.execute(
            select(Customer.id).where(member_of(Customer.id, chunk, dialect))
        )
        known.update(int(i) for i in rows.scalars())
    return known


def _chunks(ids: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
