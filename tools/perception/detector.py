"""Object detection on the CPU: SSD MobileNet v2 COCO (uint8 TFLite, shipped in ``models/``) via LiteRT.

One pass sees the whole frame squashed to 300×300 and returns at most ``max_per_pass`` (20)
boxes, so small people and crowds need more passes: tiling adds passes over overlapping cells of
the frame. ``tiling="auto"`` (the default) cuts a frame whose sides are both at least 300 px
into cells of about 400 px, at least 2×2 (CCTV at 640×360: 2×2, the setting that counted the shop
clip's people best; 1920×1080: 5×3) and at most 16, and splits any tile that comes back full
once more; a frame under 300 px gets one pass unless that pass is full. Every tiled run keeps the
whole-frame pass (large objects); a box that touches a tile's inner edge is dropped (that object
is cut there and whole in another pass); everything is merged with supervision's NMS by IoS, so
a half-body box inside the whole one goes. Boxes are in the source frame's pixels.

Detections are ``sv.Detections`` with ``data["class_name"]``; :func:`as_dicts` gives the
``{label, score, box[, track]}`` records that observations store.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import supervision as sv
from ai_edge_litert.interpreter import Interpreter

from agent.core.errors import ScenewatchError
from tools.perception.labels import SSD_FILE, SSD_SHA256, check_classes, checked_bytes, read_labels
from tools.perception.pixels import to_bgr_uint8

Box = tuple[int, int, int, int]
Grid = tuple[int, int]

MIN_TILED_SIDE = 300
"""Frames with a shorter side get one pass (unless it comes back full): their tiles would be upscaled."""
TILE_SIDE = 400
"""Auto tiling cuts frames into cells of about this many pixels (at least 2×2), near the model's own
300×300 input: a 1280×720 frame into 3×2, 1920×1080 into 5×3. A walker 100 px tall in a 1920×1080
frame was found in 5 of 5 places with 5×3 cells, in 2 of 5 with 3×2."""
MAX_TILES = 16
MAX_PASSES = 64
"""The most model passes one frame may cost, splits of full passes included."""
OVERLAP = 0.2
"""How much each tile is grown into its neighbours (a share of its size)."""
NMS_THRESHOLD = 0.5
_TILING = re.compile(r"(\d+)x(\d+)")


def parse_tiling(text: str) -> Grid | None:
    """``"auto"`` -> None (decided per frame), ``"off"`` -> (1, 1), ``"3x2"`` -> (3, 2) columns × rows."""
    value = text.strip().lower()
    if value == "auto":
        return None
    if value == "off":
        return (1, 1)
    match = _TILING.fullmatch(value)
    if match is None or min(int(match.group(1)), int(match.group(2))) < 1:
        raise ScenewatchError(f"detector tiling is auto, off or COLUMNSxROWS such as 2x2 (got {text!r})")
    cols, rows = int(match.group(1)), int(match.group(2))
    if cols * rows > MAX_TILES:
        raise ScenewatchError(f"detector tiling {text!r} has more than {MAX_TILES} tiles")
    return cols, rows


def auto_grid(width: int, height: int) -> Grid:
    """The tiles ``tiling="auto"`` uses for a frame: 1×1 under 300 px, else cells of about 400 px, at
    least 2×2 and at most 16."""
    if min(width, height) < MIN_TILED_SIDE:
        return (1, 1)
    cols, rows = max(2, round(width / TILE_SIDE)), max(2, round(height / TILE_SIDE))
    while cols * rows > MAX_TILES:
        if cols >= rows:
            cols -= 1
        else:
            rows -= 1
    return cols, rows


def tile_boxes(region: Box, cols: int, rows: int, overlap: float = OVERLAP) -> list[Box]:
    """A cols × rows grid over ``region`` (x1, y1, x2, y2), each cell grown by ``overlap`` of its size."""
    x0, y0, x_end, y_end = region
    cell_w, cell_h = (x_end - x0) / cols, (y_end - y0) / rows
    pad_x, pad_y = cell_w * overlap / 2, cell_h * overlap / 2
    return [
        (
            max(x0, math.floor(x0 + c * cell_w - pad_x)),
            max(y0, math.floor(y0 + r * cell_h - pad_y)),
            min(x_end, math.ceil(x0 + (c + 1) * cell_w + pad_x)),
            min(y_end, math.ceil(y0 + (r + 1) * cell_h + pad_y)),
        )
        for r in range(rows)
        for c in range(cols)
    ]


def cut_by_tile(xyxy: np.ndarray, tile: Box, width: int, height: int, margin: float = 2.0) -> np.ndarray:
    """Which boxes touch an edge of ``tile`` that lies inside the frame (objects the tile cut)."""
    x1, y1, x2, y2 = tile
    cut = np.zeros(len(xyxy), dtype=bool)
    if x1 > 0:
        cut |= xyxy[:, 0] <= x1 + margin
    if y1 > 0:
        cut |= xyxy[:, 1] <= y1 + margin
    if x2 < width:
        cut |= xyxy[:, 2] >= x2 - margin
    if y2 < height:
        cut |= xyxy[:, 3] >= y2 - margin
    return cut


def scores(detections: sv.Detections) -> np.ndarray:
    """The detections' confidences (ones when a source gave none)."""
    if detections.confidence is None:
        return np.ones(len(detections), dtype=np.float32)
    return detections.confidence


