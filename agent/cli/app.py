"""The ``scenewatch`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.cli import (
    ask,
    bench,
    distributed,
    events,
    kb,
    look,
    mcp,
    memory,
    model,
    rules,
    serve,
    troubleshoot,
    watch,
)
from agent.cli.common import configure_logging, err_console, set_global_overrides
from agent.core.errors import ScenewatchError

app = typer.Typer(
    name="scenewatch",
    help="Ask a camera feed questions in plain language.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _global_options(
    home: Annotated[
        Path | None, typer.Option(help="Data folder (SCENEWATCH_HOME).", show_default=False)
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
) -> None:
    configure_logging(verbose)
    set_global_overrides(home=home)


# Each command group registers itself: agent/cli/<group>.py.
look.register(app)
model.register(app)
bench.register(app)
watch.register(app)
distributed.register(app)
events.register(app)
kb.register(app)
troubleshoot.register(app)
rules.register(app)
ask.register(app)
memory.register(app)
serve.register(app)
mcp.register(app)


def main() -> None:
    """Entry point: runs the app and turns user-facing errors into one line, exit status 1."""
    try:
        app()
    except ScenewatchError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
