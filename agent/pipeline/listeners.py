"""What the watch loop tells the rest of the system after each committed observation."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from agent.core.errors import ScenewatchError
from memory.observation import Observation

log = logging.getLogger(__name__)


@runtime_checkable
class ObservationListener(Protocol):
    """Called by the watch loop, in order, after an observation is committed to SQLite.

    ``on_observation`` runs on the watch loop's thread: it must be quick, hand slow work
    (embedding, HTTP) to a thread of its own, and never raise for bad data (log instead).
    A listener may update ``obs`` (the episode tracker sets ``obs.episode_id``) for the
    listeners after it. ``close`` flushes and stops at the end of the watch.
    """

    def on_observation(self, obs: Observation) -> None: ...

    def close(self) -> None: ...


def notify_listeners(listeners: Sequence[ObservationListener], obs: Observation) -> None:
    """Hand a committed observation to each listener in order; a failing listener is logged, never raised."""
    for listener in listeners:
        try:
            listener.on_observation(obs)
        except (ScenewatchError, sqlite3.Error, OSError) as exc:  # the database or the disk
            log.error("listener %s failed on observation %s: %s", type(listener).__name__, obs.id, exc)
        except Exception:  # a listener must not stop the watch
            log.exception("listener %s failed on observation %s", type(listener).__name__, obs.id)


def close_listeners(listeners: Sequence[ObservationListener]) -> None:
    """Close every listener, in order; a failure is logged and the others are still closed."""
    for listener in listeners:
        try:
            listener.close()
        except (ScenewatchError, sqlite3.Error, OSError) as exc:  # the database or the disk failed
            log.error("closing listener %s failed: %s", type(listener).__name__, exc)
        except Exception:  # closing one must not keep the others open
            log.exception("closing listener %s failed", type(listener).__name__)
