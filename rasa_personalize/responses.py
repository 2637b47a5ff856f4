"""The responses the plugin's own actions utter, with the wording a new domain starts from.

The privacy actions (:mod:`rasa_personalize.handlers.privacy`) and the preference actions
(:mod:`rasa_personalize.handlers.preferences`) answer with these names, so a domain without
them would make Rasa log "no response found" and say nothing. ``personalize domain add``
writes the missing ones with these texts; a shop rewords them in its domain as it likes
(``{data_summary}`` and ``{category}`` are filled from the action's message).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

CONSENT_DENIED: Final = "utter_consent_denied"
CONSENT_GRANTED: Final = "utter_consent_granted"
CONSENT_NOT_SAVED: Final = "utter_consent_not_saved"
DATA_SUMMARY: Final = "utter_data_summary"
ERASURE_DONE: Final = "utter_erasure_done"
ERASURE_NEEDS_LOGIN: Final = "utter_erasure_needs_login"
ERASURE_FAILED: Final = "utter_erasure_failed"
LIKE_SAVED: Final = "utter_like_saved"
DISLIKE_SAVED: Final = "utter_dislike_saved"
PREFERENCE_NEEDS_LOGIN: Final = "utter_preference_needs_login"
PREFERENCE_NOT_SAVED: Final = "utter_preference_not_saved"
PREFERENCE_UNKNOWN_CATEGORY: Final = "utter_preference_unknown_category"

PLUGIN_RESPONSES: Final = MappingProxyType(
    {
        CONSENT_DENIED: (
            "Understood: I won't use your data to personalize our chat, track what you do"
            " here, or make you offers. You can change your mind any time."
        ),
        CONSENT_GRANTED: (
            "Thank you! I'll use what I know about you to make suggestions that fit you better."
        ),
        CONSENT_NOT_SAVED: "Sorry, I couldn't save that right now. Please try again in a moment.",
        DATA_SUMMARY: "Here is what I know about you: {data_summary}",
        ERASURE_DONE: (
            "Done: I have deleted your data. From now on I'll treat you as a new visitor."
        ),
        ERASURE_NEEDS_LOGIN: (
            "I can only delete data for a signed-in customer."
            " Please log in to your account and ask me again."
        ),
        ERASURE_FAILED: "Sorry, I couldn't delete your data right now. Please try again later.",
        LIKE_SAVED: "Noted: you like {category}. I'll keep that in mind when I suggest things.",
        DISLIKE_SAVED: (
            "Got it: no more {category} in my suggestions, unless you ask for it."
            " You can change your mind any time."
        ),
        PREFERENCE_NEEDS_LOGIN: (
            "I can only remember what you like and don't like when you're signed in."
            " For now, just tell me what you'd like to see."
        ),
        PREFERENCE_NOT_SAVED: (
            "Sorry, I couldn't save that to your profile."
            " For now, just tell me what you'd like to see."
        ),
        PREFERENCE_UNKNOWN_CATEGORY: (
            "Sorry, I couldn't tell which of our categories you mean. Could you name it again?"
        ),
    }
)
