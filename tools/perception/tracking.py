"""Track ids, entries, exits and dwell times from detections, with ByteTrack (Roboflow ``trackers``).

One ``ByteTrackTracker`` runs per class (ByteTrack ignores classes) and ids are made unique across
classes, starting at 1. Times are the caller's timestamps in seconds, passed to ByteTrack's
``timestamp``, so frames may come at any, even uneven, pace. Boxes are matched by GIoU, which
also pairs near boxes that no longer overlap: at the pipeline's 1 sample a second a walker's
boxes rarely overlap, and plain IoU loses the track (on the shop clip at 1 fps, IoU confirmed 1
track of 5 people, GIoU 6 tracks with some fragments; at 5 fps both found the 5 right).

ByteTrack gives a track its id at the second sighting at the earliest; the track's entry is
back-dated to its first sighting. A track unseen for ``lost_after_s`` is gone: its exit time is
its last sighting.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker, GIoU

from tools.perception.detector import labelled_empty, scores, select

MIN_GIOU = -0.5
"""Least GIoU that still matches a box to a track (GIoU runs from -1 to 1)."""
MIN_HITS = 2
"""Sightings before a track gets its id (ByteTrack's minimum)."""


@dataclass
class TrackRecord:
    """What is known about one tracked object (times in the caller's seconds)."""

    track_id: int
    label: str
    first_seen: float
    last_seen: float
    box: tuple[float, float, float, float]
    score: float
    hits: int = 1
    gone: bool = False

    @property
    def dwell_s(self) -> float:
        """Seconds from the first to the last sighting."""
        return self.last_seen - self.first_seen


@dataclass(frozen=True)
class TrackEvent:
    """A track entering (its first sighting) or leaving (its last sighting) the view."""

    kind: Literal["enter", "exit"]
    track_id: int
    label: str
    t: float


class SceneTracker:
    """Per-class ByteTrack over timestamped detections, with each track's history.

    ``every_s``: the pace frames are fed at (ByteTrack's motion step; the timestamps set the rest).
    ``lost_after_s``: a track unseen this long is gone (default one and a half samples: a track
    missed in two samples in a row has left). ByteTrack keeps a lost track longer (two and a half
    samples, at least 2 s), so one seen again after a miss keeps its id (and is reopened if it was
    closed meanwhile). ``threshold``: the detector's score threshold,
    which starts and confirms tracks; a weaker detection (``Detector.detect(weak=True)``) can only
    continue a track (ByteTrack's second association stage) and is dropped when it continues none.
    """

    def __init__(self, *, every_s: float = 1.0, lost_after_s: float | None = None, threshold: float = 0.5):
        self.lost_after_s = lost_after_s if lost_after_s is not None else max(1.0, 1.5 * every_s)
        self.threshold = threshold
        self._settings = {
            "frame_rate": 1.0 / every_s,
            # ByteTrack counts its budget in frames of 30 fps video when given timestamps.
            "lost_track_buffer": max(1, round(max(self.lost_after_s, 2.0, 2.5 * every_s) * 30)),
            "minimum_consecutive_frames": MIN_HITS,
            "track_activation_threshold": threshold,
            "high_conf_det_threshold": threshold,
            "minimum_iou_threshold": MIN_GIOU,
        }
        self._trackers: dict[str, ByteTrackTracker] = {}
        self._ids: dict[tuple[str, int], int] = {}
        self._times: deque[float] = deque(maxlen=MIN_HITS)
        self.tracks: dict[int, TrackRecord] = {}
        self._events: list[TrackEvent] = []
        self.now: float | None = None

    def update(self, detections: sv.Detections, t: float) -> sv.Detections:
        """Feed one frame's detections (with ``data["class_name"]``) seen at time ``t``.

        Returns them with ``tracker_id`` set (-1: not yet confirmed). A time that does not
        increase is ignored (the frame returned unconfirmed): a clock that stepped back cannot
        break the tracks.
        """
        if self.now is not None and t <= self.now:
            detections.tracker_id = np.full(len(detections), -1, dtype=int)
            return detections
        self.now = t
        self._times.append(t)
        names = np.asarray(detections.data.get("class_name", np.array([], dtype=str)))
        if len(names) != len(detections):
            raise ValueError('detections need data["class_name"] (as Detector.detect gives)')
        out = []
        for label in sorted(set(names.tolist()) | set(self._trackers)):
            tracker = self._trackers.get(label)
            if tracker is None:
                tracker = self._trackers[label] = ByteTrackTracker(iou=GIoU(), **self._settings)
            part = select(detections, names == label) if len(detections) else sv.Detections.empty()
            tracked = tracker.update(part, timestamp=t)
            if len(tracked) and tracked.tracker_id is not None:
                tracked.tracker_id = np.array([self._global_id(label, int(i)) for i in tracked.tracker_id])
                tracked.data["class_name"] = np.full(len(tracked), label)
                self._record(tracked, label, t)
                out.append(tracked)
        self._close_lost(t)
        if not out:
            empty = labelled_empty()
            empty.tracker_id = np.array([], dtype=int)
            return empty
        merged = sv.Detections.merge(out)
        ids = merged.tracker_id if merged.tracker_id is not None else np.full(len(merged), -1)
        return select(merged, (scores(merged) >= self.threshold) | (ids >= 0))

    def _global_id(self, label: str, local_id: int) -> int:
        if local_id < 0:
            return -1
        return self._ids.setdefault((label, local_id), len(self._ids) + 1)

    def _record(self, tracked: sv.Detections, label: str, t: float) -> None:
        ids = tracked.tracker_id if tracked.tracker_id is not None else np.full(len(tracked), -1)
        for xyxy, score, track_id in zip(tracked.xyxy, scores(tracked), ids, strict=True):
            if track_id < 0:
                continue
            box = (float(xyxy[0]), float(xyxy[1]), float(xyxy[2]), float(xyxy[3]))
            record = self.tracks.get(int(track_id))
            if record is None:
                first = self._times[0]
                self.tracks[int(track_id)] = TrackRecord(int(track_id), label, first, t, box, float(score), 2)
                self._events.append(TrackEvent("enter", int(track_id), label, first))
            else:
                record.last_seen, record.box, record.score = t, box, float(score)
                record.hits += 1
                if record.gone:  # seen again within ByteTrack's budget after we closed it
                    record.gone = False
                    self._events.append(TrackEvent("enter", record.track_id, label, t))

    def _close_lost(self, t: float) -> None:
        for record in self.tracks.values():
            if not record.gone and t - record.last_seen > self.lost_after_s:
                record.gone = True
                self._events.append(TrackEvent("exit", record.track_id, record.label, record.last_seen))

    def finish(self) -> None:
        """The end of the footage: every track still open exits at its last sighting."""
        for record in self.tracks.values():
            if not record.gone:
                record.gone = True
                self._events.append(TrackEvent("exit", record.track_id, record.label, record.last_seen))

    def take_events(self) -> list[TrackEvent]:
        """The enter and exit events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def present(self) -> list[TrackRecord]:
        """The tracks seen in the latest frame."""
        return [r for r in self.tracks.values() if not r.gone and r.last_seen == self.now]

    def counts(self) -> dict[str, int]:
        """Tracked objects per class in the latest frame."""
        return dict(Counter(record.label for record in self.present()))
