"""``scenewatch recall``, ``timeline``, ``narrate``, ``memory`` (reindex, stats, prune), ``bench memory``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from agent.cli.common import (
    console,
    err_console,
    existing_store,
    progress_bar,
    settings,
)
from agent.cli.options import BackendOption, DbOption, ModelOption
from agent.core.config import Settings
from agent.core.durations import (
    clock,
    current_time,
    format_duration,
    parse_duration,
    parse_since,
    video_position,
)
from agent.core.errors import ScenewatchError
from agent.sources import resolve_source
from memory.episodes import episode_counts
from memory.indexer import index_missing, reindex
from memory.store import Store
from memory.timeline import timeline
from memory.vectors import VectorIndex, folder_bytes, open_vectors

if TYPE_CHECKING:
    from tools.vision.base import VisionRequest, VisionResult

memory_app = typer.Typer(
    help="The observation memory: rebuild the vector index, statistics, pruning.", no_args_is_help=True
)

SINCE_HELP = "From this time: a duration ago (10m, 2h), a date (2024-05-01T12:00) or an epoch time."
UNTIL_HELP = (
    "Up to this time (same forms as --since); default: no end (a video file's observations are stamped "
    "watch start + position, so they can lie ahead of now)."
)


def _range(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    start = parse_since(since) if since else None
    end = parse_since(until) if until else None
    if start is not None and end is not None and start > end:
        raise ScenewatchError("--since is after --until")
    return start, end


def _printed_plainly(items: list[Any], as_json: bool, empty: str) -> bool:
    """Print ``items`` as a JSON array, or ``empty`` when there are none; False: a table is wanted."""
    if as_json:
        typer.echo(json.dumps([item.to_dict() for item in items], ensure_ascii=False))
    elif not items:
        console.print(empty)
    return as_json or not items


def recall(
    query: Annotated[str, typer.Argument(help='What to look for, in words: "someone at the door".')],
    since: Annotated[str | None, typer.Option(help=SINCE_HELP)] = None,
    until: Annotated[str | None, typer.Option(help=UNTIL_HELP)] = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    k: Annotated[
        int | None, typer.Option("-k", min=1, help="How many observations (default recall_k).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    db: DbOption = None,
) -> None:
    """Find past observations by meaning, best match first, within a time range.

    Observations a watch left out of the index (it was killed before its indexer caught up) are
    indexed first, with progress, unless a running watch is indexing them itself.
    """
    cfg = settings(db=db)
    start, end = _range(since, until)
    with existing_store(cfg) as store, open_vectors(store, cfg) as index:
        source = resolve_source(store, source)
        waiting = _index_missing(store, cfg, index, quiet=as_json)
        found = index.recall(query, source=source, since=start, until=end, k=k or cfg.recall_k)
    empty = "no matching observations"
    if waiting:
        empty += f" among those indexed ({waiting} are not indexed yet: a running watch is indexing them)"
    if _printed_plainly(found, as_json, empty):
        return
    table = Table("time", "source", "match", "video", "summary")
    for item in found:
        video = video_position(item.video_t) if item.video_t is not None else ""
        table.add_row(clock(item.ts), escape(item.source), f"{item.score:.2f}", video, escape(item.summary))
    console.print(table)


def _index_missing(store: Store, cfg: Settings, index: VectorIndex, *, quiet: bool) -> int:
    """Index what a watch left unindexed, with a progress bar; how many are still waiting (0 unless a
    running watch is indexing them)."""
    missing = store.unindexed_count()
    if not missing:
        return 0
    with progress_bar() as bar:
        task = bar.add_task("indexing observations missing from the index", total=missing)
        done = index_missing(store, cfg, index, progress=lambda n: bar.update(task, completed=n))
    if done is None:
        return missing
    if not quiet:
        err_console.print(f"[dim]indexed {done} observations that were missing from the index[/]")
    return 0


def timeline_command(
    since: Annotated[str, typer.Option(help=SINCE_HELP)] = "10m",
    until: Annotated[str | None, typer.Option(help=UNTIL_HELP)] = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most lines shown (the earliest).")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    db: DbOption = None,
) -> None:
    """Episodes (spans of an unchanged scene) and events in a time range, oldest first."""
    start, end = _range(since, until)
    with existing_store(settings(db=db)) as store:
        entries = timeline(store, start, end, resolve_source(store, source), limit=limit)
    if _printed_plainly(entries, as_json, "nothing observed in this time range"):
        return
    table = Table("from", "to", "lasted", "source", "what")
    for entry in entries:
        what = escape(entry.text)
        if entry.kind == "event":
            what = f"[bold yellow]event[/] {escape(entry.detail)}: {what}"
        else:
            what += f" [dim]changed: {escape(entry.changes)}[/]" if entry.changes else ""
            what += f" [dim]({_obs_note(entry.detail, entry.observations)})[/]"
        lasted = format_duration(entry.duration_s) if entry.kind == "episode" else ""
        to = clock(entry.end) if entry.kind == "episode" else ""
        table.add_row(clock(entry.start), to, lasted, escape(entry.source), what)
    console.print(table)


def _obs_note(detail: str, observations: int) -> str:
    """An episode's note: ``detail; 3 obs``, or ``3 obs`` alone when there is no detail."""
    return "; ".join(part for part in (escape(detail), f"{observations} obs") if part)


