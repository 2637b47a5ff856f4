"""Finding duplicate customers: equal contacts (exact) and similar ones (fuzzy, blocked).

Two customers are exact duplicates when they share a normalised e-mail address or phone
number. They are fuzzy duplicates when their names are at least ``threshold`` similar
(rapidfuzz's ratio or Damerau-Levenshtein on the sorted words, as ``token_sort_ratio``
does: "Smith, Anna" matches "Anna Smith", "Bekcer" matches "Becker") and so is every kind
of contact both have (e-mail and/or phone, Damerau-Levenshtein), with at least one such
kind: two "Anna Smith"s with different e-mail addresses stay two customers.

Comparing every pair would be quadratic; candidates are only pairs that share a
blocking key: the e-mail's domain with the name's initials and the start or the end of
its local part; the local part alone; the last four digits of the phone number, or the
four before them. A single typo in one contact leaves one of them intact. Only pairs
with at least one customer from the file are compared: duplicates among stored
customers alone are not an import's business.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from rapidfuzz import fuzz
from rapidfuzz.distance import DamerauLevenshtein

from rasa_personalize.imports.normalise import name_match_key

MatchKind = Literal["exact", "fuzzy"]
# A block this large is a key too common to mean anything (e.g. a shared test address
# prefix); its pairs would cost more than they find.
MAX_BLOCK_SIZE: Final = 500


@dataclass(frozen=True)
class MatchProfile:
    """What a customer is compared by: normalised names, e-mails and phones."""

    node: int
    names: tuple[str, ...]  # comparable_name() values
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    from_file: bool


@dataclass(frozen=True)
class Match:
    """Customers ``a`` and ``b`` (nodes) are the same person; ``score`` 0-100."""

    a: int
    b: int
    kind: MatchKind
    score: int


def block_keys(profile: MatchProfile) -> set[str]:
    """The blocking keys of a customer: any shared key makes a candidate pair."""
    keys: set[str] = set()
    # Initials of the name's words in sorted order ("Smith, Anna" and "Anna Smith": "as")
    # split the thousands of "joh..." addresses at one mail provider into small blocks.
    initials = {"".join(sorted(word[0] for word in name.split())) for name in profile.names}
    for email in profile.emails:
        local, _, domain = email.rpartition("@")
        compact = local.replace(".", "")
        keys.add(f"l:{compact}")
        for letters in initials or {""}:
            keys.add(f"e:{domain}:{letters}:{compact[:3]}")
            keys.add(f"e:{domain}:{letters}:~{compact[-3:]}")
    for phone in profile.phones:
        # The subscriber's digits, not the country and area code: those are shared by
        # a whole city and would make blocks of thousands.
        keys.add(f"p:{phone[-4:]}")
        keys.add(f"pm:{phone[-8:-4]}")
    return keys


def exact_matches(profiles: Sequence[MatchProfile]) -> list[Match]:
    """Pairs sharing an e-mail or phone, linking each to the first profile that has it."""
    matches: list[Match] = []
    seen: set[tuple[int, int]] = set()
    groups: dict[str, list[MatchProfile]] = defaultdict(list)
    for profile in profiles:
        for value in {f"e:{e}" for e in profile.emails} | {f"p:{p}" for p in profile.phones}:
            groups[value].append(profile)
    for members in groups.values():
        if len(members) < 2 or not any(member.from_file for member in members):
            continue
        head = members[0]
        for other in members[1:]:
            pair = (min(head.node, other.node), max(head.node, other.node))
            if head.node != other.node and pair not in seen:
                seen.add(pair)
                matches.append(Match(pair[0], pair[1], "exact", 100))
    return sorted(matches, key=lambda match: (match.a, match.b))


def _best(left: Sequence[str], right: Sequence[str], scorer: Callable[[str, str], float]) -> float:
    if len(left) == 1 and len(right) == 1:  # nearly always: skip the generator
        return scorer(left[0], right[0])
    return max((scorer(a, b) for a in left for b in right), default=-1.0)


def comparable_name(name: str) -> str:
    """A name as :class:`MatchProfile` holds it: match key with its words sorted.

    Sorted words make "Smith, Anna" equal "Anna Smith" (what ``token_sort_ratio`` does),
    once per customer instead of once per compared pair.
    """
    return " ".join(sorted(name_match_key(name).split()))


def name_similarity(a: str, b: str) -> float:
    """0-100 for two :func:`comparable_name` values: Indel ratio or Damerau-Levenshtein.

    Damerau-Levenshtein counts a swap of two neighbouring letters as one edit, where the
    ratio counts two; the higher of the two scores is taken.
    """
    return max(fuzz.ratio(a, b), DamerauLevenshtein.normalized_similarity(a, b) * 100)


def email_similarity(a: str, b: str) -> float:
    """0-100: Damerau-Levenshtein of the local parts at one domain, else of the addresses.

    Not the ratio of whole addresses: a long shared domain and name would make
    anna.smith1984@ and anna.smith2071@ look 90% alike, yet they are two people.
    """
    local_a, _, domain_a = a.rpartition("@")
    local_b, _, domain_b = b.rpartition("@")
    if domain_a == domain_b:
        return DamerauLevenshtein.normalized_similarity(local_a, local_b) * 100
    return DamerauLevenshtein.normalized_similarity(a, b) * 100


def phone_similarity(a: str, b: str) -> float:
    """0-100: Damerau-Levenshtein of the E.164 digits (one typo or swap in 11: about 91)."""
    return DamerauLevenshtein.normalized_similarity(a, b) * 100


def fuzzy_score(a: MatchProfile, b: MatchProfile, threshold: float) -> int | None:
    """min(name similarity, each shared contact kind's similarity), or None below threshold."""
    if not a.names or not b.names:
        return None
    name = _best(a.names, b.names, name_similarity)
    if name < threshold:
        return None
    scores = [name]
    if a.emails and b.emails:
        scores.append(_best(a.emails, b.emails, email_similarity))
    if a.phones and b.phones:
        scores.append(_best(a.phones, b.phones, phone_similarity))
    if len(scores) == 1 or min(scores) < threshold:
        return None
    return int(min(scores))


def fuzzy_matches(profiles: Sequence[MatchProfile], threshold: float) -> list[Match]:
    """Fuzzy duplicates among candidate pairs (see the module doc), best score first."""
    blocks: dict[str, list[MatchProfile]] = defaultdict(list)
    for profile in profiles:
        for key in block_keys(profile):
            blocks[key].append(profile)
    compared: set[tuple[int, int]] = set()
    matches: list[Match] = []
    for members in blocks.values():
        if len(members) < 2 or len(members) > MAX_BLOCK_SIZE:
            continue
        if not any(member.from_file for member in members):
            continue
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if a.node == b.node or not (a.from_file or b.from_file):
                    continue
                pair = (min(a.node, b.node), max(a.node, b.node))
                if pair in compared:
                    continue
                compared.add(pair)
                score = fuzzy_score(a, b, threshold)
                if score is not None:
                    matches.append(Match(pair[0], pair[1], "fuzzy", score))
    return sorted(matches, key=lambda match: (-match.score, match.a, match.b))


class DisjointSet:
    """Union-find over nodes 0..n-1; the smaller root wins, so results are deterministic."""

    def __init__(self, size: int) -> None:
        self._parent = list(range(size))

    def find(self, node: int) -> int:
        """The root of ``node``'s group."""
        root = node
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[node] != root:
            self._parent[node], node = root, self._parent[node]
        return root

    def union(self, a: int, b: int) -> bool:
        """Join the groups of ``a`` and ``b``; False when they were one group already."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return False
        self._parent[max(root_a, root_b)] = min(root_a, root_b)
        return True
