"""The detector's model files (package data) and its COCO labels, checked by sha256."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from agent.core.errors import ScenewatchError

MODELS = Path(__file__).resolve().parent / "models"
SSD_FILE = MODELS / "mobilenet_ssd_v2_coco_quant_postprocess.tflite"
SSD_SHA256 = "7046f31a72ec0045a57b94199144c96cf5840c7dc106b808b64a1ed5559aa0cd"
LABELS_FILE = MODELS / "coco_labels.txt"
LABELS_SHA256 = "93f235896748537fc71325a070ee32e9a0afda2481ceb943559325619763fa6d"


class ModelFileError(ScenewatchError):
    """A model or label file is missing, unreadable or not the bytes expected."""


def checked_bytes(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes when their sha256 is ``expected_sha256``; else one ModelFileError naming both."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(
            f"cannot read the model file {path} ({exc.strerror or exc}); expected sha256 {expected_sha256}"
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ModelFileError(
            f"the model file {path} is damaged or not the one shipped: sha256 {actual}, "
            f"expected {expected_sha256} (reinstall scenewatch)"
        )
    return data


def read_labels(path: Path = LABELS_FILE, expected_sha256: str = LABELS_SHA256) -> dict[int, str]:
    """``id  name`` lines as id -> name (80 COCO names over the ids 0..89, with gaps)."""
    labels: dict[int, str] = {}
    for line in checked_bytes(path, expected_sha256).decode("utf-8").splitlines():
        if line.strip():
            number, name = line.split(maxsplit=1)
            labels[int(number)] = name.strip()
    return labels


@cache
def coco_labels() -> tuple[str, ...]:
    """The 80 label names the shipped detector knows, in id order ("person", "bicycle", ...)."""
    return tuple(read_labels().values())


def check_classes(names: list[str] | tuple[str, ...] | set[str]) -> None:
    """ScenewatchError for a name the detector does not know (a typo would silently find nothing)."""
    unknown = sorted(set(names) - set(coco_labels()))
    if unknown:
        raise ScenewatchError(
            f"the detector knows no class {', '.join(map(repr, unknown))} (COCO labels: "
            f"{', '.join(coco_labels())})"
        )
