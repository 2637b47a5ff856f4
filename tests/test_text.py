"""Clean text and bounded JSON: the shared rules every input path applies."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rasa_personalize.json_input import JsonBodyError, json_depth_exceeds, load_json_body
from rasa_personalize.text import (
    _INVISIBLE,
    MAX_TEXT_LENGTH,
    bounded_text,
    clean_text,
    has_control_characters,
    strip_control_characters,
)


@pytest.mark.parametrize(
    ("text", "free_text", "expected"),
    [
        # NUL is a control character everywhere
        ("a\x00b", True, True),
        # so are DEL and the C1 range
        ("a\x7fb", False, True),
        ("a\x85b", False, True),
        # tab and line breaks are whitespace in free text ...
        ("a\tb\nc\r", True, False),
        # ... and control characters in an id or a label
        ("a\tb", False, True),
        # plain and non-ASCII text is fine
        ("Zürich \u2013 東京", False, False),
    ],
)
def test_control_characters(text: str, free_text: bool, expected: bool) -> None:
    """What counts as a control character depends on whether the text is free text."""
    assert has_control_characters(text, free_text=free_text) is expected


def test_strip_and_clean() -> None:
    """Stripping drops the controls; clean_text also collapses whitespace and trims."""
    assert strip_control_characters("mob\x00ile\n") == "mobile"
    assert strip_control_characters("two\nlines\x00", free_text=True) == "two\nlines"
    assert clean_text("  Ber\x00lin \t\u200b Mitte ") == "Berlin Mitte"
    assert clean_text("\x00\x01") is None


def test_bounded_text_cuts_and_ignores_non_text() -> None:
    """Tracker strings are cut at MAX_TEXT_LENGTH; other types read as absent."""
    assert bounded_text("x" * 10_000) == "x" * MAX_TEXT_LENGTH
    assert bounded_text("  shoes\x00 ") == "shoes"
    assert bounded_text(["shoes"]) is None
    assert bounded_text("\x00") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # deeper than the interpreter's recursion limit: RecursionError inside json
        (b"[" * 10_000 + b"]" * 10_000, "body is nested deeper than 64 levels"),
        # parseable, but deeper than the bound
        (b'{"a":' * 65 + b"1" + b"}" * 65, "body is nested deeper than 64 levels"),
        # not JSON
        (b"{not json", "body is not valid JSON"),
        # not UTF-8
        (b'"\xff"', "body is not valid JSON"),
    ],
)
def test_json_bodies_that_are_refused(body: bytes, message: str) -> None:
    """Malformed or too-deep bodies raise one error type, quoting none of the body."""
    with pytest.raises(JsonBodyError) as caught:
        load_json_body(body)
    assert str(caught.value) == message


def test_json_at_the_depth_bound_is_read() -> None:
    """64 levels of nesting are accepted as they are."""
    body = b"[" * 64 + b"]" * 64
    value = load_json_body(body)
    for _ in range(63):
        value = value[0]
    assert value == []


@pytest.mark.parametrize(
    ("value", "deepest"),
    [
        (1, 0),
        ("text", 0),
        ({}, 1),
        ([1, "a", None], 1),
        ({"a": [1, {"b": []}], "c": 2}, 4),
        ([[], [[[]]], {"x": {}}], 4),
    ],
)
def test_json_depth_is_the_deepest_branch(value: object, deepest: int) -> None:
    """Depth counts containers on the deepest path, whichever branch holds it."""
    assert json_depth_exceeds(value, deepest) is False
    if deepest:
        assert json_depth_exceeds(value, deepest - 1) is True


# JSON values whose strings hold brackets, quotes and backslashes: what the check on the
# body's bytes must see through (or hand over to the walk).
_TRICKY_TEXT = st.text(alphabet="ab :,", max_size=6) | st.text(alphabet='ab[]{}"\\:, ', max_size=6)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TRICKY_TEXT, inner, max_size=4),
    max_leaves=40,
)


@given(value=_JSON_VALUES, limit=st.integers(min_value=0, max_value=12), pretty=st.booleans())
def test_body_depth_check_agrees_with_the_walk(value: object, limit: int, pretty: bool) -> None:
    """A body is refused for depth exactly when the walk over its decoded value says so,
    whatever its strings hold and however it is spaced."""
    body = json.dumps(value, indent=1 if pretty else None).encode()
    if json_depth_exceeds(value, limit):
        with pytest.raises(JsonBodyError):
            load_json_body(body, max_depth=limit)
    else:
        assert load_json_body(body, max_depth=limit) == value


@pytest.mark.parametrize(
    "body",
    [
        # a bracket inside a string is text, not nesting
        b'{"a": "]]]]]]]]", "b": [[[]]]}',
        # an escaped quote, then brackets that are text
        b'{"a": "x\\" [[[[[[[[[", "b": 1}',
        # an escaped backslash before the closing quote
        b'["\\\\", [[[[1]]]]]',
    ],
)
def test_brackets_in_strings_do_not_count(body: bytes) -> None:
    """Nesting is counted in the document's structure only."""
    value = load_json_body(body, max_depth=5)
    assert json_depth_exceeds(value, 5) is False
    with pytest.raises(JsonBodyError):
        load_json_body(body, max_depth=_depth(json.loads(body)) - 1)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _clean_text_slowly(value: str) -> str | None:
    text = re.sub(
        r"\s+", " ", strip_control_characters(value.translate(_INVISIBLE), free_text=True)
    )
    return text.strip() or None


@given(text=st.text(max_size=12) | st.text(alphabet=" a\t\u00a0\u200b\u2028\x85\x00", max_size=8))
def test_clean_text_agrees_with_its_definition(text: str) -> None:
    """The quick path for plain labels gives what the full cleaning gives."""
    assert clean_text(text) == _clean_text_slowly(text)
