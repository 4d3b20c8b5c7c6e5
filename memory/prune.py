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

from memory.episodes import EPISODES_SCHEMA
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
    return int(store.execute("SELECT COUNT(*) FROM observations WHERE ts < ?", (cutoff,))[0][0])


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
    store.ensure_schema(EPISODES_SCHEMA)
    result = PruneResult()
    root = thumbs_dir.resolve()
    while True:
        rows = store.execute(
            "SELECT id, thumb_path, indexed FROM observations WHERE ts < ? ORDER BY id LIMIT ?",
            (cutoff, batch),
        )
        if not rows:
            break
        ids = [row["id"] for row in rows]
        index.delete(ids)
        result.vectors += sum(1 for row in rows if row["indexed"])
        for row in rows:
            if row["thumb_path"] and _remove_thumbnail(Path(row["thumb_path"]), root):
                result.thumbnails += 1
        store.execute(f"DELETE FROM observations WHERE id IN ({', '.join('?' * len(ids))})", ids)
        result.observations += len(ids)
        if progress is not None:
            progress(len(ids))
    result.episodes = len(store.execute("DELETE FROM episodes WHERE end_ts < ? RETURNING id", (cutoff,)))
    _refresh_straddling(store, cutoff)
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


def _refresh_straddling(store: Store, cutoff: float) -> None:
    """Episodes that began before the cutoff now start at their first remaining observation."""
    store.execute(
        """
        UPDATE episodes SET
            start_ts = (SELECT MIN(ts) FROM observations WHERE episode_id = episodes.id),
            observations = (SELECT COUNT(*) FROM observations WHERE episode_id = episodes.id),
            first_observation = (SELECT id FROM observations WHERE episode_id = episodes.id ORDER BY ts, id),
            thumb_path = (SELECT thumb_path FROM observations WHERE episode_id = episodes.id ORDER BY ts, id)
        WHERE start_ts < ? AND EXISTS (SELECT 1 FROM observations WHERE episode_id = episodes.id)
        """,
        (cutoff,),
    )
