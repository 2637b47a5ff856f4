"""Normalisation of imported values: one function per kind of field.

Every function takes the raw cell (text from a CSV, or any JSON value), returns the
normalised value or None for an empty cell, and raises :class:`FieldError` with a reason
that never quotes the value: a cell may hold someone's name, address or phone number.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Final

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import geocoder

# Shared with the webhook and the events API; imported here for the normalisers below.
from rasa_personalize.clock import from_iso
from rasa_personalize.text import clean_text

LOYALTY_TIERS: Final = ("none", "silver", "gold", "platinum")
GENDERS: Final = ("female", "male", "non_binary")
MAX_NAME_LENGTH: Final = 200
MAX_CITY_LENGTH: Final = 128  # the customers.city column
MAX_CATEGORY_LENGTH: Final = 64
EARLIEST_DATE: Final = datetime(1900, 1, 1, tzinfo=timezone.utc)

# Obvious spellings only; anything else is rejected rather than guessed.
_TIER_SYNONYMS: Final[Mapping[str, str]] = {
    "none": "none", "no": "none", "basic": "none", "standard": "none", "regular": "none",
    "silver": "silver", "gold": "gold", "platinum": "platinum", "plat": "platinum",
}  # fmt: skip
_GENDER_SYNONYMS: Final[Mapping[str, str]] = {
    "f": "female", "female": "female", "w": "female", "woman": "female",
    "m": "male", "male": "male", "man": "male",
    "non_binary": "non_binary", "nonbinary": "non_binary", "nb": "non_binary",
    "enby": "non_binary", "x": "non_binary", "d": "non_binary", "diverse": "non_binary",
}  # fmt: skip
# Cells that mean "not given": stored as unknown, not rejected.
_UNKNOWN: Final = frozenset({"", "-", "n/a", "na", "null", "none", "unknown", "?"})
_GENDER_UNKNOWN: Final = _UNKNOWN | {"prefer_not_to_say", "not_specified", "unspecified"}
# Codes people write that are not ISO 3166-1 alpha-2.
_COUNTRY_SYNONYMS: Final[Mapping[str, str]] = {"UK": "GB", "EL": "GR"}
_EXTRA_COUNTRY_NAMES: Final[Mapping[str, str]] = {
    "usa": "US", "united states of america": "US", "america": "US", "england": "GB",
    "scotland": "GB", "wales": "GB", "great britain": "GB", "britain": "GB",
    "holland": "NL", "the netherlands": "NL", "czech republic": "CZ",
}  # fmt: skip

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_EPOCH = re.compile(r"^[+-]?\d{9,10}(?:\.\d+)?$")
_TIME = r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?"
_YEAR_FIRST = re.compile(rf"^(\d{{4}})[/.](\d{{1,2}})[/.](\d{{1,2}}){_TIME}$")
_DOTTED_DAY_FIRST = re.compile(rf"^(\d{{1,2}})\.(\d{{1,2}})\.(\d{{4}}){_TIME}$")
_SLASHED = re.compile(rf"^(\d{{1,2}})[/-](\d{{1,2}})[/-](\d{{4}}){_TIME}$")


class FieldError(ValueError):
    """One field of one row is invalid; ``reason`` quotes no value."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _recased(text: str) -> str:
    # Only text in one case is recased: "ANNA MÜLLER" and "anna müller" say nothing about
    # the right capitals, "McArthur" and "van der Berg" do and are kept.
    return text.title() if text.isupper() or text.islower() else text


def normalise_name(value: object) -> str | None:
    """A person's name for display: whitespace collapsed, all-caps/all-lower recased."""
    text = clean_text(value)
    if text is None:
        return None
    if len(text) > MAX_NAME_LENGTH:
        raise FieldError("name", f"is longer than {MAX_NAME_LENGTH} characters")
    return _recased(text)


