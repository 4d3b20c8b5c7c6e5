"""The messages of the scale-out streams: a gated frame for the workers, a result for the recorder.

A stream entry is a flat map of fields: ``meta`` (JSON) and the picture as raw JPEG bytes
(``jpeg`` for a frame, ``thumb`` for a result). Every frame has a ``frame_id`` made from its source
and its time (video time for files, capture time for live sources), so a frame delivered twice,
or read again after a capture process restarted, is recognised: the store keeps it once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from agent.core.errors import ScenewatchError
from agent.sources import Frame
from memory.observation import Observation
from tools.perception.findings import Findings, Track

JPEG_QUALITY = 90
"""The quality frames travel at: the model sees them after one more resize at most."""

Fields = Mapping[bytes | str, bytes | str]
"""A stream entry's fields as redis-py gives them (bytes keys and values)."""


class MessageError(ScenewatchError):
    """A stream entry that is not a scenewatch message (a field missing, bad JSON, an unreadable JPEG)."""


def frame_id(source: str, ts: float, video_t: float | None) -> str:
    """The frame's unique id: a hash of the source, then the video time (files) or the capture time
    (live), in milliseconds."""
    digest = hashlib.blake2b(source.encode(), digest_size=8).hexdigest()
    return f"{digest}:v{round(video_t * 1000)}" if video_t is not None else f"{digest}:c{round(ts * 1000)}"


def encode_jpeg(image: np.ndarray, max_side: int, quality: int = JPEG_QUALITY) -> bytes:
    """A BGR image as JPEG bytes, its longest side at most ``max_side`` (area averaging)."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MessageError("the JPEG encoder failed")
    return data.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes as a BGR image; MessageError when they are not a readable JPEG."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise MessageError("the frame's JPEG cannot be decoded")
    return image


@dataclass(frozen=True)
class FrameMessage:
    """A gated frame on its way to a worker."""

    frame_id: str
    source: str
    ts: float
    video_t: float | None
    live: bool
    reason: str  # why the gate let it through: first, change, heartbeat ...
    score: float | None
    jpeg: bytes
    sent: float  # epoch seconds when capture added it (the latency the streams add)
    findings: Findings | None = None  # the detector stage's, when it ran in capture

    @classmethod
    def of(
        cls,
        source: str,
        frame: Frame,
        *,
        live: bool,
        reason: str,
        score: float | None,
        max_side: int,
        sent: float,
        findings: Findings | None = None,
    ) -> FrameMessage:
        """The message of a sampled frame, its picture shrunk to ``max_side``."""
        return cls(
            frame_id(source, frame.ts, frame.video_t),
            source,
            frame.ts,
            frame.video_t,
            live,
            reason,
            score,
            encode_jpeg(frame.image, max_side),
            sent,
            findings,
        )

    def fields(self) -> dict[str, bytes]:
        """The stream entry's fields."""
        meta = {
            "frame_id": self.frame_id,
            "source": self.source,
            "ts": self.ts,
            "video_t": self.video_t,
            "live": self.live,
            "reason": self.reason,
            "score": self.score,
            "sent": self.sent,
            "findings": findings_record(self.findings),
        }
        return {"meta": json.dumps(meta).encode(), "jpeg": self.jpeg}

    @classmethod
    def from_fields(cls, fields: Fields) -> FrameMessage:
        """The message a stream entry holds; MessageError when it holds none."""
        meta = _meta(fields)
        try:
            return cls(
                str(meta["frame_id"]),
                str(meta["source"]),
                float(meta["ts"]),
                None if meta.get("video_t") is None else float(meta["video_t"]),
                bool(meta.get("live", False)),
                str(meta.get("reason", "")),
                None if meta.get("score") is None else float(meta["score"]),
                _bytes(fields, "jpeg"),
                float(meta.get("sent", 0.0)),
                findings_from_record(meta.get("findings")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MessageError(f"a frame message lacks a field or has a bad one: {exc}") from None

    def image(self) -> np.ndarray:
        """The frame, decoded (BGR)."""
        return decode_jpeg(self.jpeg)


def findings_record(findings: Findings | None) -> dict[str, Any] | None:
    """A frame's findings as JSON-ready data (None without)."""
    if findings is None:
        return None
    record = asdict(findings)
    record["tracks"] = [track.to_dict() for track in findings.tracks]
    return record


def findings_from_record(record: dict[str, Any] | None) -> Findings | None:
    """The findings :func:`findings_record` wrote (TypeError or KeyError when they are malformed)."""
    if record is None:
        return None
    tracks = [
        Track(**{**track, "zones": tuple(track.get("zones", ()))}) for track in record.get("tracks", [])
    ]
    return Findings(**{**record, "tracks": tracks})


_NOT_SENT = ("id", "episode_id", "thumb_path")
"""Observation fields the recorder sets, never a worker."""


@dataclass(frozen=True)
class ResultMessage:
    """What a worker made of a frame: the observation to store and its thumbnail."""

    observation: Observation
    thumb: bytes | None
    sent: float  # the frame's capture time (epoch seconds), carried on
    worker: str
    extra: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, bytes]:
        """The stream entry's fields."""
        record = {k: v for k, v in self.observation.to_dict().items() if k not in _NOT_SENT}
        meta = {"observation": record, "sent": self.sent, "worker": self.worker, "extra": self.extra}
        fields = {"meta": json.dumps(meta, ensure_ascii=False).encode()}
        if self.thumb:
            fields["thumb"] = self.thumb
        return fields

    @classmethod
    def from_fields(cls, fields: Fields) -> ResultMessage:
        """The message a stream entry holds; MessageError when it holds none."""
        meta = _meta(fields)
        try:
            record = dict(meta["observation"])
            observation = Observation(**{k: v for k, v in record.items() if k not in _NOT_SENT})
            if not observation.frame_id:
                raise ValueError("no frame_id")
            thumb = _bytes(fields, "thumb") if _get(fields, "thumb") is not None else None
            return cls(observation, thumb, float(meta.get("sent", 0.0)), str(meta.get("worker", "")),
                       dict(meta.get("extra") or {}))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise MessageError(f"a result message lacks a field or has a bad one: {exc}") from None


def _get(fields: Fields, name: str) -> bytes | str | None:
    value = fields.get(name.encode())
    return fields.get(name) if value is None else value


def _bytes(fields: Fields, name: str) -> bytes:
    value = _get(fields, name)
    if value is None:
        raise MessageError(f"the message has no {name} field")
    return value.encode() if isinstance(value, str) else value


def _meta(fields: Fields) -> dict[str, Any]:
    try:
        meta = json.loads(_bytes(fields, "meta"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"the message's meta field is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise MessageError("the message's meta field is not a JSON object")
    return meta
