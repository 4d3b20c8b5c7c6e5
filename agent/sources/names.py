"""Source names: what a source is stored under, and which stored source a name the user typed means."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from agent.core.errors import ScenewatchError

if TYPE_CHECKING:
    from memory.store import Store

URL_SCHEME = re.compile(r"^(rtsps?|rtmps?|https?|udp|tcp|srt)://", re.IGNORECASE)
HTTP_SCHEME = re.compile(r"^https?://", re.IGNORECASE)


def is_live(spec: str) -> bool:
    """A webcam index or a stream URL (as opposed to a file or a folder)."""
    return spec.strip().isdigit() or bool(URL_SCHEME.match(spec.strip()))


def source_name(spec: str) -> str:
    """The name a source is watched and stored under: a URL or webcam index as given, a file's
    or folder's absolute, resolved path (so that it can be found from any directory)."""
    return spec if is_live(spec) else str(Path(spec).expanduser().resolve())


def resolve_source(store: Store, given: str | None, *, also: Iterable[str] = ()) -> str | None:
    """The stored source that ``--source given`` means (None: every source).

    An exact stored name wins, then ``given`` as an absolute path, then the one stored file or folder
    whose path ends with ``given`` (its base name, say). None or several: a ScenewatchError.
    ``also``: names known besides those of the observations (the sources of events).
    """
    if not given:
        return None
    known = sorted({*store.sources(), *also})
    absolute = str(Path(given).expanduser().resolve())
    for name in (given, absolute):
        if name in known:
            return name
    matches = [name for name in known if _same_path(given, absolute, name)]
    if len(matches) > 1:
        raise ScenewatchError(f"--source {given} could be any of: {', '.join(matches)} (name one in full)")
    if not matches:
        raise ScenewatchError(f"no source {given} in {store.path} (sources: {', '.join(known) or 'none'})")
    return matches[0]


def _same_path(given: str, absolute: str, stored: str) -> bool:
    """``stored`` ends with ``given``, or (a relative path of an older database) ``absolute`` ends
    with ``stored``. URLs and webcam indexes only ever match exactly."""
    if is_live(given) or is_live(stored):
        return False
    stored_parts = _parts(stored)
    if _ends_with(stored_parts, _parts(given)):
        return True
    return not PurePath(stored).is_absolute() and _ends_with(_parts(absolute), stored_parts)


def _parts(path: str) -> tuple[str, ...]:
    return PurePath(os.path.normpath(os.path.expanduser(path))).parts


def _ends_with(parts: tuple[str, ...], tail: tuple[str, ...]) -> bool:
    return 0 < len(tail) <= len(parts) and parts[-len(tail) :] == tail


def readable_source(store: Store | None, given: str) -> str:
    """What ``given`` names for reading frames: the stored source it means (:func:`resolve_source`),
    else a stream URL or webcam index as given, or an existing file or folder by absolute path.

    ScenewatchError when it is none of these (listing the stored sources when there is a store).
    """
    path = Path(given).expanduser()
    readable = given if is_live(given) else str(path.resolve()) if path.exists() else None
    if store is None:
        if readable is None:
            raise ScenewatchError(f"no source {given}: not a stream URL, webcam index, file or folder")
        return readable
    try:
        return resolve_source(store, given) or given
    except ScenewatchError:
        if readable is None:
            raise
        return readable
