"""Vision backends by name: ``SCENEWATCH_BACKEND`` (``--backend``) picks one.

A backend plugin is a function ``settings -> VisionBackend``. scenewatch's own are ``local``
(transformers), ``openai`` (an OpenAI-compatible server) and ``detector`` (the object detector and
tracks, no vision-language model: :mod:`tools.perception.backend`); another package adds one through the
``scenewatch.backends`` entry-point group (:mod:`agent.core.plugins`).
"""

from __future__ import annotations

from collections.abc import Callable

from agent.core.config import Settings
from agent.core.plugins import Registry
from tools.vision.base import VisionBackend

BackendFactory = Callable[[Settings], VisionBackend]

BACKENDS: Registry[BackendFactory] = Registry(
    "vision backend",
    "scenewatch.backends",
    {
        "local": "tools.vision.local:from_settings",
        "openai": "tools.vision.openai_compat:from_settings",
        "detector": "tools.perception.backend:from_settings",
    },
)


def make_backend(settings: Settings) -> VisionBackend:
    """The backend ``settings.backend`` names, configured from the settings."""
    return BACKENDS.get(settings.backend)(settings)
