"""What every command shares: settings with flag overrides, the console, errors."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agent.config import Settings, load_settings
from agent.errors import ScenewatchError
from agent.sources import is_live
from memory.store import Store

console = Console()
err_console = Console(stderr=True)

_global_overrides: dict[str, Any] = {}

DbOption = Annotated[Path | None, typer.Option(help="Observation database (default HOME/scenewatch.db).")]


def set_global_overrides(**overrides: Any) -> None:
    """Remember options given before the command (``scenewatch --home DIR ...``)."""
    _global_overrides.update({k: v for k, v in overrides.items() if v is not None})


def settings(**overrides: Any) -> Settings:
    """Settings from the environment, then global options, then this command's flags."""
    return load_settings(**{**_global_overrides, **overrides})


@contextmanager
def existing_store(cfg: Settings) -> Iterator[Store]:
    """The observation database for commands that read it; a clear error when there is none yet."""
    if not cfg.db_path.is_file():
        raise ScenewatchError(f"no observation database at {cfg.db_path}: run `scenewatch watch` first")
    store = Store(cfg.db_path)
    try:
        yield store
    finally:
        store.close()


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


def progress_bar() -> Progress:
    """A transient progress bar on stderr for long work (stdout stays clean for ``--json``)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


def configure_logging(verbose: bool) -> None:
    """Logs go to stderr through rich; ``-v`` shows debug detail."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    for noisy in ("httpx", "httpcore", "chromadb", "urllib3", "transformers", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
