"""What the perception stage saw on one frame: the record that travels with a vision request and
is stored on the observation.

``detections`` are ``{label, score, box, track}`` records (box: pixels x1, y1, x2, y2 of the
source frame; ``track`` only once the tracker confirmed the object). ``tracks`` are the tracks in
view and those that left since the previous analysed frame of the source, each with its first and
last sighting (epoch seconds, as observations' ``ts``), its state (``entered`` since the previous
analysed frame, ``present``, ``left``) and the zones it is in. ``changes`` says in words what
happened to the tracks since the previous analysed frame. ``text`` holds the lines OCR read, when
it was asked to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from prompts import quote
from tools.perception.summary import prompt_line, scene_line

TrackState = Literal["entered", "present", "left"]


@dataclass(frozen=True)
class Track:
    """One track as an observation stores it."""

    track: int
    label: str
    first_ts: float
    last_ts: float
    state: TrackState
    zones: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["zones"] = list(self.zones)
        return record


@dataclass(frozen=True)
class Findings:
    """The detector's, the tracker's and OCR's view of one frame (``width`` × ``height`` pixels)."""

    width: int
    height: int
    ts: float
    detections: list[dict[str, Any]] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    text: list[str] | None = None
    tracked: bool = True  # False: one image, no tracker ran (``look``)

    def count(self, label: str) -> int:
        """How many objects of a class the detector sees."""
        return sum(item["label"] == label for item in self.detections)

    def prompt_text(self) -> str:
        """What the vision model's prompt says about this frame: the detector line, then the text read."""
        lines = [prompt_line(self.detections, self.width, self.height)]
        if self.text:
            lines.append("text read in the frame: " + ", ".join(quote(line) for line in self.text))
        return "\n".join(lines)

    def summary(self) -> str:
        """The scene in words with no vision model: ``1 person (track 3 in door for 4 s)``."""
        in_view = {t.track: t for t in self.tracks if t.state != "left"}
        line = scene_line(
            self.detections,
            self.width,
            self.height,
            zones={number: t.zones for number, t in in_view.items()},
            present_s={number: self.ts - t.first_ts for number, t in in_view.items()},
            tracked=self.tracked,
        )
        if self.text:
            line += "; text: " + ", ".join(quote(text) for text in self.text)
        return line

    def description(self) -> dict[str, Any]:
        """The describe answer the ``detector`` backend gives (the fields of the describe prompt's
        JSON): ``summary``, ``people`` (persons detected), ``objects`` (the other classes seen),
        ``actions`` (none: a detector sees no actions), ``changes``, ``answers`` (none)."""
        objects = sorted({item["label"] for item in self.detections} - {"person"})
        return {
            "summary": self.summary(),
            "people": self.count("person"),
            "objects": objects,
            "actions": [],
            "changes": "; ".join(self.changes) or "none",
            "answers": {},
        }