def select(detections: sv.Detections, index: np.ndarray) -> sv.Detections:
    """``detections[index]`` for a mask or an index array, typed as Detections."""
    chosen = detections[index]
    assert isinstance(chosen, sv.Detections)
    return chosen


def labelled_empty() -> sv.Detections:
    """No detections, with the ``class_name`` data every result carries."""
    empty = sv.Detections.empty()
    empty.data["class_name"] = np.array([], dtype=str)
    return empty


def as_dicts(detections: sv.Detections) -> list[dict[str, Any]]:
    """``{label, score, box: [x1, y1, x2, y2]}`` records (pixels, score to 2 places), ``track`` where
    tracked (a ``tracker_id`` of at least 1), highest score first."""
    if len(detections) == 0:
        return []
    tracks = detections.tracker_id if detections.tracker_id is not None else np.full(len(detections), -1)
    records = []
    for box, score, label, track in zip(
        detections.xyxy, scores(detections), detections.data["class_name"], tracks, strict=True
    ):
        record: dict[str, Any] = {
            "label": str(label),
            "score": round(float(score), 2),
            "box": [round(float(value)) for value in box],
        }
        if track >= 1:
            record["track"] = int(track)
        records.append(record)
    return sorted(records, key=lambda record: -record["score"])


@dataclass(frozen=True)
class DetectorOptions:
    """What to keep and how hard to look: the ``SCENEWATCH_DETECTOR_*`` settings."""

    threshold: float = 0.5
    classes: tuple[str, ...] = ()  # empty: every COCO class
    tiling: str = "auto"
    continue_threshold: float = 0.3  # a weaker sighting may only continue a track (ByteTrack's second stage)


