"""What ``scenewatch watch`` shows: a live table on a terminal, plain lines otherwise, and a summary."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from agent.pipeline.gate import REASONS
from agent.pipeline.stats import SourceStats, WatchSummary
from agent.sources import is_live
from memory.observation import Observation

SUMMARY_WIDTH = 90


def _where(obs: Observation) -> str:
    if obs.video_t is not None:
        return f"{obs.video_t:7.1f} s"
    return time.strftime("%H:%M:%S", time.localtime(obs.ts))


def label(source: str) -> str:
    """A short name for a source in tables: a file's or folder's name, a URL or index as given."""
    return source if is_live(source) else Path(source).name or source


def _short(text: str, width: int = SUMMARY_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class WatchDisplay:
    """Receives the watch's updates (``update``) and shows them.

    On a terminal: a table with the latest observation of each source, its counts and
    latency, redrawn a few times a second. Elsewhere (a pipe, a log file): one plain line
    per observation.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live_mode = console.is_terminal
        self._rows: dict[str, tuple[SourceStats, Observation | None]] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> WatchDisplay:
        if self.live_mode:
            self._live = Live(console=self.console, get_renderable=self._table, refresh_per_second=4)
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def update(self, stats: SourceStats, obs: Observation | None) -> None:
        """A sampled frame was skipped (``obs`` None) or an observation was committed."""
        with self._lock:
            latest = obs if obs is not None else self._rows.get(stats.source, (stats, None))[1]
            self._rows[stats.source] = (stats, latest)
        if obs is not None and not self.live_mode:
            self.console.print(
                f"{label(obs.source)}  {_where(obs)}  gate {_score(obs.gate_score)}  "
                f"{obs.latency_ms or 0:6.0f} ms  {_short(obs.summary)}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    def _table(self) -> Table:
        table = Table("source", "analysed", "skipped", "dropped", "latency", "at", "latest", expand=True)
        with self._lock:
            rows = list(self._rows.values())
        for stats, obs in rows:
            table.add_row(
                label(stats.source),
                f"{stats.analysed}/{stats.sampled}",
                f"{stats.skipped} ({stats.skipped_fraction:.0%})",
                str(stats.dropped),
                f"{stats.mean_latency_ms:.0f} ms",
                _where(obs) if obs else "",
                _short(obs.summary) if obs else "waiting for the first observation",
            )
        return table


def _score(score: float | None) -> str:
    return "first" if score is None else f"{score:.3f}"


def reasons_line(summary: WatchSummary) -> str:
    """``\nanalysed: first 1, tracks 4, pixels 6; skipped: unchanged 52`` (the gate's reasons), or ""."""
    counted = summary.reasons
    parts = []
    for verdict, names in (("analysed", REASONS[:4]), ("skipped", REASONS[4:])):
        found = [f"{name} {counted[name]}" for name in names if counted[name]]
        if found:
            parts.append(f"{verdict}: {', '.join(found)}")
    return "\n" + "; ".join(parts) if parts else ""


def summary_table(summary: WatchSummary) -> Table:
    """Per-source and total counts and latencies of a finished watch (dropped/failed when any)."""
    rows: list[tuple[str, SourceStats | WatchSummary]] = list(summary.sources.items())
    if len(rows) > 1:
        rows.append(("total", summary))
    counts = ["sampled", "analysed", "skipped"] + [
        name for name in ("dropped", "failed", "abandoned") if getattr(summary, name)
    ]
    table = Table(
        title=(
            f"watched {summary.wall_s:.1f} s, {summary.model_calls} model calls, "
            f"the gate skipped {summary.skipped_fraction:.0%} of the frames sampled{reasons_line(summary)}"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("source", min_width=min(20, max(len(label(name)) for name, _ in rows)), overflow="fold")
    for header in [*counts, "ms mean/p95", "video s"]:
        table.add_column(header, no_wrap=True, justify="right")
    for name, stats in rows:
        table.add_row(
            label(name),
            *(str(getattr(stats, count)) for count in counts),
            f"{stats.mean_latency_ms:.0f}/{stats.p95_latency_ms:.0f}",
            f"{stats.video_s:.1f}" if stats.video_s else "",
        )
    return table
