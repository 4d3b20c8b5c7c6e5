"""Forgetting old observations: rows, thumbnails and vectors go together.

Each batch removes the vectors first, then the thumbnails, then the rows, so a run that stops
half-way leaves only rows that a second run removes (never vectors or files nobody points to).
Episodes wholly older than the cutoff go too; one that straddles it keeps its remaining
observations, and its start, count and thumbnail follow them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from memory.episodes import prune_episodes
from memory.store import Store
from memory.vectors import VectorIndex

log = logging.getLogger(__name__)


@dataclass
class PruneResult:
    """What a prune removed."""

    observations: int = 0
    vectors: int = 0
    thumbnails: int = 0
    episodes: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def count_older(store: Store, cutoff: float) -> int:
    """Observations older than ``cutoff`` (epoch seconds)."""
    return store.count_older_than(cutoff)


def prune(
    store: Store,
    index: VectorIndex,
    cutoff: float,
    thumbs_dir: Path,
    *,
    batch: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> PruneResult:
    """Remove everything observed before ``cutoff``; ``progress(n)`` after each batch of rows.

    Only thumbnails inside ``thumbs_dir`` are deleted (a stored path never reaches other files).
    """
    result = PruneResult()
    root = thumbs_dir.resolve()
    while rows := store.older_than(cutoff, batch):
        ids = [row_id for row_id, _, _ in rows]
        index.delete(ids)
        result.vectors += sum(1 for _, _, indexed in rows if indexed)
        for _, thumb, _ in rows:
            if thumb and _remove_thumbnail(Path(thumb), root):
                result.thumbnails += 1
        store.delete(ids)
        result.observations += len(ids)
        if progress is not None:
            progress(len(ids))
    result.episodes = prune_episodes(store, cutoff)
    return result


def _remove_thumbnail(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        log.warning("not deleting %s: outside the thumbnails folder %s", path, root)
        return False
    try:
        resolved.unlink()
    except FileNotFoundError:
        return False
    return True
