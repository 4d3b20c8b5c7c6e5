"""Named polygon zones (supervision's ``PolygonZone``): which tracks are in which zone, since when.

A zone is a polygon of at least 3 points ``[x, y]``. When every coordinate is at most 1 the points
are fractions of the frame's width and height (``[[0.1, 0.4], [0.5, 0.4], [0.5, 1], [0.1, 1]]``:
the same zone at any resolution); otherwise they are pixels of the source frame. A tracked object
is inside when its bottom centre (its feet, its wheels) is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import supervision as sv

Point = tuple[float, float]


def in_fractions(points: Sequence[Point]) -> bool:
    """Whether a polygon is given in fractions of the frame (every coordinate at most 1)."""
    return all(0 <= value <= 1 for point in points for value in point)


def polygon_pixels(points: Sequence[Point], width: int, height: int) -> np.ndarray:
    """The polygon in pixels of a ``width`` × ``height`` frame, as PolygonZone takes it."""
    scale = np.array([width, height], dtype=float) if in_fractions(points) else np.ones(2)
    return np.round(np.asarray(points, dtype=float) * scale).astype(np.int64)


@dataclass(frozen=True)
class ZoneEvent:
    """A track entering or leaving a named zone at time ``t`` (seconds)."""

    kind: Literal["enter", "leave"]
    zone: str
    track_id: int
    label: str
    t: float


class Zones:
    """Zone membership over time for tracked detections.

    A track leaves a zone when it is seen outside it, or not seen at all for more than ``grace_s``
    (a missed detection is not a departure); the leave event carries the last time it was seen
    inside. Detections not yet tracked (``tracker_id`` -1) are ignored.
    """

    def __init__(self, polygons: Mapping[str, Sequence[Point]], *, grace_s: float = 2.0) -> None:
        self.polygons = dict(polygons)
        self.grace_s = grace_s
        self._zones: dict[str, sv.PolygonZone] = {}
        self._size: tuple[int, int] | None = None
        self._since: dict[str, dict[int, float]] = {name: {} for name in self.polygons}
        self._last_inside: dict[str, dict[int, float]] = {name: {} for name in self.polygons}
        self._labels: dict[int, str] = {}
        self._events: list[ZoneEvent] = []

    def _fit(self, width: int, height: int) -> None:
        if self._size != (width, height):
            self._zones = {
                name: sv.PolygonZone(
                    polygon_pixels(points, width, height), triggering_anchors=(sv.Position.BOTTOM_CENTER,)
                )
                for name, points in self.polygons.items()
            }
            self._size = (width, height)

    def update(self, tracked: sv.Detections, t: float, width: int, height: int) -> dict[str, list[int]]:
        """Feed tracked detections of a ``width`` × ``height`` frame at time ``t``; the zones'
        occupants now (:meth:`occupants`)."""
        self._fit(width, height)
        ids = tracked.tracker_id if tracked.tracker_id is not None else np.full(len(tracked), -1)
        names = tracked.data.get("class_name", np.full(len(tracked), ""))
        for track_id, label in zip(ids.tolist(), np.asarray(names).tolist(), strict=True):
            if track_id >= 0:
                self._labels[track_id] = str(label)
        for name, zone in self._zones.items():
            inside = zone.trigger(tracked) if len(tracked) else np.zeros(0, dtype=bool)
            since, last = self._since[name], self._last_inside[name]
            for track_id in ids[inside & (ids >= 0)].tolist():
                if track_id not in since:
                    since[track_id] = t
                    self._events.append(ZoneEvent("enter", name, track_id, self._labels[track_id], t))
                last[track_id] = t
            outside = set(ids[~inside & (ids >= 0)].tolist())
            for track_id in [i for i, seen in last.items() if i in outside or t - seen > self.grace_s]:
                label = self._labels[track_id]
                self._events.append(ZoneEvent("leave", name, track_id, label, last.pop(track_id)))
                del since[track_id]
        return self.occupants()

    def occupants(self) -> dict[str, list[int]]:
        """Zone name -> ids of the tracks inside (unseen ones within ``grace_s`` too), by arrival."""
        return {name: sorted(since, key=since.__getitem__) for name, since in self._since.items()}

    def zones_of(self, track_id: int) -> list[str]:
        """The zones a track is in now."""
        return [name for name, since in self._since.items() if track_id in since]

    def take_events(self) -> list[ZoneEvent]:
        """The enter and leave events since the last call, oldest first."""
        events, self._events = self._events, []
        return events
