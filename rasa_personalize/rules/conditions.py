"""The condition language: a tree of small frozen dataclasses, compiled to closures.

A condition is a :class:`Compare` (``field op value``) or a combination of conditions with
:class:`AllOf`, :class:`AnyOf` and :class:`Not`. :func:`compile_condition` turns a tree into
one ``Facts -> bool`` function made of closures (no ``eval``); :func:`why_not` walks the
same tree to say, in words, why a condition does not hold.

Semantics, the same for every field:

- Text compares without regard to case: ``segment: Loyal`` matches ``loyal``.
- ``eq`` needs the same kind of value: the text ``"1"`` is not the number 1, and ``true``
  is not 1. ``ne`` is exactly "not ``eq``", so it holds for an unknown value.
- ``in`` holds when the value is one of the listed ones; on a list field (``tags``) when
  any element is. ``not_in`` is exactly "not ``in``".
- ``gt``, ``gte``, ``lt``, ``lte`` and ``between`` (both ends included) hold only for a
  number; an unknown value never passes them.
- ``contains``: on a list, "has this element"; on text, "has this substring".
- ``exists: true`` holds when the value is known and not empty; ``exists: false`` is the
  opposite.

A compiled condition never raises, whatever types the facts hold: a wrong type just does
not match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, TypeGuard

from rasa_personalize.rules.facts import Facts, getter

Operator = Literal[
    "eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "contains", "exists"
]  # fmt: skip
OPERATORS: Final[tuple[Operator, ...]] = (
    "eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "contains", "exists",
)  # fmt: skip

Predicate: TypeAlias = Callable[[Facts], bool]
Scalar: TypeAlias = str | int | float | bool


@dataclass(frozen=True)
class Compare:
    """``field op value``.

    ``value`` is a scalar for eq, ne, gt, gte, lt, lte and contains; a tuple of scalars for
    in and not_in; a ``(low, high)`` pair for between; a bool for exists.
    """

    field: str
    op: Operator
    value: Any = True
    line: int | None = None


@dataclass(frozen=True)
class AllOf:
    """Every condition holds (``all: [...]``)."""

    conditions: tuple[Condition, ...]
    line: int | None = None


@dataclass(frozen=True)
class AnyOf:
    """At least one condition holds (``any: [...]``)."""

    conditions: tuple[Condition, ...]
    line: int | None = None


@dataclass(frozen=True)
class Not:
    """The condition does not hold (``not: {...}``)."""

    condition: Condition
    line: int | None = None


Condition: TypeAlias = Compare | AllOf | AnyOf | Not

_COLLECTIONS: Final = (list, tuple, set, frozenset)
_SIZED: Final = (str, list, tuple, set, frozenset, dict)


_NUMBERS: Final = (int, float)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, _NUMBERS) and not isinstance(value, bool)


def _same(expected: Scalar) -> Callable[[Any], bool]:
    """A test "this value equals ``expected``", by kind: text, bool or number."""
    if isinstance(expected, str):
        folded = expected.casefold()
        return lambda value: isinstance(value, str) and value.casefold() == folded
    if isinstance(expected, bool):
        return lambda value: isinstance(value, bool) and value == expected
    return lambda value: _is_number(value) and value == expected


@dataclass(frozen=True)
class _Members:
    """A set of scalars split by kind, so ``True`` never counts as 1 and case is ignored."""

    texts: frozenset[str]
    numbers: frozenset[float]
    bools: frozenset[bool]

    @classmethod
    def of(cls, values: Sequence[Scalar]) -> _Members:
        return cls(
            frozenset(v.casefold() for v in values if isinstance(v, str)),
            frozenset(v for v in values if _is_number(v)),
            frozenset(v for v in values if isinstance(v, bool)),
        )

    def has(self, value: Any) -> bool:
        if isinstance(value, str):
            return value.casefold() in self.texts
        if isinstance(value, bool):
            return value in self.bools
        if isinstance(value, _NUMBERS):
            return value in self.numbers
        return False


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, _SIZED) and len(value) == 0)


def _value_test(op: Operator, expected: Any) -> Callable[[Any], bool]:  # noqa: PLR0911  # one per operator
    """The test one value must pass for ``op expected``."""
    if op in ("eq", "ne"):
        same = _same(expected)
        return same if op == "eq" else lambda value: not same(value)
    if op in ("in", "not_in"):
        members = _Members.of(expected)

        def is_in(value: Any) -> bool:
            if isinstance(value, _COLLECTIONS):
                return any(members.has(item) for item in value)
            return members.has(value)

        return is_in if op == "in" else lambda value: not is_in(value)
    if op == "gt":
        return lambda value: (
            isinstance(value, _NUMBERS) and not isinstance(value, bool) and value > expected
        )
    if op == "gte":
        return lambda value: (
            isinstance(value, _NUMBERS) and not isinstance(value, bool) and value >= expected
        )
    if op == "lt":
        return lambda value: (
            isinstance(value, _NUMBERS) and not isinstance(value, bool) and value < expected
        )
    if op == "lte":
        return lambda value: (
            isinstance(value, _NUMBERS) and not isinstance(value, bool) and value <= expected
        )
    if op == "between":
        low, high = expected
        return lambda value: (
            isinstance(value, _NUMBERS) and not isinstance(value, bool) and low <= value <= high
        )
    if op == "contains":
        element = _same(expected)
        needle = expected.casefold() if isinstance(expected, str) else None

        def contains(value: Any) -> bool:
            if isinstance(value, _COLLECTIONS):
                return any(element(item) for item in value)
            return needle is not None and isinstance(value, str) and needle in value.casefold()

        return contains
    if op == "exists":
        wanted = bool(expected)
        return lambda value: _present(value) is wanted
    raise ValueError(f"unknown operator {op!r}")


def compile_condition(condition: Condition) -> Predicate:
    """One ``Facts -> bool`` function for the whole tree; it never raises on any facts."""
    if isinstance(condition, Compare):
        read = getter(condition.field)
        test = _value_test(condition.op, condition.value)
        return lambda facts: test(read(facts))
    if isinstance(condition, Not):
        inner = compile_condition(condition.condition)
        return lambda facts: not inner(facts)
    parts = tuple(compile_condition(part) for part in condition.conditions)
    if isinstance(condition, AllOf):
        return _all_of(parts)
    return _any_of(parts)


# Rules are evaluated for every conversation: unrolled pairs avoid a loop per call.
def _all_of(parts: tuple[Predicate, ...]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda facts: first(facts) and second(facts)

    def all_hold(facts: Facts) -> bool:
        for part in parts:  # noqa: SIM110  # all() would add a generator per call
            if not part(facts):
                return False
        return True

    return all_hold


def _any_of(parts: tuple[Predicate, ...]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda facts: first(facts) or second(facts)

    def any_holds(facts: Facts) -> bool:
        for part in parts:  # noqa: SIM110  # any() would add a generator per call
            if part(facts):
                return True
        return False

    return any_holds


def show(value: Any) -> str:
    """A value as a rule author would write it: ``'loyal'``, ``15``, ``unknown``."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, _COLLECTIONS):
        text = "[" + ", ".join(show(item) for item in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_SYMBOLS: Final[dict[str, str]] = {
    "eq": "is", "ne": "is not", "in": "in", "not_in": "not in", "gt": ">", "gte": ">=",
    "lt": "<", "lte": "<=", "contains": "contains",
}  # fmt: skip


def describe(condition: Condition) -> str:
    """The condition in one line, e.g. ``segment is 'loyal' and loyalty_tier in [...]``."""
    if isinstance(condition, Compare):
        if condition.op == "between":
            low, high = condition.value
            return f"{condition.field} between {show(low)} and {show(high)}"
        if condition.op == "exists":
            return f"{condition.field} {'is known' if condition.value else 'is unknown'}"
        return f"{condition.field} {_SYMBOLS[condition.op]} {show(condition.value)}"
    if isinstance(condition, Not):
        return f"not ({describe(condition.condition)})"
    joiner = " and " if isinstance(condition, AllOf) else " or "
    return "(" + joiner.join(describe(part) for part in condition.conditions) + ")"


def _need(condition: Compare) -> str:
    """What a comparison needs, in words: "needs 'price_sensitive'"."""
    value, op = condition.value, condition.op
    phrases: dict[str, Callable[[], str]] = {
        "eq": lambda: show(value),
        "ne": lambda: f"anything but {show(value)}",
        "in": lambda: "one of " + ", ".join(show(item) for item in value),
        "not_in": lambda: "none of " + ", ".join(show(item) for item in value),
        "gt": lambda: f"more than {show(value)}",
        "gte": lambda: f"at least {show(value)}",
        "lt": lambda: f"less than {show(value)}",
        "lte": lambda: f"at most {show(value)}",
        "between": lambda: f"between {show(value[0])} and {show(value[1])}",
        "contains": lambda: f"it to contain {show(value)}",
        "exists": lambda: "a known value" if value else "it to be unknown",
    }
    return "rule needs " + phrases[op]()


def why_not(condition: Condition, facts: Facts) -> str | None:
    """``None`` if the condition holds for ``facts``, else why not, in words.

    Example: ``segment is 'loyal', rule needs 'price_sensitive'``. For ``all`` every
    failing part is given, joined by ``; ``.
    """
    if compile_condition(condition)(facts):
        return None
    if isinstance(condition, Compare):
        actual = getter(condition.field)(facts)
        return f"{condition.field} is {show(actual)}, {_need(condition)}"
    if isinstance(condition, Not):
        return f"rule needs not ({describe(condition.condition)}), but it holds"
    reasons = [why_not(part, facts) for part in condition.conditions]
    failed = [reason for reason in reasons if reason is not None]
    if isinstance(condition, AllOf):
        return "; ".join(failed)
    return "none of the alternatives holds: " + "; ".join(failed)
