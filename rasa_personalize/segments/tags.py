"""Apply tag rules: store ``customer_tags`` rows with source ``rule``, remove stale ones.

For each rule, in the caller's transaction:

- **count rules** over every customer run as two set-based statements: a ``DELETE`` of
  the rule's tags whose customers no longer reach the count (a correlated ``NOT EXISTS``
  over their interactions), and an ``INSERT ... SELECT ... GROUP BY ... HAVING`` upsert
  of every customer who does;
- **feature rules** compute the features once (SQL aggregates, see
  :mod:`rasa_personalize.segments.features`), compare in numpy, then upsert and delete in batches.

For some customers (ingestion re-tags the ones with new events, in the transaction that
stores them, while it holds their rows locked) every rule's holders are found first, the
count rules in one aggregate pass over those customers' interactions, and then all tags
are written at once: one read, one delete, one executemany upsert per chunk of
customers. Per-rule statements would be planned from row estimates that a rule's own
filters (kind, category, time window) make tiny, and PostgreSQL then picks nested loops
that compare every matching interaction with every customer in scope (seen: 1.4 s per
rule for 5,000 customers; the whole run now takes 0.35 s).

Rule tags whose name no rule gives any more are removed. Tags from other sources
(``manual``, ``seed``, imports) are never touched: a rule does not overwrite a tag of the
same name that came from elsewhere (the upsert only updates rows whose source is
``rule``). ``updated_at`` of a rule tag is when a rule last wrote it: the set-based count
upserts rewrite every holder's tag, the batched writes only tags that changed.

:func:`apply_tag_rules` takes ``customer_ids`` so that ingestion can re-tag just the
customers with new interactions; ``None`` means everyone.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Delete,
    Float,
    Select,
    String,
    case,
    delete,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from rasa_personalize.clock import utc_now
from rasa_personalize.rules.problems import Problem, did_you_mean
from rasa_personalize.segments.features import AFFINITY_PREFIX, ID_CHUNK, compute_features
from rasa_personalize.segments.tag_rules import (
    RULE_SOURCE,
    CountCondition,
    FeatureCondition,
    TagRule,
    TagRules,
)
from rasa_personalize.store.dialect import member_of
from rasa_personalize.store.models import CustomerTag, Interaction, Product, UtcDateTime

logger = logging.getLogger(__name__)

# Rows per executemany when feature-rule tags are written.
WRITE_BATCH: Final = 5_000


@dataclass(frozen=True)
class TagOutcome:
    """What one rule did.

    Attributes:
        tag: the rule's tag.
        qualifying: customers (in scope) who meet the rule.
        tagged: of those, the ones holding the tag from the rule now; the others hold a
            tag of the same name from another source, which the rule leaves alone.
        removed: rule tags removed because the rule no longer holds.
    """

    tag: str
    qualifying: int
    tagged: int
    removed: int


@dataclass(frozen=True)
class TagRun:
    """What :func:`apply_tag_rules` did.

    Attributes:
        outcomes: one per rule, in file order.
        removed_orphans: rule tags removed because no rule gives that tag any more.
        warnings: rules that cannot match as written (a category not in the catalogue,
            an affinity feature of an unknown category), also logged.
    """

    outcomes: tuple[TagOutcome, ...]
    removed_orphans: int
    warnings: tuple[Problem, ...]

    @property
    def tagged(self) -> int:
        """Rule tags held after the run, over every rule."""
        return sum(outcome.tagged for outcome in self.outcomes)

    @property
    def removed(self) -> int:
        """Rule tags removed by the run."""
        return self.removed_orphans + sum(outcome.removed for outcome in self.outcomes)


async def apply_tag_rules(
    session: AsyncSession,
    rules: TagRules,
    customer_ids: Collection[int] | None = None,
    *,
    now: datetime | None = None,
    check_catalogue: bool = True,
    count_qualifying: bool = True,
) -> TagRun:
    """Tag customers by ``rules``; drop rule tags that no longer hold.

    Args:
        session: a session in the caller's transaction; nothing is committed here.
        rules: validated rules (:func:`~rasa_personalize.segments.tag_rules.load_tag_rules`).
        customer_ids: only these customers (e.g. those with new interactions); None: all.
        now: the end of ``within_days`` windows (default: now), timezone-aware.
        check_catalogue: warn about rules naming categories the catalogue lacks (jobs
            that re-apply the same rules every few seconds check once, at start).
        count_qualifying: over everyone, count each count rule's qualifying customers
            for the report (one more statement per rule; a caller that reports nothing
            skips it and gets ``qualifying`` 0 for those rules). Runs for some customers
            count them anyway, at no cost.
    """
    now = now or utc_now()
    wanted = None if customer_ids is None else sorted({int(i) for i in customer_ids})
    if wanted == []:
        return TagRun((), 0, ())
    dialect = (await session.connection()).dialect.name
    insert = _insert_for(dialect)
    warnings = await _check_against_store(session, rules) if check_catalogue else ()
    feature_rules = [
        (r, r.condition) for r in rules.rules if isinstance(r.condition, FeatureCondition)
    ]
    count_rules = [(r, r.condition) for r in rules.rules if isinstance(r.condition, CountCondition)]
    features = (
        await compute_features(session, now=now, customer_ids=wanted) if feature_rules else None
    )
    holders: dict[str, list[int]] = {}
    for rule, feature in feature_rules:
        assert features is not None  # computed above whenever a feature rule exists
        if feature.feature in features.names:
            holds = feature.holds(features.column(feature.feature))
        else:
            holds = np.zeros(len(features), dtype=np.bool_)
        holders[rule.tag] = features.customer_ids[holds].tolist()
    outcomes: dict[str, TagOutcome] = {}
    if wanted is None:
        # Everyone: count rules as set-based statements, feature tags over every customer.
        for rule, count in count_rules:
            outcomes[rule.tag] = await _apply_count_rule(
                session, rule, count, now=now, dialect=dialect,
                count_qualifying=count_qualifying,
            )  # fmt: skip
        evaluated = features.customer_ids.tolist() if features is not None else []
        written, _ = await _write_rule_tags(
            session, insert, [rule for rule, _ in feature_rules], holders, evaluated,
            remove_orphans=False, now=now, dialect=dialect,
        )  # fmt: skip
        outcomes |= written
        orphans = await _rowcount(
            session,
            delete(CustomerTag).where(
                CustomerTag.source == RULE_SOURCE, CustomerTag.tag.not_in(sorted(rules.tags))
            ),
        )
    else:
        # Some customers: every rule's holders first, then one read, one delete and one
        # write for all rules (orphans included) per chunk of customers.
        if count_rules:
            holders |= await _count_holders(session, count_rules, wanted, now=now, dialect=dialect)
        outcomes, orphans = await _write_rule_tags(
            session, insert, rules.rules, holders, wanted, remove_orphans=True, now=now,
            dialect=dialect,
        )  # fmt: skip
    run = TagRun(tuple(outcomes[rule.tag] for rule in rules.rules), orphans, warnings)
    logger.info(
        "tag rules %s: %d rule tags held, %d removed", rules.source, run.tagged, run.removed
    )
    return run


async def _apply_count_rule(
    session: AsyncSession,
    rule: TagRule,
    condition: CountCondition,
    *,
    now: datetime,
    dialect: str,
    count_qualifying: bool,
) -> TagOutcome:
    """One count rule over every customer: a set-based delete and upsert."""
    insert = _insert_for(dialect)
    holders = _count_query(condition, now)
    qualifying = 0
    if count_qualifying:
        qualifying = int(
            await session.scalar(select(func.count()).select_from(holders.subquery())) or 0
        )
    removed = await _rowcount(session, _delete_stale_count(rule, condition, now))
    tagged = await _rowcount(session, _upsert_count(insert, rule, holders, now))
    return TagOutcome(rule.tag, qualifying, tagged, removed)


async def _count_holders(
    session: AsyncSession,
    rules: list[tuple[TagRule, CountCondition]],
    customer_ids: list[int],
    *,
    now: datetime,
    dialect: str,
) -> dict[str, list[int]]:
    """The customers of ``customer_ids`` who reach each count rule, in one aggregate pass.

    One sum per rule over the scope's interactions of the kinds the rules count, grouped
    by customer: the same counts as :func:`_count_query`, without its per-rule plans.
    """
    i = Interaction
    sums = []
    for _, condition in rules:
        counted = i.kind == condition.kind
        if condition.category is not None:
            counted = counted & (Product.category == condition.category)
        if condition.within_days is not None:
            counted = counted & (i.occurred_at >= now - timedelta(days=condition.within_days))
        sums.append(func.sum(case((counted, 1), else_=0)))
    kinds = sorted({condition.kind for _, condition in rules})
    holders: dict[str, list[int]] = {rule.tag: [] for rule, _ in rules}
    for scope in _chunks(customer_ids, ID_CHUNK):
        statement = (
            select(i.customer_id, *sums)
            .outerjoin(Product, Product.id == i.product_id)
            .where(member_of(i.customer_id, scope, dialect), i.kind.in_(kinds))
            .group_by(i.customer_id)
        )
        for customer, *counts in await session.execute(statement):
            for (rule, condition), count in zip(rules, counts, strict=True):
                if int(count or 0) >= condition.at_least:
                    holders[rule.tag].append(int(customer))
    return holders


def _insert_for(dialect: str) -> Any:
    # Both dialects spell the upsert ON CONFLICT ... DO UPDATE, with their own constructs.
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def _rowcount(session: AsyncSession, statement: Any) -> int:
    result = await session.execute(statement)
    return max(0, int(getattr(result, "rowcount", 0) or 0))


def _count_query(
    condition: CountCondition,
    now: datetime,
    customer: ColumnElement[Any] | QueryableAttribute[Any] | None = None,
) -> Select[Any]:
    """Customers (or, correlated, this customer) who reach the count."""
    i = Interaction
    statement = select(i.customer_id).where(i.kind == condition.kind)
    if condition.category is not None:
        statement = statement.join(Product, Product.id == i.product_id).where(
            Product.category == condition.category
        )
    if condition.within_days is not None:
        statement = statement.where(i.occurred_at >= now - timedelta(days=condition.within_days))
    if customer is not None:
        statement = statement.where(i.customer_id == customer)
    return statement.group_by(i.customer_id).having(func.count() >= condition.at_least)


def _delete_stale_count(rule: TagRule, condition: CountCondition, now: datetime) -> Delete:
    still_holds = _count_query(condition, now, CustomerTag.customer_id).exists()
    return delete(CustomerTag).where(
        CustomerTag.tag == rule.tag, CustomerTag.source == RULE_SOURCE, ~still_holds
    )


def _upsert_count(insert: Any, rule: TagRule, holders: Select[Any], now: datetime) -> Any:
    rows = holders.with_only_columns(
        Interaction.customer_id,
        literal(rule.tag, String()),
        literal(RULE_SOURCE, String()),
        literal(rule.weight, Float()),
        literal(now, UtcDateTime()),
    )
    statement = insert(CustomerTag).from_select(
        ["customer_id", "tag", "source", "weight", "updated_at"], rows
    )
    return _on_conflict(statement)


def _on_conflict(statement: Any) -> Any:
    # Only rows that a rule made are refreshed; a same-named tag from elsewhere stays as is.
    return statement.on_conflict_do_update(
        index_elements=[CustomerTag.customer_id, CustomerTag.tag],
        set_={"weight": statement.excluded.weight, "updated_at": statement.excluded.updated_at},
        where=CustomerTag.source == RULE_SOURCE,
    )


async def _write_rule_tags(
    session: AsyncSession,
    insert: Any,
    rules: Sequence[TagRule],
    holders: Mapping[str, list[int]],
    evaluated: list[int],
    *,
    remove_orphans: bool,
    now: datetime,
    dialect: str,
) -> tuple[dict[str, TagOutcome], int]:
    """Store the rules' tags of the ``evaluated`` customers: ``holders[tag]`` hold it.

    Per chunk of customers, one read of their tags, one delete of the rule tags that no
    longer hold (with ``remove_orphans``, also of rule tags that none of ``rules`` gives),
    then one executemany upsert for all rules. Returns the outcome per tag and the
    number of orphans removed.
    """
    by_tag = {rule.tag: rule for rule in rules}
    holding = {tag: set(holders[tag]) for tag in by_tag}
    # Holders whose rule tag is already stored as is: not rewritten, so re-applying the
    # rules every second (the event worker) writes only what changed. `updated_at` is
    # therefore when a tag last changed, not when a rule last confirmed it. Holders with
    # a same-named tag from another source keep it untouched (the rule never owns it).
    settled: dict[str, set[int]] = {tag: set() for tag in by_tag}
    unchanged: Counter[str] = Counter()
    removed: Counter[str] = Counter()
    orphaned = 0
    for chunk in _chunks(evaluated, ID_CHUNK):
        existing = select(
            CustomerTag.id, CustomerTag.customer_id, CustomerTag.tag, CustomerTag.source,
            CustomerTag.weight,
        ).where(member_of(CustomerTag.customer_id, chunk, dialect))  # fmt: skip
        if not remove_orphans:
            existing = existing.where(CustomerTag.tag.in_(sorted(by_tag)))
        stale: list[int] = []
        for tag_id, customer, tag, source, weight in await session.execute(existing):
            rule = by_tag.get(tag)
            if rule is None:
                if remove_orphans and source == RULE_SOURCE:
                    stale.append(tag_id)
                    orphaned += 1
            elif customer in holding[tag]:
                if source != RULE_SOURCE:
                    settled[tag].add(customer)
                elif weight == rule.weight:
                    settled[tag].add(customer)
                    unchanged[tag] += 1
            elif source == RULE_SOURCE:
                stale.append(tag_id)
                removed[tag] += 1
        for ids in _chunks(stale, ID_CHUNK):
            await session.execute(
                delete(CustomerTag).where(member_of(CustomerTag.id, ids, dialect))
            )
    rows = [
        {"customer_id": customer, "tag": tag, "source": RULE_SOURCE, "weight": rule.weight,
         "updated_at": now}
        for tag, rule in by_tag.items()
        for customer in holders[tag]
        if customer not in settled[tag]
    ]  # fmt: skip
    written = Counter(row["tag"] for row in rows)
    # One prepared statement run as an executemany: a multi-row VALUES list would be
    # compiled anew, thousands of placeholders long, on every call.
    statement = _on_conflict(insert(CustomerTag))
    for start in range(0, len(rows), WRITE_BATCH):
        await session.execute(statement, rows[start : start + WRITE_BATCH])
    outcomes = {
        tag: TagOutcome(tag, len(holders[tag]), unchanged[tag] + written[tag], removed[tag])
        for tag in by_tag
    }
    return outcomes, orphaned


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _check_against_store(session: AsyncSession, rules: TagRules) -> tuple[Problem, ...]:
    """Rules that name a category the catalogue does not have (they could never match)."""
    named = [(rule, *_category_of(rule)) for rule in rules.rules]
    named = [(rule, category, field) for rule, category, field in named if category]
    if not named:
        return ()
    known = set((await session.scalars(select(Product.category).distinct())).all())
    problems = tuple(
        Problem(
            rules.source,
            rule.line,
            f"no category {category!r} in the catalogue{did_you_mean(category, known)}; "
            "the rule cannot match",
            f"tag {rule.tag!r}",
            rule.tag,
            field,
        )
        for rule, category, field in named
        if category not in known
    )
    for problem in problems:
        logger.warning("%s", problem)
    return problems


def _category_of(rule: TagRule) -> tuple[str, str]:
    """The category a rule depends on and the field naming it; ``""`` when none."""
    condition = rule.condition
    if isinstance(condition, CountCondition):
        return condition.category or "", "category"
    if condition.feature.startswith(AFFINITY_PREFIX):
        return condition.feature[len(AFFINITY_PREFIX) :], "feature"
    return "", "feature"
