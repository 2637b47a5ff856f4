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


class PluginError(PersonalizeError):
    """The plugin cannot be attached to the action server it was given."""


class MissingExtraError(PersonalizeError):
    """A feature needs an optional dependency group that is not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the '{extra}' extra: pip install 'rasa-personalize[{extra}]'"
        )
        self.extra = extra
