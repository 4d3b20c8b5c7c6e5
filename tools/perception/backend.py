"""The ``detector`` vision backend: true observations on any CPU, with no vision-language model.

In a watch, each request carries what the pipeline's perception stage found on its frame
(``VisionRequest.findings``: detections, tracks, zones, text) and the backend answers the describe
prompt from it, as JSON, without looking at the pixels again: the detector runs once per frame.
A request without findings (``scenewatch look IMAGE``) is answered by running the detector on its
last image, which ``look`` hands over at full size, so the boxes are in the image's pixels; the
answer is then the scene in words. ``VisionResult.extra["detections"]`` holds the
``{label, score, box[, track]}`` records either way. A request with no image (a narrative, the
agent) cannot be answered: a detector writes no prose and holds no conversation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence

import cv2
import numpy as np

from agent.core.config import Settings
from tools.perception.detector import Detector, DetectorOptions, as_dicts, classes_setting
from tools.perception.findings import Findings
from tools.vision.base import VisionError, VisionRequest, VisionResult

MODEL_NAME = "detector:ssd-mobilenet-v2-coco"


def detector_options(settings: Settings) -> DetectorOptions:
    """The detector settings (``SCENEWATCH_DETECTOR_*``) as DetectorOptions (unknown classes: an error)."""
    return DetectorOptions(
        threshold=settings.detector_threshold,
        classes=classes_setting(settings.detector_classes),
        tiling=settings.detector_tiling,
    )


class DetectorBackend:
    """Answers vision requests from the detector's findings (see the module docstring)."""

    model_name = MODEL_NAME

    def __init__(self, options: DetectorOptions) -> None:
        self.options = options
        self._detector: Detector | None = None
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        return [self._answer(request) for request in requests]

    def _answer(self, request: VisionRequest) -> VisionResult:
        started = time.perf_counter()
        findings = request.findings
        if isinstance(findings, Findings):
            text = json.dumps(findings.description(), ensure_ascii=False)
        else:
            findings = self._look(request)
            text = f"{findings.summary()}\n{findings.prompt_text()}"
        return VisionResult(
            text=text,
            model=MODEL_NAME,
            latency_ms=(time.perf_counter() - started) * 1000,
            extra={"detections": findings.detections},
        )

    def _look(self, request: VisionRequest) -> Findings:
        images = request.images
        if not images:
            raise VisionError(
                "the detector backend only sees images: it cannot write text or hold a conversation "
                "(use --backend local or openai for that)"
            )
        frame = cv2.cvtColor(np.asarray(images[-1].convert("RGB")), cv2.COLOR_RGB2BGR)
        with self._lock:  # one interpreter, not thread-safe
            if self._detector is None:
                self._detector = Detector(self.options)
            detections = as_dicts(self._detector.detect(frame))
        height, width = frame.shape[:2]
        return Findings(width, height, 0.0, detections, tracked=False)


def from_settings(settings: Settings) -> DetectorBackend:
    """The backend plugin (``--backend detector``)."""
    return DetectorBackend(detector_options(settings))
