"""What the watch loop tells the rest of the system after each committed observation."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from memory.observation import Observation


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
