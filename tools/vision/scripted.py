"""A backend that replays given answers: for tests of meaning, never for real use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

from tools.vision.base import VisionRequest, VisionResult

Responder = Callable[[VisionRequest], str]


class ScriptedBackend:
    """Answers each request with the next scripted answer, or with ``responder(request)``.

    Every batch it receives is recorded in ``batches`` (request lists), so tests can see
    how the engine grouped requests.
    """

    def __init__(
        self,
        answers: Iterable[str] | Responder = (),
        *,
        model_name: str = "scripted",
        default: str | None = None,
    ) -> None:
        self.model_name = model_name
        self._responder = answers if callable(answers) else None
        self._answers = [] if callable(answers) else list(answers)
        self._default = default
        self._lock = threading.Lock()
        self.batches: list[list[VisionRequest]] = []

    @property
    def requests(self) -> list[VisionRequest]:
        """Every request answered so far, in order."""
        return [request for batch in self.batches for request in batch]

    def _answer(self, request: VisionRequest) -> str:
        if self._responder is not None:
            return self._responder(request)
        if self._answers:
            return self._answers.pop(0)
        if self._default is not None:
            return self._default
        raise RuntimeError("scripted backend ran out of answers")

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        with self._lock:
            self.batches.append(list(requests))
            return [
                VisionResult(
                    text=self._answer(request),
                    model=self.model_name,
                    latency_ms=0.0,
                    image_tokens=0,
                    extra={"batch_size": len(requests)},
                )
                for request in requests
            ]
