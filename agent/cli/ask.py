"""``scenewatch ask`` and ``scenewatch chat``: questions about the feed in plain language."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.prompt import Prompt

from agent.cli.common import console, err_console, existing_store, settings
from agent.cli.options import BackendOption, DbOption, DeviceOption, ModelOption
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.sources import readable_source

if TYPE_CHECKING:
    from agent.assistant.agent import Assistant

EXIT_WORDS = {"/exit", "/quit"}

SourceOption = Annotated[
    str | None,
    typer.Option(help="Camera or video the questions are about (default: the last one watched)."),
]
ThreadOption = Annotated[
    str | None, typer.Option(help="Conversation thread to continue (default: a new one).", show_default=False)
]
TokensOption = Annotated[int | None, typer.Option(help="Most tokens in one reply of the agent.")]
ShowOption = Annotated[
    bool,
    typer.Option(
        "--show-context", help="Print the observations given to the model (window and recalled) to stderr."
    ),
]


def _show_context(block: str) -> None:
    err_console.rule("context given to the model", style="dim")
    err_console.print(block, markup=False, highlight=False, soft_wrap=True)
    err_console.rule(style="dim")


def _session(
    source: str | None,
    thread: str | None,
    db: Path | None,
    model: str | None,
    backend: str | None,
    max_new_tokens: int | None,
    device: str | None,
    show_context: bool,
) -> AbstractContextManager[Assistant]:
    from agent.assistant.agent import open_assistant

    cfg = settings(
        db=db,
        model=model,
        backend=backend,
        device=device,
        agent_max_new_tokens=max_new_tokens,
        agent_thread=thread,
    )
    on_context: Callable[[str], None] | None = _show_context if show_context else None
    return open_assistant(cfg, source=_topic(cfg, source), on_context=on_context)


def _topic(cfg: Settings, given: str | None) -> str | None:
    """The source asked about: a watched one as ``--source`` names it, else one the ``look`` tool
    can read without a watch (a stream URL, a webcam, an existing file or folder)."""
    if not given:
        return None
    if not cfg.db_path.is_file():
        return readable_source(None, given)
    with existing_store(cfg) as store:
        return readable_source(store, given)


def ask(
    question: Annotated[str, typer.Argument(help="The question, in plain language.")],
    source: SourceOption = None,
    thread: ThreadOption = None,
    db: DbOption = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    max_new_tokens: TokensOption = None,
    device: DeviceOption = None,
    show_context: ShowOption = False,
) -> None:
    """Answer one question about what the camera sees now or saw before, citing observation times."""
    if not question.strip():
        raise ScenewatchError("the question is empty (ask something: scenewatch ask 'who is at the door?')")
    with _session(source, thread, db, model, backend, max_new_tokens, device, show_context) as assistant:
        answer = assistant.ask(question)
    console.print(answer, markup=False, highlight=False)


def _questions(interactive: bool) -> Iterator[str]:
    """Lines typed at the prompt (a terminal) or read from stdin, until /exit or the end."""
    while True:
        try:
            line = Prompt.ask("[bold cyan]you[/]", console=console) if interactive else sys.stdin.readline()
        except EOFError:
            return
        if not interactive and not line:
            return
        question = line.strip()
        if question in EXIT_WORDS:
            return
        if question:
            yield question


def chat(
    source: SourceOption = None,
    thread: ThreadOption = None,
    db: DbOption = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    max_new_tokens: TokensOption = None,
    device: DeviceOption = None,
    show_context: ShowOption = False,
) -> None:
    """Talk with the agent about the feed; answers stream as they are written (/exit to quit)."""
    interactive = sys.stdin.isatty()
    with _session(source, thread, db, model, backend, max_new_tokens, device, show_context) as assistant:
        if interactive:
            err_console.print(
                f"[dim]thread {assistant.thread}: continue it later with --thread; /exit quits[/]"
            )
        for question in _questions(interactive):
            if interactive:
                console.print("[bold green]scenewatch[/] ", end="")
            said = False
            for piece in assistant.stream(question):
                console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
                said = True
            console.print("" if said else "(the model gave no answer)")


def register(app: typer.Typer) -> None:
    app.command()(ask)
    app.command()(chat)
