"""``scenewatch kb`` (knowledge bases of device manuals) and ``scenewatch troubleshoot``."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from agent.commands.common import console, progress_bar, settings
from agent.config import Settings
from agent.errors import ScenewatchError
from tools.vision.factory import make_backend
from tools.vision.images import load_image

if TYPE_CHECKING:
    from memory.knowledge import KnowledgeBase

kb_app = typer.Typer(help="Knowledge bases of device manuals (Markdown, text, PDF).", no_args_is_help=True)

KbOption = Annotated[str | None, typer.Option("--kb", help="Knowledge base name (default: default).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _knowledge_base(kb: str | None, cfg: Settings | None = None) -> KnowledgeBase:
    """Open a knowledge base; the heavy retrieval stack loads only for the commands that use it."""
    from memory.knowledge import DEFAULT_KB, KnowledgeBase

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
    results = _knowledge_base(kb).add(paths, replace=replace)
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
    documents = _knowledge_base(kb).require().index.documents()
    if as_json:
        typer.echo(json.dumps([{"source": d.source, "path": d.path, "chunks": d.chunks} for d in documents]))
        return
    table = Table("source", "chunks", "added from", title=f"knowledge base {kb!r}")
    for doc in documents:
        table.add_row(doc.source, str(doc.chunks), doc.path)
    console.print(table)


def _list_knowledge_bases(as_json: bool) -> None:
    """Print every knowledge base with its numbers of documents and chunks."""
    from memory.knowledge import knowledge_base_sizes

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
    removed = _knowledge_base(kb).require().remove(source)
    console.print(f"removed {Path(source).name} ({removed} chunks)", highlight=False)


@kb_app.command("reindex")
def reindex(kb: KbOption = None) -> None:
    """Rebuild a knowledge base's vectors from its SQLite file when its Chroma folder was lost or damaged."""
    base = _knowledge_base(kb).require()
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
    hits = _knowledge_base(kb).require().search(query, k)
    if as_json:
        typer.echo(json.dumps([hit.to_dict() for hit in hits], ensure_ascii=False))
        return
    for rank, hit in enumerate(hits, 1):
        console.print(f"{rank}. {hit.citation}  score {hit.score:.4f}", style="bold", markup=False)
        console.print(" ".join(hit.text.split())[:300], markup=False, highlight=False)


def troubleshoot_command(
    photo: Annotated[str, typer.Argument(help="Photo of the device, or - to read image bytes from stdin.")],
    question: Annotated[str, typer.Option(help="What you see or want to know.")] = "",
    kb: KbOption = None,
    model: Annotated[str | None, typer.Option(help="Model id or local checkpoint folder.")] = None,
    backend: Annotated[str | None, typer.Option(help="local or openai.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Most tokens in each answer.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = None,
    as_json: JsonOption = False,
) -> None:
    """Troubleshoot a device from a photo: read its lights and codes, answer from the manuals with sources."""
    cfg = settings(model=model, backend=backend, max_new_tokens=max_new_tokens, device=device)
    base = _knowledge_base(kb, cfg).require()
    picture = load_image(sys.stdin.buffer.read() if photo == "-" else Path(photo))
    from tools.troubleshoot import troubleshoot

    result = troubleshoot(make_backend(cfg), picture, base, cfg, question)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    console.print(
        f"[dim]photo:[/] {escape(result.reading.summary() or '(nothing readable)')}", highlight=False
    )
    console.print(result.answer, markup=False, highlight=False)
    if result.rejected_citations:
        console.print(
            f"[yellow]removed citations of passages that were not retrieved:[/] "
            f"{escape(', '.join(result.rejected_citations))}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(kb_app, name="kb")
    app.command("troubleshoot")(troubleshoot_command)
