"""``scenewatch look``: describe one image."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import console, settings
from agent.cli.options import BackendOption, DeviceOption, MaxNewTokensOption, MaxSideOption, ModelOption
from prompts import load_prompt
from tools.vision.base import VisionRequest
from tools.vision.images import load_image
from tools.vision.registry import make_backend


def look(
    image: Annotated[str, typer.Argument(help="Image file, or - to read image bytes from stdin.")],
    prompt: Annotated[str | None, typer.Option(help="What to ask about the image.")] = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    max_side: MaxSideOption = None,
    max_new_tokens: MaxNewTokensOption = None,
    device: DeviceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Describe one image with the vision model and print the answer (with --backend detector: the
    objects found, no model needed; --json then lists them as {label, score, box})."""
    cfg = settings(
        model=model, backend=backend, max_side=max_side, max_new_tokens=max_new_tokens, device=device
    )
    picture = load_image(sys.stdin.buffer.read() if image == "-" else Path(image))
    vision = make_backend(cfg)
    result = vision.generate([VisionRequest.ask(prompt or load_prompt("look"), [picture])])[0]
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        console.print(result.text, markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(look)
