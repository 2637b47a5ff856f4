"""``personalize import customers``: a CSV of customers into the store, deduplicated.

The whole file is read and checked first (a bad header writes nothing), then matched
against itself and the store, then written in the caller's one transaction:

1. Rows are normalised (:mod:`rasa_personalize.imports.normalise`); a row with an invalid field
   is rejected with its line, field and reason. Rows repeating a customer id are folded
   into one customer, later non-empty cells winning (a later row is a later export).
2. Each customer id becomes its ``customer_key``; ids that are the alias of a merged
   customer reach the customer they were merged into.
3. Duplicates: equal e-mail or phone (found in the store by blind index) and fuzzy
   matches (:mod:`rasa_personalize.imports.dedupe`), within the file and against the store.
4. Each group of duplicates keeps one customer, the survivor: the oldest stored one,
   else the first in the file. The others' history moves to it and their keys become
   aliases (:func:`rasa_personalize.store.customers.merge_customers`).
5. The survivor's fields: its own row's values, then what is stored for it, then the
   duplicates' values fill what is still empty; the earliest signup date and, unless
   its own row says otherwise, the highest loyalty tier of the group.

6. With tag rules, the rule tags of every customer inserted, updated or merged into are
   re-applied in the same transaction (feature rules may test age or loyalty tier).

Rerunning the same file finds every id stored (or aliased) with equal values, and
changes nothing.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Final

from rasa_personalize.clock import utc_now
from rasa_personalize.identity import MAX_EXTERNAL_ID_LENGTH, customer_key
from rasa_personalize.imports.contacts import BlindIndex, ContactCipher
from rasa_personalize.imports.dedupe import (
    DisjointSet,
    Match,
    MatchProfile,
    block_keys,
    comparable_name,
    exact_matches,
    fuzzy_matches,
)
from rasa_personalize.imports.normalise import (
    FieldError,
    check_region,
    normalise_age,
    normalise_city,
    normalise_country,
    normalise_email,
    normalise_gender,
    normalise_name,
    normalise_phone,
    normalise_tier,
    parse_signup_date,
)
from rasa_personalize.imports.report import ImportReport, Merge, Rejection
from rasa_personalize.imports.source import CsvSource, SourceRow
from rasa_personalize.segments.tag_rules import TagRules
from rasa_personalize.segments.tags import apply_tag_rules
from rasa_personalize.store.customers import (
    CustomerColumns,
    CustomerMerge,
    StoredCustomer,
    add_aliases,
    customer_ids_by_contact_index,
    customers_by_ids,
    customers_with_contacts,
    insert_customers,
    merge_customers,
    resolve_keys,
    update_customers,
)
from rasa_personalize.store.rekey import rekey_customers
from rasa_personalize.store.types import Session
from rasa_personalize.text import clean_text

CUSTOMER_FIELDS: Final = frozenset(
    {"customer", "name", "email", "phone", "age", "gender", "country", "city",
     "loyalty_tier", "created_at"}
)  # fmt: skip
# Other spellings of the headers, after lower-casing and turning spaces and hyphens to _.
HEADER_ALIASES: Final = {
    "customer_id": "customer", "external_id": "customer", "id": "customer",
    "full_name": "name", "e_mail": "email", "email_address": "email", "mail": "email",
    "phone_number": "phone", "mobile": "phone", "telephone": "phone", "tier": "loyalty_tier",
    "loyalty": "loyalty_tier", "signup_date": "created_at", "signup": "created_at",
    "signed_up": "created_at", "created": "created_at", "joined": "created_at",
}  # fmt: skip
TIER_RANK: Final = {"none": 0, "silver": 1, "gold": 2, "platinum": 3}
DEFAULT_FUZZY_THRESHOLD: Final = 90.0

# progress(stage, done, total), as the other long commands report.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CustomerImportOptions:
    """How a customers file is read and deduplicated.

    Args:
        default_region: Region of phone numbers written without +country code.
        dayfirst: Read 03/04/2026 as 3 April (else as March 4).
        fuzzy_threshold: 0-100; 0 switches fuzzy matching off (exact matching stays).
    """

    default_region: str = "US"
    dayfirst: bool = False
    fuzzy_threshold: float = DEFAULT_FUZZY_THRESHOLD

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_region", check_region(self.default_region))
        if not 0 <= self.fuzzy_threshold <= 100:
            raise FieldError("fuzzy threshold", "must be between 0 and 100")


@dataclass(frozen=True)
class CustomerFields:
    """A customer's normalised values; None means not given."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    age: int | None = None
    gender: str | None = None
    country: str | None = None
    city: str | None = None
    loyalty_tier: str | None = None
    created_at: datetime | None = None

    def overlaid(self, newer: CustomerFields) -> CustomerFields:
        """These values with ``newer``'s given ones on top."""
        given = {f.name: v for f in fields(newer) if (v := getattr(newer, f.name)) is not None}
        return replace(self, **given)


