"""What an import did: counts, merges and rejections, as data, a Rich table or JSON.

Nothing here holds personal data: rejections and merges name lines and fields only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

ImportKind = Literal["customers", "interactions"]


@dataclass(frozen=True)
class Rejection:
    """Why the row at ``line`` of the file was not imported."""

    line: int
    field: str
    reason: str


@dataclass(frozen=True)
class Merge:
    """A customer folded into another: by line of the file, or None for a stored customer."""

    line: int | None
    into_line: int | None
    match: str  # "exact" or "fuzzy"
    score: int  # 100 for exact matches


@dataclass(frozen=True)
class ImportReport:
    """The counts of one import run.

    For customers, ``inserted``/``updated``/``unchanged``/``merged_*`` count customers
    (one per distinct customer id, after deduplication), ``duplicates`` counts rows
    repeating an id seen earlier in the file and ``already_merged`` rows whose id an
    earlier run merged into another customer (so every row read is counted once). For
    interactions, ``inserted`` counts new events, ``duplicates`` events already
    stored or repeated in the file, and ``suppressed`` valid events not stored because
    their customer may not be tracked (no tracking consent, or erased after the event).
    """

    kind: ImportKind
    file: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    merged_exact: int = 0
    merged_fuzzy: int = 0
    duplicates: int = 0
    # Customers only: rows whose id was merged into another customer by an earlier run.
    already_merged: int = 0
    rejected: int = 0
    dry_run: bool = False
    seconds: float = 0.0
    rejections: tuple[Rejection, ...] = ()
    merges: tuple[Merge, ...] = ()
    # Interactions only: customers seen for the first time (created, as event ingestion does).
    customers_created: int = 0
    # Interactions only: events of customers without tracking consent, or erased since.
    suppressed: int = 0

    def to_document(self) -> dict[str, Any]:
        """The report as one JSON-ready object."""
        return asdict(self)


def counts_of(report: ImportReport) -> list[tuple[str, int]]:
    """The counts worth a table row for this kind of import, in reading order."""
    rows = [("read", report.read), ("inserted", report.inserted)]
    if report.kind == "customers":
        rows += [
            ("updated", report.updated),
            ("unchanged", report.unchanged),
            ("merged (exact e-mail/phone)", report.merged_exact),
            ("merged (fuzzy)", report.merged_fuzzy),
            ("duplicate rows (same id)", report.duplicates),
            ("rows of customers merged before", report.already_merged),
        ]
    else:
        rows += [
            ("duplicates (already stored)", report.duplicates),
            ("customers first seen", report.customers_created),
            ("suppressed (no tracking consent, or erased)", report.suppressed),
        ]
    rows.append(("rejected", report.rejected))
    return rows


def describe_merge(merge: Merge) -> str:
    """'line 7 -> line 3' style text, with no personal data."""

    def where(line: int | None) -> str:
        return f"line {line}" if line is not None else "a stored customer"

    how = "exact e-mail/phone" if merge.match == "exact" else f"fuzzy, score {merge.score}"
    return f"{where(merge.line)} merged into {where(merge.into_line)} ({how})"
