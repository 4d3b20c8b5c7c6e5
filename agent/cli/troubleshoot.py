"""``scenewatch troubleshoot``: a device photo read by the vision model, answered from the manuals."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from agent.cli.common import console, settings
from agent.cli.kb import knowledge_base
from agent.cli.options import (
    BackendOption,
    DeviceOption,
    JsonOption,
    KbOption,
    MaxNewTokensOption,
    ModelOption,
)
from tools.vision.images import load_image
from tools.vision.registry import make_backend


def troubleshoot(
    photo: Annotated[str, typer.Argument(help="Photo of the device, or - to read image bytes from stdin.")],
    question: Annotated[str, typer.Option(help="What you see or want to know.")] = "",
    kb: KbOption = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    max_new_tokens: MaxNewTokensOption = None,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Troubleshoot a device from a photo: read its lights and codes, answer from the manuals with sources."""
    cfg = settings(model=model, backend=backend, max_new_tokens=max_new_tokens, device=device)
    base = knowledge_base(kb, cfg).require()
    picture = load_image(sys.stdin.buffer.read() if photo == "-" else Path(photo))
    from tools.troubleshoot import troubleshoot as answer

    result = answer(make_backend(cfg), picture, base, cfg, question)
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
    app.command()(troubleshoot)