def name_match_key(name: str) -> str:
    """A name reduced for comparison: no accents, case, punctuation or extra spaces."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(re.sub(r"[^\w]+", " ", plain.casefold()).split())


def normalise_email(value: object) -> str | None:
    """A syntactically valid e-mail address, lower-cased (deliverability is not checked)."""
    text = clean_text(value)
    if text is None:
        return None
    if text.lower().startswith("mailto:"):
        text = text[7:]
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        raise FieldError("email", "is not a valid e-mail address") from None
    return checked.normalized.lower()


def normalise_phone(value: object, region: str) -> str | None:
    """A phone number in E.164 (+4930123456); numbers without +country code use ``region``."""
    text = clean_text(value)
    if text is None:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]  # the international prefix of most of the world
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise FieldError("phone", "is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise FieldError(
            "phone",
            f"is not a valid phone number (numbers without +country code are read as {region})",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_region(region: str) -> str:
    """An upper-cased region code that phone numbers can be parsed in.

    Raises:
        FieldError: not a region phonenumbers knows.
    """
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise FieldError("default region", "is not an ISO 3166-1 alpha-2 region code")
    return code


def _key(value: object) -> str | None:
    text = clean_text(value)
    if text is None:
        return None
    return re.sub(r"[\s-]+", "_", text.lower())


def normalise_tier(value: object) -> str | None:
    """One of none, silver, gold, platinum (case-insensitive; "plat", "basic" ...)."""
    key = _key(value)
    if key is None:
        return None
    tier = _TIER_SYNONYMS.get(key)
    if tier is None:
        raise FieldError("loyalty_tier", f"is not one of {', '.join(LOYALTY_TIERS)}")
    return tier


def normalise_gender(value: object) -> str | None:
    """female, male or non_binary (f/m/w/nb/x/diverse ...); "unknown" and the like -> None."""
    key = _key(value)
    if key is None or key in _GENDER_UNKNOWN:
        return None
    gender = _GENDER_SYNONYMS.get(key)
    if gender is None:
        raise FieldError("gender", f"is not one of {', '.join(GENDERS)} (or f, m, nb, x)")
    return gender


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    names = {
        name.casefold(): code
        for code in phonenumbers.SUPPORTED_REGIONS
        if (name := geocoder._region_display_name(code, "en"))  # the only name table at hand
    }
    names.update(_EXTRA_COUNTRY_NAMES)
    return names


def normalise_country(value: object) -> str | None:
    """An ISO 3166-1 alpha-2 code, upper-cased; English country names are translated."""
    text = clean_text(value)
    # "NA" is Namibia here, not "not available".
    if text is None or (text.lower() in _UNKNOWN and text.lower() != "na"):
        return None
    code = _COUNTRY_SYNONYMS.get(text.upper(), text.upper())
    if len(code) == 2 and code in phonenumbers.SUPPORTED_REGIONS:
        return code
    named = _country_names().get(text.casefold().removeprefix("the ").strip())
    if named is None:
        named = _country_names().get(text.casefold())
    if named is None:
        raise FieldError("country", "is not an ISO 3166-1 alpha-2 code or an English country name")
    return named


def normalise_city(value: object) -> str | None:
    """A city as given, whitespace collapsed, all-caps/all-lower recased."""
    text = clean_text(value)
    if text is None or text.lower() in _UNKNOWN:
        return None
    if len(text) > MAX_CITY_LENGTH:
        raise FieldError("city", f"is longer than {MAX_CITY_LENGTH} characters")
    return _recased(text)


def normalise_category(value: object) -> str | None:
    """A category code as a lower-case slug: "Home & Garden" -> "home_garden"."""
    text = clean_text(value)
    if text is None:
        return None
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("_", ascii_text.lower()).strip("_")
    if not slug:
        raise FieldError("category", "has no letters or digits")
    if len(slug) > MAX_CATEGORY_LENGTH:
        raise FieldError("category", f"is longer than {MAX_CATEGORY_LENGTH} characters")
    return slug


def normalise_age(value: object) -> int | None:
    """A whole number of years, 0 to 149 ("42" and "42.0" both read as 42)."""
    if isinstance(value, bool):
        raise FieldError("age", "is not a whole number")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = clean_text(value)
        if text is None:
            return None
        try:
            number = float(text)
        except ValueError:
            raise FieldError("age", "is not a whole number") from None
    if not math.isfinite(number) or not number.is_integer():
        raise FieldError("age", "is not a whole number")
    if not 0 <= number < 150:
        raise FieldError("age", "is not between 0 and 149")
    return int(number)


def _moment(parts: tuple[str | None, ...], year: int, month: int, day: int, field: str) -> datetime:
    hour, minute, second = (int(part) if part else 0 for part in parts)
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        raise FieldError(field, "is not a real date or time") from None


def parse_timestamp(value: object, *, dayfirst: bool, field: str) -> datetime:
    """An aware UTC datetime from the forms exports use.

    ISO 8601 (``2026-03-01``, ``2026-03-01T12:00:00+01:00``, ``...Z``), ``2026/03/01``,
    ``01.03.2026`` (day first), ``03/01/2026`` or ``03-01-2026`` (month first unless
    ``dayfirst``; a part above 12 settles it either way), optionally with ``HH:MM[:SS]``,
    and epoch seconds. Times without a zone are UTC.

    Raises:
        FieldError: none of those forms, or not a real date.
    """
    if isinstance(value, bool):
        raise FieldError(field, "is not a date")
    if isinstance(value, int | float):
        return _from_epoch(float(value), field)
    text = clean_text(value)
    if text is None:
        raise FieldError(field, "is required")
    if _EPOCH.match(text):
        return _from_epoch(float(text), field)
    moment = from_iso(text)
    if moment is None:
        moment = _from_pattern(text, dayfirst=dayfirst, field=field)
    if moment is not None:
        return moment
    raise FieldError(
        field, "is not a date in a known form (ISO 8601, YYYY/MM/DD, DD.MM.YYYY, epoch seconds)"
    )


def _from_pattern(text: str, *, dayfirst: bool, field: str) -> datetime | None:
    if match := _YEAR_FIRST.match(text):
        year, month, day = (int(part) for part in match.group(1, 2, 3))
    elif match := _DOTTED_DAY_FIRST.match(text):
        day, month, year = (int(part) for part in match.group(1, 2, 3))
    elif match := _SLASHED.match(text):
        first, second, year = (int(part) for part in match.group(1, 2, 3))
        day_first = dayfirst
        if first > 12 >= second:
            day_first = True
        elif second > 12 >= first:
            day_first = False
        day, month = (first, second) if day_first else (second, first)
    else:
        return None
    return _moment(match.group(4, 5, 6), year, month, day, field)


def _from_epoch(seconds: float, field: str) -> datetime:
    if not math.isfinite(seconds):
        raise FieldError(field, "is not a finite number of epoch seconds")
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise FieldError(field, "is out of range for epoch seconds") from None


def parse_signup_date(value: object, *, dayfirst: bool, now: datetime) -> datetime | None:
    """A customer's signup time (``created_at``): not in the future, not before 1900."""
    if clean_text(value) is None and not isinstance(value, int | float):
        return None
    moment = parse_timestamp(value, dayfirst=dayfirst, field="created_at")
    if moment > now + timedelta(days=1):
        raise FieldError("created_at", "is in the future")
    if moment < EARLIEST_DATE:
        raise FieldError("created_at", "is before 1900")
    return moment
