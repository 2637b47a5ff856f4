"""Errors of the offers package, all under ``rasa_personalize.errors.PersonalizeError``."""

from __future__ import annotations

from rasa_personalize.errors import InvalidInputError, PersonalizeError


class OfferError(PersonalizeError):
    """An acceptance model cannot be trained or loaded."""


class NotEnoughDataError(OfferError):
    """No offer exposure is old enough to learn from yet."""


class OfferInputError(OfferError, InvalidInputError):
    """A training parameter is out of range; the message says which."""
