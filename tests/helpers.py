"""What several test modules share besides fixtures: fixed times and test doubles."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from tools.vision.base import VisionBackend, VisionRequest, VisionResult
from tools.vision.scripted import Responder, ScriptedBackend

FROZEN_NOW = datetime(2025, 6, 14, 15, 30).timestamp()
"""A fixed local time (a Saturday afternoon) for tests about "today", "10m ago" and dates."""


UseBackend = Callable[[VisionBackend], None]
"""The ``use_backend`` fixture: makes every command run the backend it is given."""


def echo_upper(request: VisionRequest) -> str:
    """An answer that proves which request it answers: the prompt in capitals."""
    return request.messages[-1]["content"][-1]["text"].upper()


class SlowBackend(ScriptedBackend):
    """A scripted backend whose every batch takes ``delay`` seconds."""

    def __init__(
        self, delay: float, answers: Iterable[str] | Responder = (), *, default: str | None = None
    ) -> None:
        super().__init__(answers, default=default)
        self.delay = delay

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        time.sleep(self.delay)
        return super().generate(requests)


class BrokenBackend(ScriptedBackend):
    """A backend that fails every batch, as a GPU in trouble does."""

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        raise RuntimeError("CUDA error: device-side assert")
