"""Errors of the propensity package, all under ``rasa_personalize.errors.PersonalizeError``."""

from __future__ import annotations

from rasa_personalize.errors import InvalidInputError, PersonalizeError


class PropensityError(PersonalizeError):
    """A propensity model cannot be trained or used on this input."""


class NotEnoughDataError(PropensityError):
    """The store holds too little to train on: no customers, no history, too few buyers."""


class NotFittedError(PropensityError):
    """A propensity model was used before ``fit``."""


class PropensityInputError(PropensityError, InvalidInputError):
    """A parameter is out of range (a target, cut-offs, a share); the message says which."""


class SavedModelError(PropensityError):
    """A saved propensity model cannot be used: it has no classifier (an older release
    kept only the card), another scikit-learn release saved it, or its files are
    damaged; the message says whether to train again."""