@dataclass(frozen=True)
class FileCustomer:
    """One customer id of the file: its key, first line, and its rows folded.

    ``previous_keys``: the id's keys under former secrets (``PERSONALIZE_PREVIOUS_SECRET_KEYS``),
    most recent first; a customer stored under one of them moves to ``key``.
    """

    key: str
    line: int
    fields: CustomerFields
    previous_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class CustomerFile:
    """A customers file, read and normalised."""

    customers: tuple[FileCustomer, ...]
    rejections: tuple[Rejection, ...]
    read: int
    duplicate_rows: int


def parse_customer_row(
    row: SourceRow, *, secret_key: str, options: CustomerImportOptions, now: datetime
) -> tuple[str, CustomerFields]:
    """The customer key and normalised values of one row.

    Raises:
        FieldError: the first invalid field.
    """
    values = row.values
    external_id = clean_text(values.get("customer"))
    if external_id is None:
        raise FieldError("customer", "is required")
    if len(external_id) > MAX_EXTERNAL_ID_LENGTH:
        raise FieldError("customer", f"is longer than {MAX_EXTERNAL_ID_LENGTH} characters")
    parsed = CustomerFields(
        name=normalise_name(values.get("name")),
        email=normalise_email(values.get("email")),
        phone=normalise_phone(values.get("phone"), options.default_region),
        age=normalise_age(values.get("age")),
        gender=normalise_gender(values.get("gender")),
        country=normalise_country(values.get("country")),
        city=normalise_city(values.get("city")),
        loyalty_tier=normalise_tier(values.get("loyalty_tier")),
        created_at=parse_signup_date(values.get("created_at"), dayfirst=options.dayfirst, now=now),
    )
    return customer_key(secret_key, external_id), parsed


def read_customer_file(
    path: Path,
    *,
    secret_key: str,
    options: CustomerImportOptions,
    now: datetime,
    progress: Progress | None = None,
    previous_secret_keys: Sequence[str] = (),
) -> CustomerFile:
    """Read, check and normalise a customers CSV.

    With ``previous_secret_keys``, each customer also gets its keys under them.

    Raises:
        ImportFileError: the file or its header is unusable (nothing is read then).
    """
    source = CsvSource(path, CUSTOMER_FIELDS, HEADER_ALIASES, required={"customer"})
    total = source.rows_expected
    by_key: dict[str, FileCustomer] = {}
    rejections: list[Rejection] = []
    read = valid = 0
    for item in source.rows():
        read += 1
        if progress is not None and read % 1_000 == 0:
            progress("reading", read, total)
        if isinstance(item, Rejection):
            rejections.append(item)
            continue
        try:
            key, values = parse_customer_row(item, secret_key=secret_key, options=options, now=now)
        except FieldError as error:
            rejections.append(Rejection(item.line, error.field, error.reason))
            continue
        valid += 1
        known = by_key.get(key)
        by_key[key] = (
            FileCustomer(key, item.line, values, _previous_keys(item, previous_secret_keys))
            if known is None
            else replace(known, fields=known.fields.overlaid(values))
        )
    if progress is not None:
        progress("reading", read, read)
    customers = tuple(sorted(by_key.values(), key=lambda customer: customer.line))
    return CustomerFile(customers, tuple(rejections), read, valid - len(customers))


def _previous_keys(row: SourceRow, previous_secret_keys: Sequence[str]) -> tuple[str, ...]:
    """The row's customer id (valid: the row parsed) keyed under each former secret."""
    external_id = clean_text(row.values.get("customer"))
    if external_id is None:
        return ()
    return tuple(customer_key(secret, external_id) for secret in previous_secret_keys)


@dataclass
class _Node:
    """A customer being matched: a stored one, a new one from the file, or both."""

    index: int
    stored: StoredCustomer | None
    stored_fields: CustomerFields | None
    file: list[FileCustomer]

    @property
    def line(self) -> int | None:
        return self.file[0].line if self.file else None

    def all_fields(self) -> list[CustomerFields]:
        found = [customer.fields for customer in self.file]
        return found + ([self.stored_fields] if self.stored_fields is not None else [])

    def profile(self) -> MatchProfile:
        return _profile_of(*self.all_fields(), from_file=bool(self.file), node=self.index)


