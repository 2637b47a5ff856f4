"""The demo shop's own actions, as any Rasa assistant keeps them in its ``actions`` package.

The personalization actions (``action_session_start``, ``action_recommend_products``...)
come from the rasa-personalize plugin: the action server registers them by itself, from
``personalize serve`` or ``rasa run actions``. This package holds what is the shop's own,
written on the plugin's public API (:func:`rasa_personalize.runtime.personalization_service`).
"""
