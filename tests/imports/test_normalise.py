"""Normalisation of imported cells: whitespace, case, e-mail, phone, dates, codes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from rasa_personalize.imports.normalise import (
    FieldError,
    check_region,
    clean_text,
    name_match_key,
    normalise_age,
    normalise_category,
    normalise_city,
    normalise_country,
    normalise_email,
    normalise_gender,
    normalise_name,
    normalise_phone,
    normalise_tier,
    parse_signup_date,
    parse_timestamp,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


def test_text_is_trimmed_and_collapsed() -> None:
    """Runs of spaces, tabs, no-break spaces and zero-width characters collapse; blank is None."""
    assert clean_text("  Anna \t\u00a0 Maria\u200b  ") == "Anna Maria"
    assert clean_text("   ") is None
    assert clean_text(None) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  anna   MÜLLER ", "anna MÜLLER"),  # mixed case: kept as given, spaces collapsed
        ("ANNA MÜLLER", "Anna Müller"),  # all caps recased
        ("anna müller", "Anna Müller"),  # all lower recased
        ("Ronald McArthur", "Ronald McArthur"),  # inner capitals kept
        ("", None),  # empty is "not given"
    ],
)
def test_names(raw: str, expected: str | None) -> None:
    """Names keep meaningful capitals and lose noise."""
    assert normalise_name(raw) == expected


def test_name_match_key_ignores_accents_case_and_punctuation() -> None:
    """The comparison key of "Müller, Anna-Lena" equals that of "muller anna lena"."""
    assert name_match_key("Müller, Anna-Lena") == name_match_key("muller anna lena")
    assert name_match_key("Müller, Anna-Lena") == "muller anna lena"


def test_emails_are_lowercased_and_validated() -> None:
    """Valid addresses come back lower-case; invalid ones are rejected without quoting."""
    assert normalise_email("  Anna.Mueller@Example.COM ") == "anna.mueller@example.com"
    assert normalise_email("mailto:bob@example.org") == "bob@example.org"
    with pytest.raises(FieldError) as error:
        normalise_email("anna.mueller@@example")
    assert (error.value.field, error.value.reason) == ("email", "is not a valid e-mail address")
    assert "anna" not in str(error.value)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(415) 555-2671", "US", "+14155552671"),  # national format in the default region
        ("+49 30 901820", "US", "+4930901820"),  # explicit country code wins
        ("0049 30 901820", "US", "+4930901820"),  # 00 international prefix
        ("030 901820", "DE", "+4930901820"),  # national format in another region
    ],
)
def test_phones_become_e164(raw: str, region: str, expected: str) -> None:
    """Phone numbers in any common form become E.164."""
    assert normalise_phone(raw, region) == expected


def test_invalid_phone_is_rejected_naming_the_region() -> None:
    """A number that is not valid says which region short numbers were read in."""
    with pytest.raises(FieldError) as error:
        normalise_phone("12345", "US")
    assert error.value.field == "phone"
    assert "US" in error.value.reason
    assert "12345" not in error.value.reason


def test_unknown_region_is_refused() -> None:
    """--default-region must be a region phonenumbers knows."""
    assert check_region(" de ") == "DE"
    with pytest.raises(FieldError):
        check_region("XX")


@pytest.mark.parametrize(
    ("raw", "dayfirst", "expected"),
    [
        ("2026-03-01", False, utc(2026, 3, 1)),  # ISO date
        ("2026-03-01T12:30:00Z", False, utc(2026, 3, 1, 12, 30)),  # ISO with Z
        ("2026-03-01T12:30:00+02:00", False, utc(2026, 3, 1, 10, 30)),  # offset to UTC
        ("2026-03-01 12:30", False, utc(2026, 3, 1, 12, 30)),  # no zone: UTC
        ("2026/03/01", False, utc(2026, 3, 1)),  # year first, slashed
        ("01.03.2026", False, utc(2026, 3, 1)),  # dotted: always day first
        ("01.03.2026 08:15:30", False, utc(2026, 3, 1, 8, 15, 30)),  # with a time
        ("03/01/2026", False, utc(2026, 3, 1)),  # slashed, month first
        ("03/01/2026", True, utc(2026, 1, 3)),  # slashed, day first
        ("25/12/2025", False, utc(2025, 12, 25)),  # a day above 12 settles it
        ("12-25-2025", True, utc(2025, 12, 25)),  # hyphens; 25 can only be the day
        ("1772323200", False, utc(2026, 3, 1)),  # epoch seconds as text
        (1772323200, False, utc(2026, 3, 1)),  # epoch seconds as a number
    ],
)
def test_timestamps(raw: object, dayfirst: bool, expected: datetime) -> None:
    """Every supported form gives the same aware UTC datetime."""
    assert parse_timestamp(raw, dayfirst=dayfirst, field="timestamp") == expected


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",  # words
        "2026-02-30",  # not a real day
        "31/31/2026",  # neither part can be a month
        "1.5e9",  # not the epoch form
    ],
)
def test_bad_timestamps_are_rejected(raw: str) -> None:
    """Unreadable dates raise a FieldError naming the field, not the value."""
    with pytest.raises(FieldError) as error:
        parse_timestamp(raw, dayfirst=False, field="created_at")
    assert error.value.field == "created_at"
    assert raw not in error.value.reason


def test_signup_dates_are_bounded() -> None:
    """A signup in the future or before 1900 is rejected; empty is None."""
    assert parse_signup_date("", dayfirst=False, now=NOW) is None
    assert parse_signup_date("2026-05-31", dayfirst=False, now=NOW) == utc(2026, 5, 31)
    with pytest.raises(FieldError, match="future"):
        parse_signup_date("2027-01-01", dayfirst=False, now=NOW)
    with pytest.raises(FieldError, match="1900"):
        parse_signup_date("1850-01-01", dayfirst=False, now=NOW)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Gold ", "gold"),  # case and spaces
        ("PLAT", "platinum"),  # abbreviation
        ("basic", "none"),  # no tier
        ("", None),  # not given
    ],
)
def test_tiers(raw: str, expected: str | None) -> None:
    """Tiers come back as none/silver/gold/platinum."""
    assert normalise_tier(raw) == expected


def test_unknown_tier_is_rejected() -> None:
    """A tier that is not a known synonym is rejected rather than guessed."""
    with pytest.raises(FieldError, match="none, silver, gold, platinum"):
        normalise_tier("diamond")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("F", "female"),  # one letter
        ("Woman", "female"),  # word
        ("m", "male"),
        ("Non-Binary", "non_binary"),  # hyphen and case
        ("prefer not to say", None),  # declined: unknown, not an error
        ("", None),
    ],
)
def test_genders(raw: str, expected: str | None) -> None:
    """Genders map to the demo's three values."""
    assert normalise_gender(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("de", "DE"),  # code, lower case
        ("UK", "GB"),  # common non-ISO code
        ("Germany", "DE"),  # English name
        ("the Netherlands", "NL"),  # with article
        ("NA", "NA"),  # Namibia, not "not available"
        ("n/a", None),  # not given
    ],
)
def test_countries(raw: str, expected: str | None) -> None:
    """Countries become ISO 3166-1 alpha-2 codes."""
    assert normalise_country(raw) == expected


def test_unknown_country_is_rejected() -> None:
    """An unknown country name is rejected."""
    with pytest.raises(FieldError):
        normalise_country("Atlantis")


def test_cities_categories_and_ages() -> None:
    """Cities are recased when in one case; categories become slugs; ages whole numbers."""
    assert normalise_city("NEW  YORK") == "New York"
    assert normalise_category(" Home & Garden ") == "home_garden"
    assert normalise_category("Électronique") == "electronique"
    assert normalise_age("42.0") == 42
    assert normalise_age("") is None
    with pytest.raises(FieldError, match="whole"):
        normalise_age("42.5")
    with pytest.raises(FieldError, match="between"):
        normalise_age("150")