def _profile_of(*values: CustomerFields, from_file: bool, node: int = 0) -> MatchProfile:
    return MatchProfile(
        node=node,
        names=tuple(sorted({comparable_name(v.name) for v in values if v.name})),
        emails=tuple(sorted({v.email for v in values if v.email})),
        phones=tuple(sorted({v.phone for v in values if v.phone})),
        from_file=from_file,
    )


class CustomerImporter:
    """One run of a customers import inside the caller's session and transaction."""

    def __init__(
        self,
        session: Session,
        *,
        secret_key: str,
        cipher: ContactCipher,
        options: CustomerImportOptions,
        now: datetime | None = None,
        progress: Progress | None = None,
        tag_rules: TagRules | None = None,
        previous_secret_keys: Sequence[str] = (),
    ) -> None:
        self.session = session
        self.secret_key = secret_key
        self.previous_secret_keys = tuple(previous_secret_keys)
        self.cipher = cipher
        self.options = options
        self.tag_rules = tag_rules
        self.now = now or utc_now()
        self.progress = progress or (lambda stage, done, total: None)
        self.blind_index = BlindIndex(secret_key)

    async def run(self, path: Path) -> ImportReport:
        """Import ``path``; the caller commits (or rolls back for a dry run)."""
        started = time.perf_counter()
        parsed = read_customer_file(
            path, secret_key=self.secret_key, options=self.options, now=self.now,
            progress=self.progress, previous_secret_keys=self.previous_secret_keys,
        )  # fmt: skip
        nodes = await self._nodes(parsed.customers)
        groups = self._groups(nodes)
        report = await self._write(groups)
        return replace(
            report,
            file=str(path),
            read=parsed.read,
            duplicates=parsed.duplicate_rows,
            rejected=len(parsed.rejections),
            rejections=parsed.rejections,
            seconds=round(time.perf_counter() - started, 3),
        )

    # -- matching -------------------------------------------------------------------------

    def _decrypted(self, customer: StoredCustomer) -> CustomerFields:
        columns = customer.columns
        return CustomerFields(
            name=self._open("name", columns.name_encrypted),
            email=self._open("email", columns.email_encrypted),
            phone=self._open("phone", columns.phone_encrypted),
            age=columns.age,
            gender=columns.gender,
            country=columns.country,
            city=columns.city,
            loyalty_tier=columns.loyalty_tier,
            created_at=columns.created_at,
        )

    def _open(self, field: str, stored: str | None) -> str | None:
        if stored is None:
            return None
        assert field in ("name", "email", "phone")
        return self.cipher.decrypt(field, stored)  # type: ignore[arg-type]  # checked above

    async def _nodes(self, customers: Sequence[FileCustomer]) -> list[_Node]:
        """Stored customers that may be involved, and the file's customers attached to them."""
        session = self.session
        # Customers stored under a former secret's key move to their current key first.
        moves = {customer.key: customer.previous_keys for customer in customers}
        if self.previous_secret_keys and moves:
            await rekey_customers(session, moves)
        resolved = await resolve_keys(session, [customer.key for customer in customers])
        wanted = {customer_id for customer_id, _ in resolved.values()}
        wanted |= await customer_ids_by_contact_index(
            session,
            (self.blind_index("email", c.fields.email) for c in customers if c.fields.email),
            (self.blind_index("phone", c.fields.phone) for c in customers if c.fields.phone),
        )
        stored = {customer.id: customer for customer in await customers_by_ids(session, wanted)}
        if self.options.fuzzy_threshold > 0:
            await self._add_fuzzy_candidates(customers, stored)

        nodes: list[_Node] = []
        node_of: dict[int, _Node] = {}
        for customer_id in sorted(stored):
            node = _Node(len(nodes), stored[customer_id], self._decrypted(stored[customer_id]), [])
            nodes.append(node)
            node_of[customer_id] = node
        for customer in customers:
            hit = resolved.get(customer.key)
            if hit is not None:
                node_of[hit[0]].file.append(customer)
            else:
                nodes.append(_Node(len(nodes), None, None, [customer]))
        return nodes

    async def _add_fuzzy_candidates(
        self, customers: Sequence[FileCustomer], stored: dict[int, StoredCustomer]
    ) -> None:
        """Stored customers sharing a blocking key with the file's, decrypted in batches.

        Rows that share no key with the file are dropped at once, so memory holds the
        candidates, not the store.
        """
        wanted_blocks: set[str] = set()
        for customer in customers:
            wanted_blocks |= block_keys(_profile_of(customer.fields, from_file=True))
        if not wanted_blocks:
            return
        scanned = 0
        async for batch in customers_with_contacts(self.session):
            for candidate in batch:
                if candidate.id in stored:
                    continue
                probe = _profile_of(self._decrypted(candidate), from_file=False)
                if block_keys(probe) & wanted_blocks:
                    stored[candidate.id] = candidate
            scanned += len(batch)
            self.progress("scanning", scanned, scanned)

    def _groups(self, nodes: list[_Node]) -> list[tuple[list[_Node], list[Match]]]:
        """Groups of duplicates that involve the file, each with the matches that joined it."""
        profiles = [node.profile() for node in nodes]
        self.progress("matching", 0, len(nodes))
        matches = exact_matches(profiles)
        if self.options.fuzzy_threshold > 0:
            matches += fuzzy_matches(profiles, self.options.fuzzy_threshold)
        joined = DisjointSet(len(nodes))
        used: list[Match] = []
        for match in matches:
            if joined.union(match.a, match.b):
                used.append(match)
        members: dict[int, list[_Node]] = defaultdict(list)
        for node in nodes:
            members[joined.find(node.index)].append(node)
        edges: dict[int, list[Match]] = defaultdict(list)
        for match in used:
            edges[joined.find(match.a)].append(match)
        self.progress("matching", len(nodes), len(nodes))
        return [
            (group, edges[root])
            for root, group in sorted(members.items())
            if any(node.file for node in group)
        ]

    # -- writing --------------------------------------------------------------------------

    def _merged_values(self, survivor: _Node, others: Sequence[_Node]) -> CustomerFields:
        survivor_key = (
            survivor.stored.customer_key if survivor.stored is not None else survivor.file[0].key
        )
        own = [c.fields for c in survivor.file if c.key == survivor_key]
        aliased = [c.fields for c in survivor.file if c.key != survivor_key]
        others_file = [c for node in others for c in node.file]
        others_file.sort(key=lambda customer: customer.line)
        others_stored = [node.stored_fields for node in others if node.stored_fields is not None]
        stored = [survivor.stored_fields] if survivor.stored_fields is not None else []
        sources = own + stored + aliased + [c.fields for c in others_file] + others_stored
        merged = CustomerFields()
        for source in reversed(sources):
            merged = merged.overlaid(source)
        tiers = [s.loyalty_tier for s in sources if s.loyalty_tier is not None]
        own_tier = own[0].loyalty_tier if own else None
        tier = own_tier or max(tiers, key=TIER_RANK.__getitem__, default="none")
        signups = [s.created_at for s in sources if s.created_at is not None]
        return replace(merged, loyalty_tier=tier, created_at=min(signups, default=self.now))

    def _columns(self, values: CustomerFields, stored: StoredCustomer | None) -> CustomerColumns:
        def sealed(field: str, plaintext: str | None, before: str | None) -> str | None:
            if plaintext is None:
                return None
            # The same plaintext keeps its ciphertext: a fresh nonce would be a change.
            if before is not None and self._open(field, before) == plaintext:
                return before
            return self.cipher.encrypt(field, plaintext)  # type: ignore[arg-type]  # a contact field

        old = stored.columns if stored is not None else None
        assert values.created_at is not None
        assert values.loyalty_tier is not None
        return CustomerColumns(
            created_at=values.created_at,
            age=values.age,
            gender=values.gender,
            country=values.country,
            city=values.city,
            loyalty_tier=values.loyalty_tier,
            name_encrypted=sealed("name", values.name, old.name_encrypted if old else None),
            email_encrypted=sealed("email", values.email, old.email_encrypted if old else None),
            phone_encrypted=sealed("phone", values.phone, old.phone_encrypted if old else None),
            email_index=self.blind_index("email", values.email) if values.email else None,
            phone_index=self.blind_index("phone", values.phone) if values.phone else None,
        )

    async def _write(self, groups: list[tuple[list[_Node], list[Match]]]) -> ImportReport:
        merges: list[CustomerMerge] = []
        updates: list[tuple[int, CustomerColumns]] = []
        inserts: list[tuple[str, CustomerColumns]] = []
        # (alias key, survivor: stored id or the new survivor's key, match)
        aliases: list[tuple[str, int | str, str]] = []
        notes: list[Merge] = []
        counts = {"inserted": 0, "updated": 0, "unchanged": 0, "exact": 0, "fuzzy": 0}
        # Rows of the file that reach a customer through an id merged by an earlier run
        # share that customer's node: counted apart, so that every row is counted once.
        already_merged = sum(len(node.file) - 1 for group, _ in groups for node in group)
        for group, used in groups:
            stored = [node for node in group if node.stored is not None]
            if stored:
                survivor = min(stored, key=_age_order)
            else:
                survivor = min(group, key=lambda node: node.line or 0)
            others = [node for node in group if node is not survivor]
            values = self._merged_values(survivor, others)
            columns = self._columns(values, survivor.stored)
            if survivor.stored is None:
                inserts.append((survivor.file[0].key, columns))
                target: int | str = survivor.file[0].key
                counts["inserted"] += 1
            else:
                target = survivor.stored.id
                if columns != survivor.stored.columns:
                    updates.append((survivor.stored.id, columns))
                    counts["updated"] += 1
                else:
                    counts["unchanged"] += 1
            for node in others:
                touching = [m for m in used if node.index in (m.a, m.b)]
                kind = "exact" if any(m.kind == "exact" for m in touching) else "fuzzy"
                score = max((m.score for m in touching), default=100)
                counts[kind] += 1
                notes.append(Merge(node.line, survivor.line, kind, score))
                if node.stored is not None:
                    assert isinstance(target, int)  # a group with stored customers keeps one
                    merges.append(CustomerMerge(node.stored.id, target, kind))
                else:
                    aliases.extend((c.key, target, kind) for c in node.file)
        total_steps = 4
        self.progress("writing", 0, total_steps)
        await merge_customers(self.session, merges, self.now)
        self.progress("writing", 1, total_steps)
        await update_customers(self.session, updates, self.now)
        self.progress("writing", 2, total_steps)
        new_ids = await insert_customers(self.session, inserts)
        self.progress("writing", 3, total_steps)
        await add_aliases(
            self.session,
            [
                (key, new_ids[target] if isinstance(target, str) else target, kind)
                for key, target, kind in aliases
            ],
            self.now,
        )
        self.progress("writing", total_steps, total_steps)
        await self._retag(
            {
                *(customer_id for customer_id, _ in updates),
                *new_ids.values(),
                *(merge.survivor_id for merge in merges),
            }
        )
        notes.sort(key=lambda note: (note.line is None, note.line or 0))
        return ImportReport(
            kind="customers",
            file="",
            inserted=counts["inserted"],
            updated=counts["updated"],
            unchanged=counts["unchanged"],
            merged_exact=counts["exact"],
            merged_fuzzy=counts["fuzzy"],
            already_merged=already_merged,
            merges=tuple(notes),
        )

    async def _retag(self, customer_ids: set[int]) -> None:
        """Re-apply the rule tags of the customers this import wrote (no rules: nothing)."""
        if self.tag_rules is None or not customer_ids:
            return
        self.progress("tagging", 0, 1)
        await apply_tag_rules(
            self.session, self.tag_rules, customer_ids, now=self.now,
            check_catalogue=False, count_qualifying=False,
        )  # fmt: skip
        self.progress("tagging", 1, 1)


def _age_order(node: _Node) -> tuple[datetime, int]:
    assert node.stored is not None
    return node.stored.columns.created_at, node.stored.id


async def import_customers(
    session: Session,
    path: Path,
    *,
    secret_key: str,
    cipher: ContactCipher,
    options: CustomerImportOptions | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    tag_rules: TagRules | None = None,
    previous_secret_keys: Sequence[str] = (),
) -> ImportReport:
    """Import a customers CSV inside the caller's transaction (see the module doc).

    ``tag_rules``: re-apply them to the customers the import inserted, changed or merged
    into (the CLI passes ``PERSONALIZE_TAGS_PATH``'s rules, as event ingestion does).
    ``previous_secret_keys``: customers still stored under a key of one of these former
    secrets (``PERSONALIZE_PREVIOUS_SECRET_KEYS``) move to their current key first.

    Raises:
        ImportFileError: the file or its header is unusable; nothing was written.
    """
    importer = CustomerImporter(
        session, secret_key=secret_key, cipher=cipher, options=options or CustomerImportOptions(),
        now=now, progress=progress, tag_rules=tag_rules,
        previous_secret_keys=previous_secret_keys,
    )  # fmt: skip
    return await importer.run(path)
