"""Stable maps between external string ids (customer keys, SKUs) and model rows.

A model's factor rows mean nothing without the ids they belong to, so every model keeps
its ``IdMap`` next to its factors and saves both in one artifact. Rows are the ids in
sorted order: the same set of ids always gives the same rows, whatever order the
training data came in.

Maps of up to ``DICT_LOOKUP_UP_TO`` ids look rows up in a dict. Larger ones loaded from
an artifact (:meth:`IdMap.from_sorted`; a million customer keys) binary-search the
sorted ids instead: a dict of a million 64-character keys takes about 200 MB, and the
ids themselves can stay memory-mapped.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.errors import UnknownIdError

# Beyond this many ids, maps built by ``IdMap.from_sorted`` look rows up by binary search.
DICT_LOOKUP_UP_TO: Final = 100_000


@dataclass(frozen=True, eq=False)
class IdMap:
    """Sorted unique ids and their rows; build with ``IdMap.from_ids``.

    Compared by identity: two models with equal ids still have separate maps, which is
    what the alignment cache in ``rows_in`` keys on.
    """

    ids: NDArray[np.str_]
    _index: Mapping[str, int] = field(repr=False)
    # Rows of this map's ids inside other maps, and whether they are 0..n-1 (the maps
    # hold the same ids), computed once per pair (see rows_in).
    _alignments: weakref.WeakKeyDictionary[IdMap, tuple[NDArray[np.intp], bool]] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )

    @classmethod
    def from_ids(cls, ids: Iterable[str] | NDArray[np.str_], *, unique: bool = False) -> IdMap:
        """The map of the distinct ``ids``, in sorted order.

        Args:
            ids: external ids; duplicates are merged unless ``unique`` is set.
            unique: raise if an id appears twice (for catalogues, where it is a data error).

        Raises:
            InvalidInputError: an id is empty, or repeated when ``unique`` is set.
        """
        array = as_str_array(ids, "ids")
        distinct = np.unique(array)
        if unique and len(distinct) != len(array):
            values, counts = np.unique(array, return_counts=True)
            repeated = values[counts > 1][:3].tolist()
            raise InvalidInputError(f"ids must be unique; repeated: {repeated}")
        if len(distinct) and distinct[0] == "":
            raise InvalidInputError("ids must be non-empty strings; got an empty id")
        distinct.setflags(write=False)
        return cls(distinct, {str(value): row for row, value in enumerate(distinct.tolist())})

    @classmethod
    def from_sorted(cls, ids: NDArray[np.str_]) -> IdMap:
        """The map of ids that are sorted and unique already (the ``ids`` of a saved
        map), kept as they are: a memory-mapped array stays mapped, and past
        ``DICT_LOOKUP_UP_TO`` ids rows are found by binary search. Trusted as given:
        artifacts are checksummed, so only what ``from_ids`` built comes back here.
        """
        array = as_str_array(ids, "ids")
        if array.flags.writeable:
            array = array.copy()
            array.setflags(write=False)
        if len(array) > DICT_LOOKUP_UP_TO:
            return cls(array, _SortedLookup(array))
        return cls(array, {str(value): row for row, value in enumerate(array.tolist())})

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids.tolist())

    def row(self, external_id: str) -> int:
        """The row of one id.

        Raises:
            UnknownIdError: the id is not in the map.
        """
        try:
            return self._index[external_id]
        except KeyError:
            raise UnknownIdError(f"id {external_id!r} is not in the model") from None

    def get(self, external_id: str) -> int | None:
        """The row of one id, or None when it is not in the map."""
        return self._index.get(external_id)

    def rows(self, external_ids: Iterable[str]) -> NDArray[np.intp]:
        """The rows of ids that are in the map, in input order; unknown ids are skipped."""
        index = self._index
        return np.fromiter(
            (row for row in (index.get(value) for value in external_ids) if row is not None),
            dtype=np.intp,
        )

    def id_at(self, row: int) -> str:
        """The id stored at ``row``."""
        return str(self.ids[row])

    def same_ids_as(self, other: IdMap) -> bool:
        """Whether both maps hold the same ids, so their rows correspond one to one."""
        return other is self or self._alignment(other)[1]

    def rows_in(self, other: IdMap) -> NDArray[np.intp]:
        """For each of this map's ids, its row in ``other`` (-1 where ``other`` lacks it).

        Cached per ``other`` (weakly), so aligning a model to a catalogue costs one dict
        pass per pair of maps, not one per request.
        """
        return self._alignment(other)[0]

    def _alignment(self, other: IdMap) -> tuple[NDArray[np.intp], bool]:
        cached = self._alignments.get(other)
        if cached is None:
            lookup = other._index.get
            rows = np.fromiter(
                (lookup(value, -1) for value in self.ids.tolist()), dtype=np.intp, count=len(self)
            )
            rows.setflags(write=False)
            identical = len(other) == len(self) and bool((rows == np.arange(len(self))).all())
            cached = (rows, identical)
            self._alignments[other] = cached
        return cached


# Ids per block of a _SortedLookup: one block of 64-character keys is 64 KB, what the
# kernel maps in at once when a memory-mapped page is first read.
_BLOCK: Final = 256


class _SortedLookup(Mapping[str, int]):
    """id -> row by binary search in sorted unique ids, for maps too large for a dict.

    The first id of every block of ``_BLOCK`` is copied into memory (1/256 of the ids),
    and the search in the ids themselves stays inside one block: on a memory-mapped
    array a lookup reads one block's pages, not one page per step of the search.
    """

    def __init__(self, ids: NDArray[np.str_]) -> None:
        self._ids = ids
        self._fences = np.array(ids[::_BLOCK])

    def __getitem__(self, key: str) -> int:
        # numpy compares at the array's width: the equality check below catches a
        # longer key that only shares its start with a stored id.
        if isinstance(key, str) and len(self._ids):
            block = max(int(np.searchsorted(self._fences, key, side="right")) - 1, 0)
            start = block * _BLOCK
            window = self._ids[start : start + _BLOCK]
            row = start + int(np.searchsorted(window, key))
            if row < len(self._ids) and str(self._ids[row]) == key:
                return row
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids.tolist())

    def __len__(self) -> int:
        return len(self._ids)


def as_str_array(values: Iterable[str] | NDArray[np.str_], name: str) -> NDArray[np.str_]:
    """``values`` as a 1-D numpy string array; rejects non-strings instead of str()-ing them."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind != "U":
            raise InvalidInputError(f"{name} must hold strings, got dtype {values.dtype}")
        if values.ndim != 1:
            raise InvalidInputError(f"{name} must be 1-D, got shape {values.shape}")
        return values
    items = list(values)
    for position, value in enumerate(items):
        if not isinstance(value, str):
            raise InvalidInputError(f"{name}[{position}] must be a str, got {type(value).__name__}")
        # numpy strings drop trailing NULs, which would silently merge two distinct ids.
        if "\x00" in value:
            raise InvalidInputError(f"{name}[{position}] contains a NUL character")
    return np.asarray(items, dtype=np.str_) if items else np.empty(0, dtype="<U1")
