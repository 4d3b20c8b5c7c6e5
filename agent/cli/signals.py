"""Stopping a long command on SIGINT/SIGTERM without interrupting its shutdown."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from agent.pipeline.stats import WatchSummary

log = logging.getLogger(__name__)


class StopOnSignal:
    """Once armed, SIGINT/SIGTERM set ``stop`` (in-flight work finishes); a second signal sets ``hurry``.

    Before :meth:`arm` (while the model loads) a signal interrupts as Ctrl-C does. Armed, the
    handler never raises: a KeyboardInterrupt in the main thread while it waits for the source
    threads would let it close the store under them.
    """

    def __init__(self, stop: threading.Event, hurry: threading.Event) -> None:
        self.stop = stop
        self.hurry = hurry
        self.received: list[int] = []
        self.armed = False
        self._previous: dict[int, Any] = {}

    def arm(self) -> None:
        """From now on a signal stops the watch instead of interrupting."""
        self.armed = True

    def __enter__(self) -> StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.received:
            return  # stopping on a signal: kept to the end, which exit_now makes at once
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.armed:
            raise KeyboardInterrupt
        self.received.append(signum)
        if not self.stop.is_set():
            self.stop.set()
            log.info("stopping: finishing the frames in flight (Ctrl-C again to stop sooner)")
        elif not self.hurry.is_set():
            self.hurry.set()
            log.info("stopping sooner: abandoning the frames the model has not answered")

    def exit_status(self, summary: WatchSummary) -> int:
        """130 after Ctrl-C, else 1 when nothing could be analysed, else 0."""
        if signal.SIGINT in self.received:
            return 130
        return 1 if summary.fruitless else 0
