"""The JSON the API gives for stored things: an observation as the JSONL rows carry it, plus links."""

from __future__ import annotations

from typing import Any

from memory.observation import Observation


def thumbnail_url(observation_id: int) -> str:
    return f"/api/observations/{observation_id}/thumbnail"


def observation_document(obs: Observation) -> dict[str, Any]:
    """``obs.to_dict()`` (the JSONL row) with ``thumbnail``: its URL on this server, or None."""
    url = thumbnail_url(obs.id) if obs.id is not None and obs.thumb_path else None
    return {**obs.to_dict(), "thumbnail": url}
