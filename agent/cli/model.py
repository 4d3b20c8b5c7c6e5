"""``scenewatch model``: manage model checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import console

model_app = typer.Typer(help="Model checkpoints.", no_args_is_help=True)


@model_app.command("tiny")
def tiny(
    directory: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to.")],
    seed: Annotated[int, typer.Option(help="Seed for the random weights.")] = 0,
) -> None:
    """Write a tiny random Qwen3-VL checkpoint (for tests and CPU demos; answers are gibberish)."""
    from tools.vision.tiny import build_tiny_checkpoint

    out = build_tiny_checkpoint(directory, seed=seed)
    console.print(f"tiny Qwen3-VL checkpoint written to [bold]{out}[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
