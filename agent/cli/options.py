"""Options that several commands share, declared once (typer's ``Annotated`` aliases).

The model options (``--model``, ``--backend``, ``--device``, ``--max-side``, ``--max-new-tokens``)
are the same on every command that runs the vision model: look, watch, ask, chat, narrate,
troubleshoot; each flag overrides its ``SCENEWATCH_*`` setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOption = Annotated[str | None, typer.Option(help="Model id or local checkpoint folder.")]
BackendOption = Annotated[
    str | None,
    typer.Option(
        help="Vision backend: local (the model in this process), openai (a server) or detector "
        "(the object detector alone: no vision-language model)."
    ),
]
DeviceOption = Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1 ...")]
MaxSideOption = Annotated[int | None, typer.Option(help="Longest image side sent to the model.")]
MaxNewTokensOption = Annotated[int | None, typer.Option(help="Most tokens in each answer.")]
DbOption = Annotated[Path | None, typer.Option(help="Observation database (default HOME/scenewatch.db).")]
KbOption = Annotated[str | None, typer.Option("--kb", help="Knowledge base name (default: default).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
