"""The last N observations of each source, in memory, for the describe prompt.

Seeded from the store when a watch starts; afterwards the watch loop adds each committed
observation, so building a prompt never reads the database.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from memory.observation import Observation
from memory.store import Store


class RecentWindow:
    """A per-source deque of the latest ``size`` observations (thread-safe)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._recent: dict[str, deque[Observation]] = {}
        self._lock = threading.Lock()

    def seed(self, store: Store, sources: Iterable[str]) -> None:
        """Load each source's latest observations from the store (a restart picks up the thread)."""
        for source in sources:
            observations = store.recent(source, self.size)
            with self._lock:
                self._recent[source] = deque(observations, maxlen=self.size)

    def add(self, obs: Observation) -> None:
        """Remember a committed observation."""
        with self._lock:
            self._recent.setdefault(obs.source, deque(maxlen=self.size)).append(obs)

    def recent(self, source: str) -> list[Observation]:
        """The source's latest observations, oldest first."""
        with self._lock:
            return list(self._recent.get(source, ()))
