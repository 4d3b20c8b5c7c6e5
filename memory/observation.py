"""The central record: what the model said about one analysed frame of one source."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_NO_CHANGE = re.compile(
    r"none|n/?a|nothing( changed)?|unchanged"
    r"|no( visible| notable| significant)? changes?( since the (previous|last) (observation|frame))?"
)


@dataclass
class Observation:
    """What the model said about one analysed frame of one source."""

    source: str
    ts: float
    summary: str = ""
    raw: str = ""
    parsed: bool = True
    video_t: float | None = None
    people: int | None = None
    objects: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    changes: str = ""
    answers: dict[str, bool] = field(default_factory=dict)
    gate_score: float | None = None
    latency_ms: float | None = None
    thumb_path: str | None = None
    model: str = ""
    episode_id: int | None = None
    id: int | None = None
    detections: list[dict[str, Any]] | None = None
    """The object detector's ``{label, score, box, track}`` records (box: pixels x1, y1, x2, y2 of the
    source frame; ``track`` once tracked); None when no detector ran."""
    tracks: list[dict[str, Any]] | None = None
    """The tracks in view and those that left since the source's previous observation: ``{track,
    label, first_ts, last_ts, state (entered, present, left), zones}``; None when no detector ran."""
    text: list[str] | None = None
    """The lines of text read in the frame (OCR), when reading was asked for."""
    frame_id: str | None = None
    """The frame's unique id when it came through the scale-out streams (a redelivery is stored once)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def changes_text(changes: str) -> str:
    """The changes an observation reports, or "" when it says there were none ("No changes.", "n/a")."""
    text = " ".join(changes.split())
    return "" if not text or _NO_CHANGE.fullmatch(text.lower().rstrip(".!")) else text
