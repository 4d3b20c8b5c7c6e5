"""Detections and tracks in words: a line for the vision model's prompt, and a scene line that needs
no model at all.

>>> where([478, 155, 564, 295], 640, 360)
'right-centre'
>>> plural("person", 2), plural("bus", 3), plural("car", 1)
('people', 'buses', 'car')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_IRREGULAR = {"person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep", "skis": "skis",
              "scissors": "scissors", "skateboard": "skateboards"}  # fmt: skip
PROMPT_ITEMS = 8
"""The most detections a prompt line names (the rest are counted)."""


def plural(label: str, count: int) -> str:
    """A COCO label for ``count`` objects: "person", "people", "benches"."""
    if count == 1:
        return label
    if label in _IRREGULAR:
        return _IRREGULAR[label]
    return label + ("es" if label.endswith(("s", "sh", "ch", "x")) else "s")


def where(box: Sequence[float], width: int, height: int) -> str:
    """Where a box's centre lies in a 3×3 grid of the frame: "top-left", "right-centre", "centre"..."""
    x = (box[0] + box[2]) / 2 / max(width, 1)
    y = (box[1] + box[3]) / 2 / max(height, 1)
    across = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "centre"
    down = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "centre"
    if across == down == "centre":
        return "centre"
    if down == "centre":
        return f"{across}-centre"
    if across == "centre":
        return f"{down}-centre"
    return f"{down}-{across}"


def prompt_line(detections: Sequence[Mapping[str, Any]], width: int, height: int) -> str:
    """``detector: person 0.97 at right-centre, backpack 0.61 at bottom-left`` (highest scores first)."""
    if not detections:
        return "detector: nothing detected"
    ordered = sorted(detections, key=lambda item: -item["score"])
    items = [
        f"{item['label']} {item['score']:.2f} at {where(item['box'], width, height)}"
        for item in ordered[:PROMPT_ITEMS]
    ]
    more = f" (+{len(ordered) - PROMPT_ITEMS} more)" if len(ordered) > PROMPT_ITEMS else ""
    return "detector: " + ", ".join(items) + more


def scene_line(
    detections: Sequence[Mapping[str, Any]],
    width: int,
    height: int,
    *,
    zones: Mapping[int, Sequence[str]] | None = None,
    present_s: Mapping[int, float] | None = None,
    tracked: bool = True,
) -> str:
    """What is in view, with no model: ``2 people (track 3 in door for 4 s; track 4 at top-right),
    1 car (new, at centre)``; "nothing detected" when empty.

    ``zones``: track id -> the zones it is in; ``present_s``: track id -> seconds in view so far.
    With ``tracked`` (a watch), a detection not yet tracked (a first sighting) is "new".
    """
    if not detections:
        return "nothing detected"
    groups: dict[str, list[str]] = {}
    for item in sorted(detections, key=lambda item: (item["label"], item.get("track", 1 << 30))):
        track = item.get("track")
        inside = list((zones or {}).get(track, ())) if track is not None else []
        place = f"in {' and '.join(inside)}" if inside else f"at {where(item['box'], width, height)}"
        if track is None:
            groups.setdefault(item["label"], []).append(f"new, {place}" if tracked else place)
            continue
        seconds = (present_s or {}).get(track)
        stay = f" for {seconds:.0f} s" if seconds is not None and seconds >= 1 else ""
        groups.setdefault(item["label"], []).append(f"track {track} {place}{stay}")
    return ", ".join(
        f"{len(places)} {plural(label, len(places))} ({'; '.join(places)})"
        for label, places in groups.items()
    )
