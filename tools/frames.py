"""How the look and compare tools get frames: from a :class:`FrameReader` their caller hands them.

The tools know observations, not cameras: the agent builds its reader over the sources
(:class:`agent.sources.SourceReader`), tests hand in a fake one.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class FrameReader(Protocol):
    """Names a source the tools may read, and reads a frame of it."""

    def readable(self, given: str) -> str:
        """The source ``given`` names (a stored source by its base name, say); ScenewatchError if none."""
        ...

    def grab(self, source: str, at_s: float | None = None) -> np.ndarray:
        """A BGR frame: the newest of a live source, the one at ``at_s`` seconds of a file."""
        ...