class Detector:
    """SSD MobileNet v2 COCO; :meth:`detect` gives ``sv.Detections`` in the frame's pixels.

    The model's bytes are checked against their sha256 before LiteRT reads them (the checked bytes
    are the ones that run). An instance is not thread-safe: one per source thread.
    """

    def __init__(self, options: DetectorOptions | None = None, *, model: bytes | None = None) -> None:
        self.options = options or DetectorOptions()
        self.grid = parse_tiling(self.options.tiling)
        check_classes(self.options.classes)
        self.labels = read_labels()
        self._interpreter = Interpreter(
            model_content=model if model is not None else load_model(), num_threads=1
        )
        with _quiet_native_stderr():  # LiteRT prints "INFO: Created ... XNNPACK delegate" to fd 2
            self._interpreter.allocate_tensors()
        feed = self._interpreter.get_input_details()[0]
        self._input = feed["index"]
        self.input_h, self.input_w = int(feed["shape"][1]), int(feed["shape"][2])
        outputs = self._interpreter.get_output_details()
        # TFLite_Detection_PostProcess: boxes [1,N,4], classes [1,N], scores [1,N], count [1].
        self._outputs = [output["index"] for output in outputs]
        self.max_per_pass = int(outputs[0]["shape"][1])
        self.passes = 0  # model passes run by the last detect()
        self._floor = self.options.threshold  # the least score the passes of this detect() keep

    def detect(self, frame: np.ndarray, *, weak: bool = False) -> sv.Detections:
        """The objects in a frame of any size or format (:func:`~tools.perception.pixels.to_bgr_uint8`),
        highest score first; nothing for an empty frame. ``weak``: down to ``continue_threshold``
        (for a tracker, which lets such sightings only continue a track), else down to ``threshold``."""
        weakest = min(self.options.continue_threshold, self.options.threshold)
        self._floor = weakest if weak else self.options.threshold
        image = to_bgr_uint8(frame)
        height, width = image.shape[:2]
        self.passes = 0
        if height == 0 or width == 0:
            return labelled_empty()
        whole = self._pass(image, (0, 0, width, height))
        parts = [whole]
        grid = self.grid or auto_grid(width, height)
        if self.grid is None and grid == (1, 1) and len(whole) >= self.max_per_pass:
            grid = (2, 2)  # a full pass: a crowd
        if grid != (1, 1):
            parts += self._tiles(image, (0, 0, width, height), grid, split=self.grid is None)
        merged = sv.Detections.merge(parts)
        if len(parts) > 1 and len(merged):
            merged = merged.with_nms(threshold=NMS_THRESHOLD, overlap_metric=sv.OverlapMetric.IOS)
        return self._finish(merged)

    def _tiles(self, image: np.ndarray, region: Box, grid: Grid, *, split: bool) -> list[sv.Detections]:
        """The passes over ``region``'s tiles, less the boxes the tiles cut; a full tile is split 2×2
        once more when ``split`` (auto tiling) and the pass budget allows."""
        height, width = image.shape[:2]
        parts = []
        for tile in tile_boxes(region, *grid):
            if self.passes >= MAX_PASSES:
                break
            found = self._pass(image, tile)
            parts.append(select(found, ~cut_by_tile(found.xyxy, tile, width, height)))
            tile_w, tile_h = tile[2] - tile[0], tile[3] - tile[1]
            crowded = len(found) >= self.max_per_pass and min(tile_w, tile_h) >= MIN_TILED_SIDE // 2
            if split and crowded and self.passes + 4 <= MAX_PASSES:
                parts += self._tiles(image, tile, (2, 2), split=False)
        return parts

    def _pass(self, image: np.ndarray, region: Box) -> sv.Detections:
        """One model pass over ``region`` of the BGR image; boxes in the image's pixels."""
        x1, y1, x2, y2 = region
        crop = image[y1:y2, x1:x2]
        height, width = crop.shape[:2]
        shrink = width > self.input_w and height > self.input_h
        resized = cv2.resize(
            crop, (self.input_w, self.input_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
        self._interpreter.set_tensor(self._input, cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)[np.newaxis])
        self._interpreter.invoke()
        self.passes += 1
        boxes, classes, confidences, count = (self._interpreter.get_tensor(i) for i in self._outputs)
        found = int(count[0])
        keep = confidences[0, :found] >= self._floor
        yxyx = np.clip(boxes[0, :found][keep], 0.0, 1.0)
        xyxy = yxyx[:, [1, 0, 3, 2]] * np.array([width, height, width, height], dtype=np.float32)
        xyxy += np.array([x1, y1, x1, y1], dtype=np.float32)
        return sv.Detections(
            xyxy=xyxy.astype(np.float32).reshape(-1, 4),
            confidence=confidences[0, :found][keep].astype(np.float32),
            class_id=classes[0, :found][keep].astype(int),
        )

    def _finish(self, detections: sv.Detections) -> sv.Detections:
        """Class names attached, the class filter applied, highest score first."""
        if len(detections) == 0 or detections.class_id is None:
            return labelled_empty()
        detections.data["class_name"] = np.array(
            [self.labels.get(int(number), f"id{int(number)}") for number in detections.class_id]
        )
        if self.options.classes:
            detections = select(detections, np.isin(detections.data["class_name"], self.options.classes))
        return select(detections, np.argsort(-scores(detections), kind="stable"))


_STDERR_LOCK = threading.Lock()


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null for the block (C++ libraries write there directly)."""
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def load_model() -> bytes:
    """The shipped detector's bytes, checked against their sha256 (ModelFileError otherwise)."""
    return checked_bytes(SSD_FILE, SSD_SHA256)


def classes_setting(text: str) -> tuple[str, ...]:
    """``"person, car"`` (the ``detector_classes`` setting) as names; empty for every class."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    check_classes(names)
    return names
