"""The live stream (``GET /api/stream``): observations and events as Server-Sent Events, from the store.

Each client reads the store itself, after its own cursor, so the live feed and the catch-up after
a reconnect are one path: nothing is held in memory for a slow client, nothing is missed, nothing
comes twice. A cursor is ``<observation id>-<event id>``, the latest of each a client was sent;
it is every message's SSE ``id``, so a browser's ``EventSource`` sends the last one back as
``Last-Event-ID`` when it reconnects. Without one the stream starts at the newest rows (or at the
``after`` query parameter: the cursor a page got with its first snapshot).

:class:`CommitSignal`, the last listener of the watch, wakes the streams after each commit; they
also look every :data:`POLL_S` (another process may write the same database). An event is sent
after the observation that raised it. Messages: ``event: observation`` (the observation's JSON,
as ``GET /api/observations`` gives it) and ``event: event`` (as ``GET /api/events`` gives it);
a ``: ping`` comment keeps idle connections open. A stream ends when the client goes or the
server stops (``stopping``).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from agent.service.documents import observation_document
from agent.service.errors import ApiError
from memory.events import Outbox
from memory.observation import Observation
from memory.store import Store

Kind = Literal["observation", "event"]
KINDS: tuple[Kind, ...] = ("observation", "event")
POLL_S = 1.0
"""How often a stream reads the store when no commit woke it."""
BATCH = 200
"""Most rows of each kind one read sends."""
RETRY_MS = 1000
"""How long a browser waits before reconnecting (the SSE ``retry`` field)."""

_CURSOR = re.compile(r"(\d{1,18})-(\d{1,18})")


@dataclass(frozen=True)
class Cursor:
    """The latest observation id and the latest event id a client was sent."""

    observation: int = 0
    event: int = 0

    def __str__(self) -> str:
        return f"{self.observation}-{self.event}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """A cursor from ``123-45`` (ApiError, a 400, for anything else)."""
        match = _CURSOR.fullmatch(text.strip())
        if match is None:
            raise ApiError(
                f"not a stream cursor: {text[:40]!r} (expected OBSERVATION_ID-EVENT_ID, e.g. 120-7)"
            )
        return cls(int(match[1]), int(match[2]))


class CommitSignal:
    """An observation listener, last in line: after each commit (the observation and the events its
    rules raised), it wakes every waiting stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @contextmanager
    def subscription(self) -> Iterator[asyncio.Event]:
        """An event set at each commit from now on, for the calling task's loop."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        try:
            yield waiter[1]
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def notify(self) -> None:
        """Wake every stream (from any thread)."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with suppress(RuntimeError):  # that loop is closed: its server is gone
                loop.call_soon_threadsafe(event.set)

    def on_observation(self, obs: Observation) -> None:
        self.notify()

    def close(self) -> None:
        self.notify()


def newest_cursor(store: Store, outbox: Outbox) -> Cursor:
    """The cursor of the newest rows: a stream from it sends only what comes next."""
    return Cursor(store.last_id(), outbox.last_id())


def read_after(
    store: Store, outbox: Outbox, cursor: Cursor, kinds: tuple[Kind, ...], source: str | None
) -> tuple[list[tuple[Kind, dict[str, Any], Cursor]], bool]:
    """The messages after ``cursor`` (each with the cursor after it), and whether more are waiting.

    Observations are read first, then events. The watch commits an observation and the events its
    rules raise before it commits the next observation, so the events read include those of every
    observation read but the last (whose events may come in the next read, still before any later
    observation); events of observations not read yet wait for the next read. Each event is sent
    right after its observation.
    """
    observations = (
        store.page(after_id=cursor.observation, source=source, limit=BATCH) if "observation" in kinds else []
    )
    events = outbox.after(cursor.event, source=source, limit=BATCH) if "event" in kinds else []
    more = len(events) == BATCH or len(observations) == BATCH
    if "observation" in kinds:
        sent = max([cursor.observation, *(obs.id or 0 for obs in observations)])
        cut = next((i for i, event in enumerate(events) if (event["observation_id"] or 0) > sent), None)
        events = events if cut is None else events[:cut]
    rows: list[tuple[tuple[int, int, int], Kind, dict[str, Any]]] = [
        ((obs.id or 0, 0, 0), "observation", observation_document(obs)) for obs in observations
    ]
    rows += [((event["observation_id"] or 0, 1, event["id"]), "event", event) for event in events]
    messages: list[tuple[Kind, dict[str, Any], Cursor]] = []
    for _, kind, data in sorted(rows, key=lambda row: row[0]):
        if kind == "observation":
            cursor = Cursor(data["id"], cursor.event)
        else:
            cursor = Cursor(cursor.observation, data["id"])
        messages.append((kind, data, cursor))
    return messages, more


def sse(kind: str, data: dict[str, Any], message_id: str | None = None) -> str:
    """One SSE message (``data`` as one line of JSON)."""
    head = f"id: {message_id}\n" if message_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


async def live_messages(
    store: Store,
    outbox: Outbox,
    signal: CommitSignal,
    cursor: Cursor,
    *,
    kinds: tuple[Kind, ...] = KINDS,
    source: str | None = None,
    ping_s: float = 15.0,
    stopping: threading.Event,
) -> AsyncIterator[str]:
    """The SSE text of a stream from ``cursor`` until ``stopping`` is set or the client goes."""
    loop = asyncio.get_running_loop()
    yield f"retry: {RETRY_MS}\n\n"
    with signal.subscription() as woken:
        quiet_since = loop.time()
        while not stopping.is_set():
            woken.clear()
            messages, more = await anyio.to_thread.run_sync(read_after, store, outbox, cursor, kinds, source)
            for kind, data, after in messages:
                yield sse(kind, data, str(after))
                cursor = after
            if messages:
                quiet_since = loop.time()
            if more:
                continue
            with suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), POLL_S)
            if loop.time() - quiet_since >= ping_s:
                yield ": ping\n\n"
                quiet_since = loop.time()
