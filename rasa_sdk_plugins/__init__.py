"""rasa-sdk's plugin entry point: every rasa-sdk action server imports this module.

rasa-sdk looks for a top-level module of this name and calls ``init_hooks`` with its
pluggy manager; our hook attaches rasa-personalize to the app it builds. So
``python -m rasa_sdk --actions actions`` (what ``rasa run actions`` runs) serves the
plugin's actions and API beside the user's own, exactly as ``personalize serve`` does.
Importing this module does nothing else: the plugin is imported when the hook runs.
"""

from __future__ import annotations

import sys
from typing import Any

import pluggy

hookimpl = pluggy.HookimplMarker("rasa_sdk")


@hookimpl
def attach_sanic_app_extensions(app: Any) -> None:
    """Register the plugin's actions on the app's executor and attach its extensions."""
    from rasa_personalize.plugin import install  # noqa: PLC0415  # only when a server starts

    install(app)


def init_hooks(manager: pluggy.PluginManager) -> None:
    """Called by rasa-sdk once per process with its plugin manager."""
    manager.register(sys.modules[__name__])
