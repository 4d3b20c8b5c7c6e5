"""Build the vision backend that the settings name."""

from __future__ import annotations

from agent.config import Settings
from tools.vision.base import VisionBackend


def make_backend(settings: Settings) -> VisionBackend:
    """The ``local`` (transformers) or ``openai`` (HTTP server) backend, configured from settings."""
    if settings.backend == "openai":
        from tools.vision.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(
            settings.model,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout_s=settings.openai_timeout_s,
            retries=settings.openai_retries,
            max_side=settings.max_side,
            max_new_tokens=settings.max_new_tokens,
        )
    from tools.vision.local import LocalQwenBackend

    return LocalQwenBackend(
        settings.model,
        device=settings.device,
        dtype=settings.dtype,
        attn=settings.attn,
        max_side=settings.max_side,
        max_new_tokens=settings.max_new_tokens,
        decoder=settings.decoder,
    )
