"""Rasa actions: thin classes that read the tracker, call the engine and return events.

Importing this package defines every action the plugin serves; rasa-sdk registers them
(see :mod:`rasa_personalize.plugin`). The classes are public so that a shop's own actions
package can subclass them, for example to add its own session-start events.
"""

from rasa_personalize.handlers.base import PersonalizingAction, request_from_tracker, slot_events
from rasa_personalize.handlers.preferences import (
    ActionDislikeCategory,
    ActionLikeCategory,
    CategoryPreferenceAction,
)
from rasa_personalize.handlers.privacy import (
    ActionDataSummary,
    ActionEraseCustomer,
    ActionSetConsent,
)
from rasa_personalize.handlers.recommend import (
    ActionRecommendProducts,
    ActionRecordRecommendationFeedback,
    ActionSimilarProducts,
)
from rasa_personalize.handlers.session import ActionRefreshPersonalization, ActionSessionStart

__all__ = [
    "ActionDataSummary",
    "ActionDislikeCategory",
    "ActionEraseCustomer",
    "ActionLikeCategory",
    "ActionRecommendProducts",
    "ActionRecordRecommendationFeedback",
    "ActionRefreshPersonalization",
    "ActionSessionStart",
    "ActionSetConsent",
    "ActionSimilarProducts",
    "CategoryPreferenceAction",
    "PersonalizingAction",
    "request_from_tracker",
    "slot_events",
]
