"""What every command shares: settings with flag overrides, the console, errors."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agent.core.config import Settings, load_settings
from agent.core.durations import parse_duration
from agent.core.errors import ScenewatchError
from memory.folders import file_in_the_way
from memory.store import Store

console = Console()
err_console = Console(stderr=True)

_global_overrides: dict[str, Any] = {}


def set_global_overrides(**overrides: Any) -> None:
    """Remember options given before the command (``scenewatch --home DIR ...``), for this run only."""
    _global_overrides.clear()
    _global_overrides.update({k: v for k, v in overrides.items() if v is not None})


def settings(**overrides: Any) -> Settings:
    """Settings from the environment, then global options, then this command's flags; the home must
    be a folder (or not exist yet)."""
    cfg = load_settings(**{**_global_overrides, **overrides})
    blocker = file_in_the_way(cfg.home)
    if blocker is not None:
        where = "is a file" if blocker == cfg.home else f"cannot be a folder: {blocker} is a file"
        raise ScenewatchError(
            f"the scenewatch home {cfg.home} {where}, not a folder: give --home (or SCENEWATCH_HOME) a folder"
        )
    return cfg


@contextmanager
def existing_store(cfg: Settings) -> Iterator[Store]:
    """The observation database for commands that read it; a clear error when there is none yet."""
    if not cfg.db_path.is_file():
        blocker = file_in_the_way(cfg.db_path)
        if blocker is not None:
            raise ScenewatchError(f"no observation database at {cfg.db_path}: {blocker} is not a folder")
        raise ScenewatchError(f"no observation database at {cfg.db_path}: run `scenewatch watch` first")
    store = Store(cfg.db_path)
    try:
        yield store
    finally:
        store.close()


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


def exit_now(status: int) -> NoReturn:
    """End the process without waiting for the model's batch or the stream readers (``watch`` and
    ``serve`` after a signal).

    Only once the store is closed. A normal exit would finalise Python under C++ threads still
    in torch or OpenCV, which can abort ("terminate called without an active exception").
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def flag_seconds(text: str | None, flag: str) -> float | None:
    """A duration flag's value in seconds (None when not given); ScenewatchError unless more than 0."""
    if text is None:
        return None
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ScenewatchError(f"{flag} must be more than 0 (got {text!r})")
    return seconds
