"""Tracks and zones: ids, entries and exits with their times, zone visits, at the pipeline's pace."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from tools.perception.tracking import SceneTracker
from tools.perception.zones import Zones, in_fractions, polygon_pixels

DOOR = {"door": [(100, 120), (330, 120), (330, 360), (100, 360)]}


def detections(*items: tuple[str, float, float, float, float, float]) -> sv.Detections:
    """Detections from (label, x1, y1, x2, y2, score)."""
    if not items:
        empty = sv.Detections.empty()
        empty.data["class_name"] = np.array([], dtype=str)
        return empty
    found = sv.Detections(
        xyxy=np.array([item[1:5] for item in items], np.float32),
        confidence=np.array([item[5] for item in items], np.float32),
        class_id=np.zeros(len(items), int),
    )
    found.data["class_name"] = np.array([item[0] for item in items])
    return found


def test_a_walker_gets_an_id_enters_at_the_first_sighting_and_leaves_at_the_last() -> None:
    tracker = SceneTracker(every_s=0.2, lost_after_s=1.0)
    for k in range(20):  # seen from 2.0 s to 5.8 s, 8 px to the right each frame
        t = round(2.0 + k * 0.2, 3)
        out = tracker.update(detections(("person", 100 + 8 * k, 50, 160 + 8 * k, 200, 0.9)), t)
        assert out.tracker_id.tolist() == ([-1] if k == 0 else [1])  # confirmed at the second sighting
    assert tracker.counts() == {"person": 1}
    for k in range(10):
        tracker.update(detections(), round(6.0 + k * 0.2, 3))
    events = [(event.kind, event.track_id, event.t) for event in tracker.take_events()]
    assert events == [("enter", 1, 2.0), ("exit", 1, 5.8)]
    assert tracker.take_events() == [] and tracker.counts() == {}
    assert tracker.tracks[1].dwell_s == pytest.approx(3.8)


def test_at_one_sample_a_second_giou_keeps_a_walker_whose_boxes_no_longer_overlap() -> None:
    tracker = SceneTracker(every_s=1.0)
    for k in range(6):  # 70 px a second: consecutive boxes (60 px wide) never overlap
        out = tracker.update(detections(("person", 100 + 70 * k, 50, 160 + 70 * k, 200, 0.9)), float(k))
    assert out.tracker_id.tolist() == [1] and len(tracker.tracks) == 1


def test_classes_are_tracked_apart_with_ids_unique_across_them() -> None:
    tracker = SceneTracker(every_s=1.0)
    for t in range(3):
        both = detections(("person", 10, 10, 60, 160, 0.9), ("backpack", 20, 40, 50, 90, 0.8))
        out = tracker.update(both, float(t))
    assert sorted(zip(out.data["class_name"], out.tracker_id, strict=True)) == [
        ("backpack", 1),
        ("person", 2),
    ]
    assert tracker.counts() == {"person": 1, "backpack": 1}


def test_a_missed_detection_keeps_the_id() -> None:
    tracker = SceneTracker(every_s=1.0)
    box = ("person", 100, 50, 160, 200, 0.9)
    for t, seen in enumerate([True, True, False, True]):
        out = tracker.update(detections(box) if seen else detections(), float(t))
    assert out.tracker_id.tolist() == [1] and [e.kind for e in tracker.take_events()] == ["enter"]


def test_time_that_does_not_move_on_is_ignored_not_fatal() -> None:
    tracker = SceneTracker(every_s=1.0)
    box = ("person", 100, 50, 160, 200, 0.9)
    tracker.update(detections(box), 1.0)
    tracker.update(detections(box), 2.0)
    stale = tracker.update(detections(box), 2.0)
    assert stale.tracker_id.tolist() == [-1] and tracker.now == 2.0


def test_detections_without_labels_are_a_clear_error() -> None:
    bare = sv.Detections(
        xyxy=np.array([[0, 0, 5, 5]], np.float32), confidence=np.array([0.9]), class_id=np.array([0])
    )
    with pytest.raises(ValueError, match="class_name"):
        SceneTracker().update(bare, 1.0)


def tracked(*items: tuple[int, float, float, float, float]) -> sv.Detections:
    """Tracked persons from (track id, x1, y1, x2, y2)."""
    found = detections(*[("person", *item[1:], 0.9) for item in items])
    found.tracker_id = np.array([item[0] for item in items], dtype=int)
    return found


def test_zone_visits_by_the_feet() -> None:
    zones = Zones(DOOR)
    assert zones.update(tracked((1, 400, 0, 450, 100)), 0.0, 640, 360) == {"door": []}
    assert zones.update(tracked((1, 200, 50, 250, 150), (2, 200, 0, 250, 100)), 1.0, 640, 360) == {
        "door": [1]
    }
    assert zones.zones_of(1) == ["door"] and zones.zones_of(2) == []
    zones.update(tracked((1, 400, 60, 450, 160)), 2.0, 640, 360)  # seen outside: leaves at once
    events = [(e.kind, e.zone, e.track_id, e.label, e.t) for e in zones.take_events()]
    assert events == [("enter", "door", 1, "person", 1.0), ("leave", "door", 1, "person", 1.0)]


def test_a_missed_detection_is_not_a_departure_from_a_zone() -> None:
    zones = Zones(DOOR, grace_s=2.0)
    zones.update(tracked((5, 200, 50, 250, 150)), 0.0, 640, 360)
    assert zones.update(tracked(), 1.0, 640, 360) == {"door": [5]}
    assert zones.update(tracked(), 2.5, 640, 360) == {"door": []}
    assert [(e.kind, e.t) for e in zones.take_events()] == [("enter", 0.0), ("leave", 0.0)]


def test_untracked_detections_do_not_visit_zones() -> None:
    zones = Zones(DOOR)
    assert zones.update(tracked((-1, 200, 50, 250, 150)), 0.0, 640, 360) == {"door": []}
    assert zones.take_events() == []


def test_zones_in_fractions_of_the_frame_follow_its_size() -> None:
    fractions = [(0.16, 0.33), (0.52, 0.33), (0.52, 1.0), (0.16, 1.0)]
    assert in_fractions(fractions) and not in_fractions(DOOR["door"])
    assert polygon_pixels(fractions, 640, 360).tolist() == [[102, 119], [333, 119], [333, 360], [102, 360]]
    assert polygon_pixels(fractions, 1280, 720).tolist()[2] == [666, 720]
    zones = Zones({"door": fractions})
    assert zones.update(tracked((1, 400, 100, 500, 300)), 0.0, 1280, 720) == {"door": [1]}
    assert zones.update(tracked((1, 400, 100, 500, 300)), 1.0, 640, 360) == {"door": []}  # feet at x 450
