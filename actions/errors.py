"""The package's exceptions: one root, specific subclasses, no personal data in messages."""

from __future__ import annotations


class PersonalizeError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(PersonalizeError):
    """Settings or a configuration file are invalid."""


class StoreUnavailableError(PersonalizeError):
    """The SQL store could not be reached or did not answer in time."""


class NotFoundError(PersonalizeError):
    """A requested record does not exist."""


class InvalidInputError(PersonalizeError):
    """Input from outside (CLI, file, request) is malformed; the message says where."""
