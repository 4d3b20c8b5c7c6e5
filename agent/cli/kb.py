"""``scenewatch kb``: knowledge bases of device manuals (add, list, remove, search, reindex)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import TaskID
from rich.table import Table

from agent.cli.common import console, progress_bar, settings
from agent.cli.options import JsonOption, KbOption
from agent.core.config import Settings
from agent.core.errors import ScenewatchError

if TYPE_CHECKING:
    from memory.knowledge.knowledge_base import KnowledgeBase

kb_app = typer.Typer(help="Knowledge bases of device manuals (Markdown, text, PDF).", no_args_is_help=True)


def knowledge_base(kb: str | None, cfg: Settings | None = None) -> KnowledgeBase:
    """Open a knowledge base; the heavy retrieval stack loads only for the commands that use it."""
    from memory.knowledge.knowledge_base import DEFAULT_KB, KnowledgeBase

    return KnowledgeBase.open(cfg or settings(), kb or DEFAULT_KB)


@kb_app.command("add")
def add(
    paths: Annotated[list[Path], typer.Argument(help="Manuals (.md, .txt, .pdf) or folders of them.")],
    kb: KbOption = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Let a file replace the one of the same name added from another path."
        ),
    ] = False,
) -> None:
    """Add manuals: a changed file replaces its old chunks, an unchanged one is left as it is.

    A file whose name the knowledge base holds from another path, or that another given path
    shares its name with, is skipped (exit 1) unless --replace lets it replace the stored one.
    """
    base = knowledge_base(kb)
    with progress_bar() as bar:
        tasks: dict[Path, TaskID] = {}

        def progress(path: Path, done: int, total: int) -> None:
            if path not in tasks:
                tasks[path] = bar.add_task(f"adding {escape(path.name)}", total=total)
            bar.update(tasks[path], completed=done, total=total)

        results = base.add(paths, replace=replace, progress=progress)
    if not results:
        raise ScenewatchError(f"no .md, .txt or .pdf files in {', '.join(map(str, paths))}")
    for result in results:
        if result.status == "skipped":
            console.print(f"[red]skipped[/]   {escape(result.reason)}", highlight=False, soft_wrap=True)
        else:
            console.print(
                f"{result.status:<9} {result.path.name} ({result.chunks} chunks)",
                highlight=False,
                soft_wrap=True,
            )
    skipped = sum(result.status == "skipped" for result in results)
    if skipped:
        raise ScenewatchError(f"{skipped} of {len(results)} files skipped")


@kb_app.command("list")
def list_documents(
    kb: Annotated[
        str | None,
        typer.Option("--kb", help="Knowledge base whose files to list (default: list the knowledge bases)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the knowledge bases, or with --kb the files in one."""
    if kb is None:
        _list_knowledge_bases(as_json)
        return
    documents = knowledge_base(kb).require().index.documents()
    if as_json:
        typer.echo(json.dumps([{"source": d.source, "path": d.path, "chunks": d.chunks} for d in documents]))
        return
    table = Table("source", "chunks", "added from", title=f"knowledge base {kb!r}")
    for doc in documents:
        table.add_row(doc.source, str(doc.chunks), doc.path)
    console.print(table)


def _list_knowledge_bases(as_json: bool) -> None:
    """Print every knowledge base with its numbers of documents and chunks."""
    from memory.knowledge.knowledge_base import knowledge_base_sizes

    kb_dir = settings().kb_dir
    sizes = knowledge_base_sizes(kb_dir)
    if as_json:
        typer.echo(json.dumps([asdict(size) for size in sizes]))
    elif not sizes:
        console.print(
            f"no knowledge bases in {kb_dir} yet; add manuals with: scenewatch kb add PATH --kb NAME",
            highlight=False,
            soft_wrap=True,
        )
    else:
        table = Table("name", "documents", "chunks", title="knowledge bases")
        for size in sizes:
            table.add_row(size.name, str(size.documents), str(size.chunks))
        console.print(table)


@kb_app.command("remove")
def remove(
    source: Annotated[str, typer.Argument(help="File name as listed by `kb list` (or its path).")],
    kb: KbOption = None,
) -> None:
    """Remove a file and its chunks from a knowledge base."""
    removed = knowledge_base(kb).require().remove(source)
    console.print(f"removed {Path(source).name} ({removed} chunks)", highlight=False)


@kb_app.command("reindex")
def reindex(kb: KbOption = None) -> None:
    """Rebuild a knowledge base's vectors from its SQLite file when its Chroma folder was lost or damaged."""
    base = knowledge_base(kb).require()
    from memory.embeddings import minilm_embeddings

    minilm_embeddings().embed_query("")  # load the model before the clock starts
    with progress_bar() as bar:
        task = bar.add_task(f"reindexing {base.name}", total=None)
        started = time.perf_counter()
        done = base.reindex(progress=lambda n, total: bar.update(task, completed=n, total=total))
    seconds = time.perf_counter() - started
    if not done:
        raise ScenewatchError(
            f"knowledge base {base.name!r} has no documents, so there are no vectors to build; "
            f"add manuals with: scenewatch kb add PATH --kb {base.name}"
        )
    documents = len(base.index.documents())
    rate = done / max(seconds, 1e-9)
    console.print(
        f"reindexed {done} chunks of {documents} documents in {seconds:.1f}s ({rate:.0f}/s)", highlight=False
    )


@kb_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="What to look for: words, an error code, a model number.")],
    kb: KbOption = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many chunks to return.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Search a knowledge base by meaning and keywords; print the best chunks."""
    if not query.strip():
        raise ScenewatchError("empty query: say what to look for, e.g. scenewatch kb search E-104")
    hits = knowledge_base(kb).require().search(query, k)
    if as_json:
        typer.echo(json.dumps([hit.to_dict() for hit in hits], ensure_ascii=False))
        return
    for rank, hit in enumerate(hits, 1):
        console.print(f"{rank}. {hit.citation}  score {hit.score:.4f}", style="bold", markup=False)
        console.print(" ".join(hit.text.split())[:300], markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(kb_app, name="kb")
