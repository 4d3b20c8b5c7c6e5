"""Text reading with RapidOCR: PP-OCR detection, direction and recognition models (ONNX) shipped in
its wheel, run by onnxruntime.

Every model path is given explicitly, so RapidOCR never reaches its download code (without
them it re-downloads a model whose sha256 it does not like); only arrays are passed in (a string
would be fetched as a URL). About 0.3–0.6 s a 640×360 frame on one CPU core, once the models are
loaded (the first read).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from agent.core.errors import ScenewatchError
from tools.perception.pixels import to_bgr_uint8

log = logging.getLogger(__name__)

MODEL_FILES = {
    "Det.model_path": "PP-OCRv6_det_small.onnx",
    "Cls.model_path": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec.model_path": "PP-OCRv6_rec_small.onnx",
}
DET_SIDE = 480
"""The text detector's shorter input side: a 640×360 frame reads the same lines as at RapidOCR's
736, in about two thirds of the time."""


@dataclass(frozen=True)
class TextLine:
    """One line of text: what it says, the recogniser's score and its box in frame pixels."""

    text: str
    score: float
    box: tuple[int, int, int, int]


def packaged_models() -> Path:
    """The folder of the ONNX models inside the installed rapidocr wheel."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise ScenewatchError("reading text needs the rapidocr package: pip install rapidocr")
    return Path(spec.origin).parent / "models"


class TextReader:
    """Reads the lines of text in a frame (one read at a time: the engine is not thread-safe)."""

    def __init__(self, *, det_side: int = DET_SIDE, min_score: float = 0.5, num_threads: int = 2) -> None:
        if importlib.util.find_spec("onnxruntime") is None:
            raise ScenewatchError("reading text needs onnxruntime, which rapidocr does not install: "
                                  "pip install onnxruntime")  # fmt: skip
        params: dict[str, object] = {
            "Global.log_level": "warning",
            "Global.text_score": min_score,
            "Det.limit_side_len": det_side,
            "EngineConfig.onnxruntime.intra_op_num_threads": num_threads,
        }
        folder = packaged_models()
        for key, name in MODEL_FILES.items():
            path = folder / name
            if not path.is_file():
                raise ScenewatchError(f"the OCR model {path} is missing (reinstall rapidocr)")
            params[key] = str(path)
        from rapidocr import RapidOCR

        self._engine = RapidOCR(params=params)
        self._lock = threading.Lock()

    def read(self, frame: np.ndarray) -> list[TextLine]:
        """The text lines in a frame of any format, top to bottom and left to right."""
        image = to_bgr_uint8(frame)
        if image.shape[0] < 2 or image.shape[1] < 2:
            return []
        with self._lock:
            out = self._engine(image)
        texts, found, boxes = (getattr(out, name, None) for name in ("txts", "scores", "boxes"))
        if texts is None or found is None or boxes is None:
            return []
        lines = []
        for text, score, quad in zip(texts, found, boxes, strict=True):
            xs, ys = np.asarray(quad)[:, 0], np.asarray(quad)[:, 1]
            box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
            lines.append(TextLine(str(text), round(float(score), 3), box))
        return sorted(lines, key=lambda line: (line.box[1], line.box[0]))


@cache
def shared_reader() -> TextReader:
    """The process's one TextReader (its models load once, at the first read's construction)."""
    log.debug("loading the OCR models from %s", packaged_models())
    return TextReader()
