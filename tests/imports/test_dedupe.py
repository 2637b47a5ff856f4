"""Duplicate finding: blocking keys, exact and fuzzy matches, union-find."""

from __future__ import annotations

from rasa_personalize.imports.dedupe import (
    DisjointSet,
    MatchProfile,
    block_keys,
    comparable_name,
    exact_matches,
    fuzzy_matches,
    fuzzy_score,
)


def profile(
    node: int, name: str | None, email: str | None = None, phone: str | None = None,
    *, from_file: bool = True,
) -> MatchProfile:  # fmt: skip
    return MatchProfile(
        node,
        (comparable_name(name),) if name else (),
        (email,) if email else (),
        (phone,) if phone else (),
        from_file=from_file,
    )


def test_one_typo_keeps_a_shared_block_key() -> None:
    """A typo in an e-mail's local part or in one phone digit leaves a key in common."""
    a = profile(0, "Anna", "anna.mueller@example.com", "+4930901820")
    b = profile(1, "Anna", "anna.muller@example.com", None)
    c = profile(2, "Anna", None, "+4930901829")
    assert block_keys(a) & block_keys(b)
    assert block_keys(a) & block_keys(c)
    assert not block_keys(b) & block_keys(c)


def test_exact_matches_need_a_file_customer() -> None:
    """Equal contacts match; two stored customers alone are not this import's business."""
    profiles = [
        profile(0, "A", "same@example.com", from_file=False),
        profile(1, "B", "same@example.com", from_file=False),
        profile(2, "C", None, "+4930901820"),
        profile(3, "D", None, "+4930901820", from_file=False),
    ]
    assert [(m.a, m.b, m.kind, m.score) for m in exact_matches(profiles)] == [(2, 3, "exact", 100)]


def test_fuzzy_score_needs_name_and_every_shared_contact() -> None:
    """Similar names with similar contacts match; a clearly different contact vetoes."""
    anna = profile(0, "Anna Müller", "anna.mueller@example.com", "+4930901820")
    typo = profile(1, "Müller, Ana", "anna.muller@example.com", "+4930901820")
    other_email = profile(2, "Anna Müller", "a.m@other.org", "+4930901820")
    no_contact = profile(3, "Anna Müller")
    assert fuzzy_score(anna, typo, 85) is not None
    assert fuzzy_score(anna, other_email, 85) is None
    assert fuzzy_score(anna, no_contact, 85) is None  # a name alone is not enough


def test_threshold_decides() -> None:
    """The same pair matches under a lower threshold and not under a higher one."""
    a = profile(0, "Jon Smith", "jon.smith@example.com")
    b = profile(1, "John Smith", "jonsmith@example.com")
    score = fuzzy_score(a, b, 0)
    assert score is not None
    assert 85 <= score < 100
    assert [m.score for m in fuzzy_matches([a, b], threshold=score)] == [score]
    assert fuzzy_matches([a, b], threshold=score + 1) == []


def test_fuzzy_pairs_with_a_file_customer_only() -> None:
    """Two stored look-alikes are not compared; a file customer is compared with both."""
    stored_a = profile(0, "Jon Smith", "jon.smith@example.com", from_file=False)
    stored_b = profile(1, "John Smith", "jonsmith@example.com", from_file=False)
    assert fuzzy_matches([stored_a, stored_b], threshold=80) == []
    new = profile(2, "Jon Smith", "jon.smith@example.com")
    pairs = {(m.a, m.b) for m in fuzzy_matches([stored_a, stored_b, new], threshold=80)}
    assert pairs == {(0, 2), (1, 2)}


def test_disjoint_set_joins_transitively() -> None:
    """a~b and b~c put a, b and c in one group under the smallest node."""
    groups = DisjointSet(4)
    assert groups.union(2, 1)
    assert groups.union(1, 0)
    assert not groups.union(2, 0)
    assert [groups.find(n) for n in range(4)] == [0, 0, 0, 3]
