"""scenewatch's keys on a Redis server: the streams, their consumer groups, the capped add, reconnects.

Keys, under the prefix (``SCENEWATCH_REDIS_PREFIX``, default ``scenewatch``):

- ``<prefix>:frames``: gated frames (:class:`~agent.distributed.messages.FrameMessage`), read by the
  consumer group ``workers``. A worker acknowledges and deletes a frame in the same transaction that
  adds its result, so the stream's length is the backlog: frames waiting or in a worker's hands.
  It is capped: :meth:`Streams.add_frame` adds (``XADD ... MAXLEN ~ N``) only while fewer than
  ``redis_frames_max`` are there, checked and added in one server-side script.
- ``<prefix>:observations``: results (:class:`~agent.distributed.messages.ResultMessage`), read by the
  consumer group ``recorders``; never trimmed (a result is lost only by being stored), deleted once stored.
- ``<prefix>:dead``: frames that failed ``redis_max_deliveries`` times, or could not be read, with why.
- ``<prefix>:questions``: a hash of the watch questions (name -> text), written by the recorder.
- ``<prefix>:window:<source>``: the source's latest summaries, newest first, capped at ``window``
  entries, written by the recorder; workers read it for the describe prompt.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from memory.observation import Observation

log = logging.getLogger(__name__)

WORKERS = "workers"
RECORDERS = "recorders"
SOCKET_TIMEOUT_S = 10.0
"""Longest wait for one Redis reply (longer than any blocking read scenewatch makes)."""
RETRY_MAX_S = 2.0
"""Longest pause between two attempts while Redis cannot be reached."""

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry: its id and its fields."""

T = TypeVar("T")

_CAPPED_ADD = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 2))
"""
"""Add an entry unless the stream holds the cap already (atomic: several capture processes share it)."""

OUTAGES = (RedisConnectionError, RedisTimeoutError)
"""What a Redis that is down, restarting or loading its append-only file raises."""


def connect(url: str) -> redis.Redis:
    """A client of the Redis server at ``url``, checked with a PING (ScenewatchError: no answer)."""
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=5.0, health_check_interval=30
        )
        client.ping()
    except ValueError as exc:
        raise ScenewatchError(f"not a Redis URL: {url} ({exc})") from None
    except redis.RedisError as exc:
        raise ScenewatchError(
            f"cannot reach Redis at {url}: {exc} (start one with `redis-server`; see README, Scale-out)"
        ) from None
    return client


def redis_url(settings: Settings) -> str:
    """The Redis URL the settings name; ScenewatchError when there is none."""
    if not settings.redis_url:
        raise ScenewatchError("no Redis server: give --redis URL (or SCENEWATCH_REDIS_URL)")
    return settings.redis_url


class Reconnecting:
    """Runs Redis calls again while the server is down, with a growing pause, until it answers or
    ``stop`` is set: an outage is logged once when it starts and once when it ends."""

    def __init__(self, stop: threading.Event, what: str) -> None:
        self.stop = stop
        self.what = what
        self.outages = 0

    def __call__(self, call: Callable[[], T]) -> T | None:
        """``call()``'s result; None when ``stop`` was set before Redis answered."""
        pause, down_since = 0.05, None
        while True:
            try:
                result = call()
            except OUTAGES as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    self.outages += 1
                    log.warning("%s: Redis is unreachable (%s); trying again", self.what, exc)
                if self.stop.wait(pause):
                    return None
                pause = min(pause * 2, RETRY_MAX_S)
                continue
            if down_since is not None:
                log.info("%s: Redis is back after %.1f s", self.what, time.monotonic() - down_since)
            return result


class Streams:
    """The keys of one scenewatch installation on one Redis server (see the module docstring)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.prefix = settings.redis_prefix
        self.frames_max = settings.redis_frames_max
        self.frames = f"{self.prefix}:frames"
        self.observations = f"{self.prefix}:observations"
        self.dead = f"{self.prefix}:dead"
        self.questions_key = f"{self.prefix}:questions"
        self._capped_add = client.register_script(_CAPPED_ADD)

    def window_key(self, source: str) -> str:
        return f"{self.prefix}:window:{source}"

    def ensure_groups(self) -> None:
        """Create the consumer groups (from the start of each stream) unless they exist."""
        for stream, group in ((self.frames, WORKERS), (self.observations, RECORDERS)):
            try:
                self.client.xgroup_create(stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def add_frame(self, fields: dict[str, bytes]) -> bool:
        """Add a frame to the frames stream; False when the stream is full (nothing added)."""
        flat: list[Any] = [self.frames_max]
        for name, value in fields.items():
            flat += [name, value]
        return self._capped_add(keys=[self.frames], args=flat) is not None

    def backlog(self) -> int:
        """Frames waiting or in a worker's hands."""
        return int(self.client.xlen(self.frames))

    def questions(self) -> dict[str, str]:
        """The watch questions the recorder published (name -> text)."""
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self.questions_key).items()}

    def publish_questions(self, questions: dict[str, str]) -> None:
        """Replace the published watch questions."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.questions_key)
            if questions:
                pipe.hset(self.questions_key, mapping=questions)
            pipe.execute()

    def windows(self, sources: Iterable[str]) -> dict[str, list[Observation]]:
        """Each source's latest summaries as observations (``source``, ``ts``, ``summary``), oldest first."""
        names = list(dict.fromkeys(sources))
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.lrange(self.window_key(name), 0, -1)
            lists = pipe.execute()
        windows = {}
        for name, items in zip(names, lists, strict=True):
            recent = []
            for item in reversed(items):
                try:
                    entry = json.loads(item)
                    recent.append(
                        Observation(source=name, ts=float(entry["ts"]), summary=str(entry["summary"]))
                    )
                except (ValueError, KeyError, TypeError):
                    log.warning("%s: an unreadable entry in the recent window: skipped", name)
            windows[name] = recent
        return windows

    def remember(self, observations: Sequence[Observation], size: int) -> None:
        """Put stored observations in their sources' windows (newest first, ``size`` kept)."""
        if not observations:
            return
        with self.client.pipeline(transaction=True) as pipe:
            for obs in observations:
                key = self.window_key(obs.source)
                pipe.lpush(key, json.dumps({"ts": obs.ts, "summary": obs.summary}, ensure_ascii=False))
                pipe.ltrim(key, 0, max(0, size - 1))
                if size == 0:
                    pipe.delete(key)
            pipe.execute()

    def seed_windows(self, recent: dict[str, list[Observation]], size: int) -> None:
        """Replace the sources' windows with their latest stored observations (oldest first)."""
        with self.client.pipeline(transaction=True) as pipe:
            for source, observations in recent.items():
                pipe.delete(self.window_key(source))
                for obs in observations[-size:] if size else []:
                    pipe.lpush(self.window_key(source), json.dumps({"ts": obs.ts, "summary": obs.summary}))
            pipe.execute()

    def delivered(self, group: str, entry_id: bytes) -> int:
        """How many times the group has handed out this entry (0 when it is not pending)."""
        stream = self.frames if group == WORKERS else self.observations
        pending = self.client.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
        return int(pending[0]["times_delivered"]) if pending else 0
