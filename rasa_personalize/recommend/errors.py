"""Errors of the recommend package, all under ``rasa_personalize.errors.PersonalizeError``."""

from __future__ import annotations

from rasa_personalize.errors import NotFoundError, PersonalizeError


class NotFittedError(PersonalizeError):
    """A model was used before ``fit`` (or before it was loaded from an artifact)."""


class UnknownIdError(NotFoundError):
    """A user, item or segment id is not in the model; callers fall back to another strategy."""


class ArtifactError(PersonalizeError):
    """A model artifact is missing, incomplete or was written by an incompatible version."""


class DatasetUnavailableError(PersonalizeError):
    """An evaluation dataset could not be fetched or read (no network, changed format)."""
