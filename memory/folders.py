"""The folders and files scenewatch writes: what stops it, in words (a file in the way, no permission,
a full disk), instead of an OSError traceback or SQLite's "unable to open database file"."""

from __future__ import annotations

import tempfile
from pathlib import Path

from agent.core.errors import ScenewatchError


def file_in_the_way(path: Path) -> Path | None:
    """The first of ``path``'s parents, or ``path`` itself, that exists and is not a folder."""
    for candidate in [*reversed(path.parents), path]:
        if candidate.exists() and not candidate.is_dir():
            return candidate
        if not candidate.exists():
            return None
    return None


def make_folder(path: Path, what: str) -> None:
    """Create ``path`` and its parents when missing; a ScenewatchError naming ``what`` when that fails."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = file_in_the_way(path)
        reason = f"{blocker} is a file, not a folder" if blocker else exc.strerror or str(exc)
        raise ScenewatchError(f"cannot create {what} {path}: {reason}") from None


def why_unwritable(path: Path) -> str | None:
    """Why ``path`` (a file, or one to create) cannot be written: the system's reason from trying to
    create a scratch file beside it and to open it for writing (nothing is changed); None when both work."""
    blocker = file_in_the_way(path.parent)
    if blocker is not None:
        return f"{blocker} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
        if path.is_file():
            with path.open("r+b"):
                pass
    except OSError as exc:
        return f"{exc.strerror or exc} ({exc.filename or path.parent})"
    return None
