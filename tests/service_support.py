"""What the service tests share: a served Service on a free 127.0.0.1 port, an SSE reader, waits."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agent.core.config import Settings, load_settings
from agent.events.ruleset import load_rules
from agent.service.runtime import Service
from agent.service.server import ServerThread
from tools.vision.base import VisionBackend, VisionRequest
from tools.vision.scripted import ScriptedBackend

RULES = """
questions:
  box: "Is there a red box?"
sinks:
  log: {type: jsonl, path: events.jsonl}
state_changes:
  changes: false
rules:
  box_seen:
    when: "box"
    severity: info
    message: "a box: $summary"
    sinks: [log]
"""


def frame_counter(delay: float = 0.0) -> ScriptedBackend:
    """A vision backend that numbers its answers and sees the red box of the synthetic clip
    (``delay`` seconds per request: the observations come one by one)."""
    counter = itertools.count()

    def answer(request: VisionRequest) -> str:
        import numpy as np

        time.sleep(delay)
        pixels = np.asarray(request.images[-1].convert("RGB")).astype(int) if request.images else None
        red = pixels is not None and (
            ((pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).mean() > 0.05
        )
        summary = f"frame {next(counter)}: " + ("a red box" if red else "an empty scene")
        return json.dumps({"summary": summary, "people": 0, "answers": {"box": bool(red)}})

    return ScriptedBackend(answer)


def settings_for(home: Path, **overrides: Any) -> Settings:
    return load_settings(home=home, **overrides)


def wait_until(check: Callable[[], Any], timeout: float = 60.0, what: str = "the condition") -> Any:
    """Poll ``check`` until it returns something true, within ``timeout`` seconds; an HTTP error
    meanwhile (a server still starting) counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Served:
    """A running service and a client of its API."""

    service: Service
    url: str
    client: httpx.Client

    def wait_for(self, check: Callable[[], Any], timeout: float = 60.0, what: str = "the condition") -> Any:
        """Poll ``check`` until it returns something true (bounded in time)."""
        return wait_until(check, timeout, what)

    def source_state(self, source_id: int) -> str:
        return self.client.get(f"/api/sources/{source_id}").json()["state"]


@contextmanager
def served(
    settings: Settings,
    *,
    sources: list[str] = (),  # type: ignore[assignment]
    backend: VisionBackend | None = None,
    rules: Path | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[Served]:
    """A Service on a free 127.0.0.1 port until the block ends (then stopped and closed); ready."""
    service = Service(
        settings,
        sources=list(sources),
        backend=backend or frame_counter(),
        ruleset=load_rules(rules) if rules is not None else None,
    )
    server = ServerThread(service)
    with server as url, httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        assert service.wait_ready(60), service.failure
        yield Served(service, url, client)


def sse_messages(response: httpx.Response, limit: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Up to ``limit`` SSE messages (``id``, ``event``, ``data`` parsed) of a streaming response."""
    messages: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            break
        if not line:
            if "data" in current:
                messages.append(current)
                if len(messages) >= limit:
                    break
            current = {}
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            current["data"] = json.loads(value)
        elif field in ("id", "event"):
            current[field] = value
    return messages
