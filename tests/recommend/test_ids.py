"""IdMap: sorted, stable, round-trips, aligns with other maps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.errors import UnknownIdError
from rasa_personalize.recommend.ids import IdMap

# NUL is refused by design (numpy strings would drop it), so it is not generated.
id_text = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=6)
ids_strategy = st.lists(id_text, max_size=40)


@given(ids_strategy)
def test_rows_follow_sorted_distinct_ids(ids: list[str]) -> None:
    """Rows are the sorted distinct ids, and row/id_at round-trip for every id."""
    index = IdMap.from_ids(ids)
    assert list(index) == sorted(set(ids))
    for external_id in ids:
        assert index.id_at(index.row(external_id)) == external_id


@given(ids_strategy, st.randoms())
def test_order_of_input_does_not_change_rows(ids: list[str], random: object) -> None:
    """The same set of ids in another order gives the same rows (stable maps)."""
    shuffled = list(ids)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    assert list(IdMap.from_ids(shuffled)) == list(IdMap.from_ids(ids))


@given(ids_strategy, ids_strategy)
def test_rows_in_aligns_with_other_map(left: list[str], right: list[str]) -> None:
    """rows_in gives each id's row in the other map, -1 where it is missing."""
    mine, other = IdMap.from_ids(left), IdMap.from_ids(right)
    aligned = mine.rows_in(other)
    for row, external_id in enumerate(mine):
        expected = other.get(external_id)
        assert aligned[row] == (-1 if expected is None else expected)


def test_rows_skip_unknown_ids_and_keep_order() -> None:
    """rows() keeps input order and silently skips ids that are not in the map."""
    index = IdMap.from_ids(["b", "a", "c"])
    assert index.rows(["c", "zzz", "a"]).tolist() == [2, 0]


def test_unknown_id_raises_not_found() -> None:
    """row() of an unknown id raises UnknownIdError naming the id."""
    with pytest.raises(UnknownIdError, match="'nope'"):
        IdMap.from_ids(["a"]).row("nope")


def test_rejects_non_strings_empty_ids_and_repeats_when_unique() -> None:
    """Strict input: non-str values, empty ids, and (if asked) repeats are errors."""
    with pytest.raises(InvalidInputError, match=r"ids\[1\] must be a str"):
        IdMap.from_ids(["a", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="non-empty"):
        IdMap.from_ids(["", "a"])
    with pytest.raises(InvalidInputError, match="repeated"):
        IdMap.from_ids(["a", "a"], unique=True)
    with pytest.raises(InvalidInputError, match="NUL"):
        IdMap.from_ids(["a\x00"])
    with pytest.raises(InvalidInputError, match="dtype"):
        IdMap.from_ids(np.array([1, 2]))  # type: ignore[arg-type]
