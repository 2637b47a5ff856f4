"""Profiles over the API: the JSON view of a snapshot, and validated profile updates."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.store.profiles import ProfileChange, apply_profile_change
from rasa_personalize.store.records import CustomerSnapshot
from rasa_personalize.store.types import Session
from rasa_personalize.text import has_control_characters

# The attributes document is read on the hot path: keep it small.
MAX_ATTRIBUTES_BYTES: Final = 16 * 1024
# Error locations quote field names that are plain words only.
_FIELD_NAME: Final = re.compile(r"[A-Za-z_]{1,32}")


class DemographicsUpdate(BaseModel):
    """Demographics; a field left out stays as it is, ``null`` clears it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    age: int | None = Field(default=None, ge=0, lt=150)
    gender: str | None = Field(default=None, max_length=32)
    country: str | None = Field(default=None, max_length=64)
    city: str | None = Field(default=None, max_length=128)

    @field_validator("gender", "country", "city")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        if value is not None and has_control_characters(value):
            raise ValueError("contains a control character")
        return value


class ProfileUpdate(BaseModel):
    """The body of ``PUT /personalize/profiles/<customer>``; every part optional."""

    model_config = ConfigDict(extra="forbid", strict=True)

    loyalty_tier: Literal["none", "silver", "gold", "platinum"] | None = None
    demographics: DemographicsUpdate | None = None
    # Replaces the stored attributes document when given.
    attributes: dict[str, Any] | None = None

    @field_validator("attributes")
    @classmethod
    def _attributes_small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value)) > MAX_ATTRIBUTES_BYTES:
            raise ValueError(f"must encode to at most {MAX_ATTRIBUTES_BYTES} bytes of JSON")
        if value is not None and _holds_control_characters(value):
            # PostgreSQL's jsonb refuses \u0000; tab and line breaks are fine in free text.
            raise ValueError("contains a control character")
        return value


def _holds_control_characters(document: Any) -> bool:
    """Whether any key or string in a JSON document holds a control character."""
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if has_control_characters(item, free_text=True):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def describe_validation_error(error: ValidationError) -> str:
    """Field path and reason of the first error, never the input value.

    An unknown field is named only when its name is a plain word: a name may be personal
    data too (an e-mail address used as a key).
    """
    first = error.errors(include_input=False, include_url=False)[0]
    location = ".".join(_shown_part(part) for part in first["loc"]) or "body"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{location}: {first['msg']}{more}"


def _shown_part(part: str | int) -> str:
    return str(part) if isinstance(part, int) or _FIELD_NAME.fullmatch(part) else "(a field)"


def parse_profile_update(payload: Any) -> ProfileUpdate:
    """Validate a PUT body.

    Raises:
        InvalidInputError: names the first invalid field, quoting no values.
    """
    if not isinstance(payload, dict):
        raise InvalidInputError("the body must be a JSON object")
    try:
        return ProfileUpdate.model_validate(payload)
    except ValidationError as error:
        raise InvalidInputError(describe_validation_error(error)) from None


def profile_change(update: ProfileUpdate) -> ProfileChange:
    """The store's form of a validated update: only the fields that were sent."""
    return ProfileChange(
        loyalty_tier=update.loyalty_tier,
        demographics=(
            update.demographics.model_dump(exclude_unset=True)
            if update.demographics is not None
            else {}
        ),
        attributes=update.attributes,
    )


def changed_fields(update: ProfileUpdate) -> list[str]:
    """The names of the fields an update sets (``demographics.city``), never their values:
    what the audit log keeps of a profile write."""
    change = profile_change(update)
    names = ["loyalty_tier"] if change.loyalty_tier is not None else []
    names.extend(f"demographics.{name}" for name in sorted(change.demographics))
    if change.attributes is not None:
        names.append("attributes")
    return names


async def write_profile(session: Session, key: str, change: ProfileUpdate) -> bool:
    """Apply ``change`` to the customer with ``key``, creating them if missing.

    Returns:
        True when the customer was created.
    """
    return await apply_profile_change(session, key, profile_change(change))


def profile_document(snapshot: CustomerSnapshot) -> dict[str, Any]:
    """The JSON answer of ``GET /personalize/profiles/<customer>`` (no external id)."""
    return {
        "loyalty_tier": snapshot.loyalty_tier,
        "created_at": snapshot.created_at.isoformat(),
        "demographics": asdict(snapshot.demographics),
        "attributes": dict(snapshot.attributes),
        "metrics": snapshot.metrics.to_document(),
        "tags": [
            {"tag": tag.tag, "source": tag.source, "weight": tag.weight} for tag in snapshot.tags
        ],
        "segment": (
            {
                "segment": snapshot.segment.segment,
                "method": snapshot.segment.method,
                "model_version": snapshot.segment.model_version,
                "score": snapshot.segment.score,
                "assigned_at": snapshot.segment.assigned_at.isoformat(),
            }
            if snapshot.segment is not None
            else None
        ),
        "profile_version": snapshot.profile_version,
    }
