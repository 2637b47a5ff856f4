"""Errors of the segments package, all under ``rasa_personalize.errors.PersonalizeError``."""

from __future__ import annotations

from rasa_personalize.errors import InvalidInputError, PersonalizeError
from rasa_personalize.rules.problems import RulesError


class SegmentationError(PersonalizeError):
    """Segmentation cannot run on this input (too few customers, unknown method, ...)."""


class NotFittedError(SegmentationError):
    """A segmenter was used before ``fit`` (or before a model was given to it)."""


class SegmentModelError(SegmentationError):
    """A stored segment model is missing, unreadable or incompatible with this code."""


class FeatureMismatchError(SegmentationError, InvalidInputError):
    """Features do not have the columns a model or a rule needs; the message says which."""


class TagRulesError(RulesError):
    """A tag rule file is invalid; ``problems`` lists every mistake, each with its line."""
