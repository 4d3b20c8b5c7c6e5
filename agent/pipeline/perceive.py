"""The detector stage between the sampler and the engine: detect, track, zones, decide.

Each sampled frame of a source goes through the object detector (:mod:`tools.perception.detector`,
all classes by default, 2×2 tiles on CCTV frames), the source's ByteTrack tracker (fed at the pace
the pipeline samples, matching boxes by GIoU; the research behind it found 5 samples a second
tracks walkers without fragments, 1 a second with some, at a fifth of the cost) and its zones.
Then the change gate (:mod:`agent.pipeline.gate`) decides with what the tracks did: a track that
appeared or left, or entered or left a zone, wakes the vision model even when few pixels changed,
and a source that waits for a class (``only_while``) is skipped while none is in view.

A frame that goes to the model carries :class:`~tools.perception.findings.Findings`: its
detections, the tracks in view and those that left since the previous analysed frame, what changed
in words, and the text read when the source asks for it. The describe prompt quotes them; the
observation stores them (:func:`observation_fields`). Without a :class:`Perception` (the detector
off) the stage is the plain change gate.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.config import Settings
from agent.events.ruleset import SourceRules
from agent.pipeline.gate import ChangeGate, GateDecision, Reason
from agent.sources import Frame, is_live, source_name
from tools.perception.backend import detector_options
from tools.perception.detector import Detector, as_dicts, load_model
from tools.perception.findings import Findings, Track, TrackState
from tools.perception.ocr import shared_reader
from tools.perception.summary import where
from tools.perception.tracking import SceneTracker, TrackRecord
from tools.perception.zones import Zones

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameDecision:
    """Whether a frame goes to the model, its change score, the reason, and (with the detector) its
    findings: set when the frame is analysed."""

    analyse: bool
    score: float | None
    reason: Reason
    findings: Findings | None = None


class Perception:
    """The detector stage of one watch: the detector's settings and checked weights, each source's
    rules (zones, gate options, text). Building it checks the model file, the classes and the
    tiling, so a bad setting stops the watch before a vision model loads."""

    def __init__(self, settings: Settings, sources: Mapping[str, SourceRules] | None = None) -> None:
        self.options = detector_options(settings)
        self.model = load_model()
        self.sources = dict(sources or {})
        Detector(self.options, model=self.model)  # the tiling and classes are checked here

    def rules_for(self, name: str) -> SourceRules:
        """The rules of the source stored as ``name``: its key in the rules file is that name, a
        path that resolves to it, or (files) its base name."""
        for key, rules in self.sources.items():
            if key == name or (not is_live(key) and source_name(key) == name):
                return rules
        base = Path(name).name if not is_live(name) else None
        return next((rules for key, rules in self.sources.items() if key == base), SourceRules())


class Perceiver:
    """One source's stage: its gate, and with a :class:`Perception` its detector, tracker and zones."""

    def __init__(self, name: str, settings: Settings, perception: Perception | None) -> None:
        rules = perception.rules_for(name) if perception is not None else SourceRules()
        self.name = name
        self.gate = ChangeGate(
            rules.threshold if rules.threshold is not None else settings.gate_threshold,
            settings.gate_side,
            rules.heartbeat_s if rules.heartbeat_s is not None else settings.heartbeat_s,
            pixels=rules.pixels,
        )
        self.only_while = set(rules.only_while)
        self.read_text = rules.text if rules.text is not None else settings.read_text
        self.detector: Detector | None = None
        self.tracker: SceneTracker | None = None
        self.zones = Zones(rules.zones) if perception is not None and rules.zones else None
        if perception is not None:
            self.detector = Detector(perception.options, model=perception.model)
            self.tracker = SceneTracker(every_s=settings.every_s, threshold=perception.options.threshold)
        self._changes: list[str] = []
        self._entered: set[int] = set()
        self._left: list[TrackRecord] = []

    def decide(self, frame: Frame) -> FrameDecision:
        """Perceive ``frame`` (with the detector) and gate it; the findings come with an analysed frame."""
        gate_t = frame.ts if frame.video_t is None else frame.video_t
        seen = self._see(frame) if self.detector is not None else None
        if seen is None:
            decision = self.gate.check(frame.image, gate_t)
            return FrameDecision(decision.analyse, decision.score, decision.reason)
        detections, changed = seen
        present = any(item["label"] in self.only_while for item in detections) if self.only_while else None
        decision = self.gate.check(frame.image, gate_t, tracks_changed=changed, present=present)
        if not decision.analyse:
            return FrameDecision(decision.analyse, decision.score, decision.reason)
        return self._hand_on(decision, frame, detections)

    def _see(self, frame: Frame) -> tuple[list[dict[str, Any]], bool] | None:
        """Detect, track and place in zones; the detections and whether the tracks changed. None
        (logged) when the detector failed on the frame: the gate then judges by pixels alone."""
        assert self.detector is not None and self.tracker is not None
        try:
            found = self.detector.detect(frame.image, weak=True)
            tracked = self.tracker.update(found, frame.ts)
            height, width = frame.image.shape[:2]
            if self.zones is not None:
                self.zones.update(tracked, frame.ts, width, height)
        except Exception as exc:  # a frame the detector cannot take is a logged skip of the stage
            log.warning("%s: the detector failed on a frame: %s", self.name, exc)
            return None
        changed = False
        for event in self.tracker.take_events():
            record = self.tracker.tracks[event.track_id]
            if event.kind == "enter":
                self._entered.add(event.track_id)
                place = where(record.box, width, height)
                self._changes.append(f"{event.label} {event.track_id} appeared at {place}")
            else:
                self._left.append(record)
                self._changes.append(f"{event.label} {event.track_id} left after {record.dwell_s:.0f} s")
            changed = True
        for zone_event in self.zones.take_events() if self.zones is not None else ():
            verb = "entered" if zone_event.kind == "enter" else "left"
            self._changes.append(f"{zone_event.label} {zone_event.track_id} {verb} {zone_event.zone}")
            changed = True
        return as_dicts(tracked), changed

    def _hand_on(
        self, decision: GateDecision, frame: Frame, detections: list[dict[str, Any]]
    ) -> FrameDecision:
        """The findings of an analysed frame, with what changed since the previous analysed one."""
        assert self.tracker is not None
        height, width = frame.image.shape[:2]
        tracks = [self._track(record, "entered" if record.track_id in self._entered else "present")
                  for record in self.tracker.present()]  # fmt: skip
        tracks += [self._track(record, "left") for record in self._left if record.gone]
        findings = Findings(
            width, height, frame.ts, detections, tracks, self._changes, self._text(frame.image)
        )
        self._changes, self._entered, self._left = [], set(), []
        return FrameDecision(decision.analyse, decision.score, decision.reason, findings)

    def _track(self, record: TrackRecord, state: TrackState) -> Track:
        in_view = self.zones is not None and state != "left"
        zones = tuple(self.zones.zones_of(record.track_id)) if self.zones is not None and in_view else ()
        return Track(record.track_id, record.label, record.first_seen, record.last_seen, state, zones)

    def _text(self, image: np.ndarray) -> list[str] | None:
        if not self.read_text:
            return None
        try:
            return [line.text for line in shared_reader().read(image)]
        except Exception as exc:  # OCR is an extra: its failure loses the text, not the frame
            log.warning("%s: reading text failed: %s", self.name, exc)
            return None


def observation_fields(findings: Findings | None) -> dict[str, Any]:
    """The observation's ``detections``, ``tracks`` and ``text`` from a frame's findings (None without)."""
    if findings is None:
        return {"detections": None, "tracks": None, "text": None}
    return {
        "detections": findings.detections,
        "tracks": [track.to_dict() for track in findings.tracks],
        "text": findings.text,
    }