class _LazyBackend:
    """A generator that builds its backend (loads the model) on the first request, so a range with
    nothing in it is answered without loading one."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._backend: Any = None

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        if self._backend is None:
            self._backend = self._build()
        return self._backend.generate(requests)


def narrate_command(
    source: Annotated[str | None, typer.Option(help="Only this source (default: all).")] = None,
    since: Annotated[str, typer.Option(help=SINCE_HELP)] = "10m",
    until: Annotated[str | None, typer.Option(help=UNTIL_HELP)] = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    db: DbOption = None,
) -> None:
    """Tell what happened in a time range: what was there, what changed and when, how long it lasted."""
    from tools.narrative import narrate
    from tools.vision.registry import make_backend

    cfg = settings(db=db, model=model, backend=backend)
    start, end = _range(since, until)
    with existing_store(cfg) as store:
        source = resolve_source(store, source)
        story = narrate(store, _LazyBackend(lambda: make_backend(cfg)), start, end, source, cfg)
    if as_json:
        typer.echo(json.dumps(story.to_dict(), ensure_ascii=False))
        return
    console.print(story.text, markup=False, highlight=False)
    err_console.print(
        f"[dim]{story.episodes} episodes, {story.events} events; {story.model_calls} model calls "
        f"over {story.levels} level(s), longest prompt ≈{story.max_prompt_tokens} tokens[/]"
    )


@memory_app.command("reindex")
def reindex_command(db: DbOption = None) -> None:
    """Rebuild the vector index from the observation database (the truth)."""
    cfg = settings(db=db)
    with (
        existing_store(cfg) as store,
        open_vectors(store, cfg, release_shards=True) as index,
        progress_bar() as bar,
    ):
        task = bar.add_task("reindexing", total=store.count())
        index.embeddings.embed_query("")  # load the model before the clock starts
        started = time.perf_counter()
        done = reindex(index, progress=lambda n: bar.update(task, completed=n))
    seconds = time.perf_counter() - started
    console.print(f"reindexed {done} observations in {seconds:.1f}s ({done / max(seconds, 1e-9):.0f}/s)")


@memory_app.command("stats")
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    db: DbOption = None,
) -> None:
    """Observations, sources, time span, indexing state, episodes and disk use."""
    cfg = settings(db=db)
    with existing_store(cfg) as store, open_vectors(store, cfg) as index:
        report = _stats(store, cfg, index.count(), index.disk_bytes())
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    table = Table("", "", show_header=False)
    span = report["first_ts"] and f"{clock(report['first_ts'])} → {clock(report['last_ts'])}"
    rows = [
        ("observations", report["observations"]),
        ("sources", ", ".join(f"{name} ({n})" for name, n in report["sources"].items()) or "-"),
        ("time span", span or "-"),
        ("indexed / not yet", f"{report['indexed']} / {report['unindexed']}"),
        ("vectors in the index", report["vectors"]),
        ("episodes (open)", f"{report['episodes']} ({report['open_episodes']})"),
        ("database", _mb(report["db_bytes"])),
        ("vectors", _mb(report["vectors_bytes"])),
        ("thumbnails", _mb(report["thumbs_bytes"])),
    ]
    for name, value in rows:
        table.add_row(name, escape(str(value)))
    console.print(table)


def _stats(store: Store, cfg: Settings, vectors: int, vectors_bytes: int) -> dict[str, Any]:
    totals = store.totals()
    episodes, open_episodes = episode_counts(store)
    db_files = cfg.db_path.parent.glob(cfg.db_path.name + "*")
    return {
        "observations": totals["observations"],
        "sources": totals["sources"],
        "first_ts": totals["first_ts"],
        "last_ts": totals["last_ts"],
        "indexed": totals["observations"] - totals["unindexed"],
        "unindexed": totals["unindexed"],
        "vectors": vectors,
        "episodes": episodes,
        "open_episodes": open_episodes,
        "db_bytes": sum(path.stat().st_size for path in db_files),
        "vectors_bytes": vectors_bytes,
        "thumbs_bytes": folder_bytes(cfg.thumbs_dir),
    }


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


@memory_app.command("prune")
def prune_command(
    older_than: Annotated[str, typer.Option(help="Remove what was observed longer ago than this: 30d, 12h.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOption = None,
) -> None:
    """Remove old observations with their thumbnails and vectors (and episodes wholly older)."""
    from memory.prune import count_older, prune

    cfg = settings(db=db)
    cutoff = current_time() - parse_duration(older_than)
    with existing_store(cfg) as store:
        doomed = count_older(store, cutoff)
        if not doomed:
            console.print(f"nothing observed before {clock(cutoff)}")
            return
        if not yes and not typer.confirm(f"Remove {doomed} observations from before {clock(cutoff)}?"):
            console.print("nothing removed")
            return
        with open_vectors(store, cfg) as index, progress_bar() as bar:
            task = bar.add_task("pruning", total=doomed)
            result = prune(store, index, cutoff, cfg.thumbs_dir, progress=lambda n: bar.advance(task, n))
    console.print(
        f"removed {result.observations} observations, {result.vectors} vectors, "
        f"{result.thumbnails} thumbnails and {result.episodes} episodes"
    )


def register(app: typer.Typer) -> None:
    app.command("recall")(recall)
    app.command("timeline")(timeline_command)
    app.command("narrate")(narrate_command)
    app.add_typer(memory_app, name="memory")
