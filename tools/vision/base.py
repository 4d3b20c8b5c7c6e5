"""The small interface every vision backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from agent.core.errors import ScenewatchError

Message = dict[str, Any]
"""A chat message in the Hugging Face format.

``content`` is a string or a list of parts: ``{"type": "text", "text": ...}`` and
``{"type": "image", "image": PIL.Image}``. Assistant messages may carry ``tool_calls``;
tool results use ``role: "tool"``.
"""


class VisionError(ScenewatchError):
    """A backend could not answer: the message is meant for the user."""


@dataclass(frozen=True)
class VisionRequest:
    """One conversation to answer: messages (with images inline) and optional tools."""

    messages: tuple[Message, ...]
    tools: tuple[dict[str, Any], ...] = ()
    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    findings: Any = None
    """What the watch's perception stage found on the request's frame (a
    :class:`tools.perception.findings.Findings`): the ``detector`` backend answers from it instead of
    running the detector again on the shrunk image; other backends ignore it."""

    @classmethod
    def ask(
        cls,
        prompt: str,
        images: Sequence[Image.Image] = (),
        *,
        system: str | None = None,
        max_new_tokens: int | None = None,
    ) -> VisionRequest:
        """A single user turn: the images first, then the prompt."""
        parts: list[dict[str, Any]] = [{"type": "image", "image": im} for im in images]
        parts.append({"type": "text", "text": prompt})
        messages: list[Message] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": parts})
        return cls(messages=tuple(messages), max_new_tokens=max_new_tokens)

    @property
    def images(self) -> list[Image.Image]:
        """Every image in the conversation, in order."""
        return [
            part["image"]
            for message in self.messages
            if isinstance(message.get("content"), list)
            for part in message["content"]
            if part.get("type") == "image"
        ]


@dataclass
class VisionResult:
    """A backend's answer to one request."""

    text: str
    model: str
    latency_ms: float
    image_tokens: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The answer as ``look --json`` and ``POST /api/look`` give it (``detections``: the detector
        backend's; null for a vision-language model)."""
        return {
            "text": self.text,
            "model": self.model,
            "latency_ms": round(self.latency_ms, 1),
            "image_tokens": self.image_tokens,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "detections": self.extra.get("detections"),
        }


@runtime_checkable
class VisionBackend(Protocol):
    """Answers a batch of requests in one call, one result per request, in order."""

    model_name: str

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]: ...
