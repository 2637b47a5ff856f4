"""Reading import files: CSV with a header, or JSON Lines; rows keep their line number.

Whole-file problems (missing file, not UTF-8, a bad header) raise
:class:`ImportFileError` before anything is written; a bad row becomes a
:class:`~rasa_personalize.imports.report.Rejection` and the import goes on.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.imports.report import Rejection
from rasa_personalize.text import has_control_characters, strip_control_characters

# A cell longer than this is not data from a shop system (csv's own default is 128 KiB).
MAX_FIELD_BYTES: Final = 64 * 1024
_DELIMITERS: Final = (",", ";", "\t", "|")


def control_character_rejection(line: int, values: Mapping[str, Any]) -> Rejection | None:
    """A rejection naming the first column whose text holds a control character, if any.

    NUL and the like are refused by PostgreSQL and corrupt exports; tab and line breaks
    are ordinary whitespace in a cell (the normalisers collapse them).
    """
    for field, value in values.items():
        if isinstance(value, str) and has_control_characters(value, free_text=True):
            # A JSON key is the caller's text too: shown cleaned and short.
            return Rejection(
                line, strip_control_characters(field)[:40], "contains a control character"
            )
    return None


class ImportFileError(InvalidInputError):
    """The file as a whole cannot be imported; the message names the file and line."""


@dataclass(frozen=True)
class SourceRow:
    """One record: the line it starts on (the header is line 1) and its cells by field."""

    line: int
    values: dict[str, Any]


def canonical_name(raw: str, aliases: Mapping[str, str]) -> str:
    """A header or key as a field name: case, spaces and hyphens do not matter."""
    name = re.sub(r"[\s\-]+", "_", raw.replace("\ufeff", "").strip().lower())
    return aliases.get(name, name)


def check_readable(path: Path) -> int:
    """Check the file exists and is UTF-8 text; returns its number of lines.

    Raises:
        ImportFileError: missing, unreadable or not UTF-8 (with the line of the first bad byte).
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    last = b""
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as error:
                    line = lines + chunk[: error.start].count(b"\n") + 1
                    raise ImportFileError(f"{path}: line {line}: not UTF-8 text") from None
                lines += chunk.count(b"\n")
                last = chunk[-1:]
            decoder.decode(b"", final=True)
    except FileNotFoundError:
        raise ImportFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path}: is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ImportFileError(f"{path}: ends in the middle of a UTF-8 character") from None
    except OSError as error:
        raise ImportFileError(f"{path}: cannot be read ({error.strerror})") from None
    if lines == 0 and path.stat().st_size == 0:
        return 0
    return lines + (0 if lines and last == b"\n" else 1)


class CsvSource:
    """A CSV file whose header names the fields (delimiter , ; tab or |, guessed).

    Args:
        path: The file.
        known: Field names the importer understands.
        aliases: Other header spellings -> field name.
        required: Fields the header must have.

    Raises:
        ImportFileError: on opening, for an empty file, an unknown, repeated or missing
            column (named, with the line).
    """

    def __init__(
        self, path: Path, known: frozenset[str], aliases: Mapping[str, str], required: set[str]
    ) -> None:
        self.path = path
        self.lines = check_readable(path)
        with path.open(encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
        if not first.strip():
            raise ImportFileError(f"{path}: line 1: no header (the file is empty or starts blank)")
        self.delimiter = max(_DELIMITERS, key=first.count) if any(
            d in first for d in _DELIMITERS) else ","  # fmt: skip
        header = next(csv.reader([first], delimiter=self.delimiter))
        self.fields: list[str] = []
        for raw in header:
            name = canonical_name(raw, aliases)
            shown = raw.strip()[:40]
            if not name:
                raise ImportFileError(f"{path}: line 1: a column has no name")
            if name not in known:
                raise ImportFileError(
                    f"{path}: line 1: unknown column {shown!r} (known: {', '.join(sorted(known))})"
                )
            if name in self.fields:
                raise ImportFileError(f"{path}: line 1: column {name!r} appears twice")
            self.fields.append(name)
        missing = sorted(required - set(self.fields))
        if missing:
            raise ImportFileError(f"{path}: line 1: missing column {missing[0]!r}")

    @property
    def rows_expected(self) -> int:
        """About how many data rows there are (lines minus the header), for progress."""
        return max(self.lines - 1, 0)

    def rows(self) -> Iterator[SourceRow | Rejection]:
        """The data rows, or a rejection for a row with the wrong number of cells."""
        csv.field_size_limit(MAX_FIELD_BYTES)
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=self.delimiter)
            next(reader)
            while True:
                line = reader.line_num + 1
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    # The reader cannot resynchronise after a broken record.
                    reason = "is longer than 64 KiB" if "larger than field limit" in str(error) \
                        else "is not valid CSV (an unclosed quote?)"  # fmt: skip
                    raise ImportFileError(f"{self.path}: line {line}: a record {reason}") from None
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) != len(self.fields):
                    yield Rejection(
                        line, "row", f"has {len(cells)} cells, the header has {len(self.fields)}"
                    )
                    continue
                values = dict(zip(self.fields, cells, strict=True))
                yield control_character_rejection(line, values) or SourceRow(line, values)


class JsonLinesSource:
    """A JSON Lines file: one JSON object per line; blank lines are skipped."""

    def __init__(self, path: Path, aliases: Mapping[str, str]) -> None:
        self.path = path
        self.lines = check_readable(path)
        self._aliases = aliases

    @property
    def rows_expected(self) -> int:
        """About how many rows there are, for progress."""
        return self.lines

    def rows(self) -> Iterator[SourceRow | Rejection]:
        """The objects, or a rejection for a line that is not a JSON object."""
        with self.path.open(encoding="utf-8-sig") as handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    yield Rejection(line, "line", "is not valid JSON")
                    continue
                if not isinstance(value, dict):
                    yield Rejection(
                        line, "line", f"is a JSON {type(value).__name__}, not an object"
                    )
                    continue
                values = {canonical_name(str(k), self._aliases): v for k, v in value.items()}
                yield control_character_rejection(line, values) or SourceRow(line, values)
