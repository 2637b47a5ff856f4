"""Text from outside, made safe: control characters, whitespace and length bounds.

One place for what every input path (webhook, events API, imports) means by "clean
text". Control characters (NUL above all) are refused by PostgreSQL and break logs and
CSV exports; the hot path strips them, the events API and imports reject the field. A
tracker is sent by whoever reaches the webhook, so the hot path also bounds how much
text and how many list items it reads from one.
"""

from __future__ import annotations

import re
from typing import Final

# Longest string the hot path reads from a tracker (slot values, entities, metadata);
# longer values are ignored or cut, as each reader documents.
MAX_TEXT_LENGTH: Final = 256
# Most items read from a list slot such as recommended_products (a page shows a handful).
MAX_LIST_ITEMS: Final = 50

# C0 controls but tab, line feed and carriage return; DEL; C1 controls.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# The same plus tab, line feed and carriage return: for labels and ids, not free text.
_CONTROL_OR_BREAK: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WHITESPACE: Final = re.compile(r"\s+")
_INVISIBLE: Final = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def has_control_characters(text: str, *, free_text: bool = False) -> bool:
    """Whether ``text`` holds a control character (NUL included).

    Args:
        text: the value to check.
        free_text: tab, line feed and carriage return are ordinary whitespace here
            (a message, a cell of prose); without it they count as control characters.
    """
    pattern = _CONTROL if free_text else _CONTROL_OR_BREAK
    return pattern.search(text) is not None


def strip_control_characters(text: str, *, free_text: bool = False) -> str:
    """``text`` without control characters (see :func:`has_control_characters`)."""
    pattern = _CONTROL if free_text else _CONTROL_OR_BREAK
    return pattern.sub("", text)


def clean_text(value: object) -> str | None:
    """Trim, collapse inner whitespace, drop invisible and control characters; empty -> None."""
    if value is None:
        return None
    if type(value) is str and value.isprintable() and "  " not in value:
        # The usual label or id, at C speed: "printable" rules out control characters,
        # the invisible ones (format characters) and every whitespace but the space, so
        # there is nothing to drop and, without two spaces in a row, nothing to collapse.
        return value.strip() or None
    text = _WHITESPACE.sub(" ", _CONTROL.sub("", str(value).translate(_INVISIBLE))).strip()
    return text or None


def bounded_text(value: object, max_length: int = MAX_TEXT_LENGTH) -> str | None:
    """A tracker string as the hot path reads it: clean, at most ``max_length`` characters.

    Not a string, or nothing left after cleaning -> None. Longer text is cut, never an
    error: a shopper's message must not fail because a channel sent too much.
    """
    if not isinstance(value, str):
        return None
    # Cut before cleaning too: cleaning a megabyte to keep 256 characters is wasted work.
    text = clean_text(value[: max_length * 4])
    if text is None:
        return None
    return text[:max_length].rstrip() or None
