"""``scenewatch serve``: the always-on service: the watch loops of its sources and the HTTP API."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import console, exit_now, settings
from agent.cli.options import BackendOption, DbOption, DeviceOption, MaxSideOption, ModelOption
from agent.events.ruleset import load_rules
from agent.sources import probe_source, quiet_video_logs

log = logging.getLogger(__name__)


def serve(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Sources to watch besides those added before (files, folders, webcam indexes, stream URLs).",
            show_default=False,
        ),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(help="Rules file (YAML): watch questions and alert rules; see demos/rules/."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on (default 127.0.0.1; anything else needs SCENEWATCH_API_TOKEN)."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port to listen on (default 8765).")
    ] = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    device: DeviceOption = None,
    max_side: MaxSideOption = None,
    db: DbOption = None,
) -> None:
    """Watch sources and serve the HTTP API (REST, live stream, metrics) until SIGTERM or Ctrl-C.

    Sources added through the API persist and come back at the next start. Docs at /docs.
    """
    from agent.service.runtime import Service
    from agent.service.security import check_exposure
    from agent.service.server import bind
    from agent.service.server import serve as run_server

    cfg = settings(
        api_host=host, api_port=port, model=model, backend=backend, device=device, max_side=max_side, db=db
    )
    token = cfg.api_token.get_secret_value() if cfg.api_token else None
    check_exposure(cfg.api_host, token)
    ruleset = load_rules(rules) if rules is not None else None  # a bad file stops here, before the model
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        quiet_video_logs()
    for spec in sources or []:  # before the model loads: a typo or a bad file should not cost a minute
        probe_source(spec)
    sock = bind(cfg.api_host, cfg.api_port)
    service = Service(cfg, ruleset=ruleset, sources=sources or [])
    address = f"http://{cfg.api_host}:{sock.getsockname()[1]}"
    console.print(
        f"serving on [bold]{address}[/] (docs at {address}/docs); the model is loading",
        highlight=False,
        soft_wrap=True,
    )
    status = run_server(service, sock)  # returns once a signal stopped it, the store closed
    exit_now(status)  # a second Ctrl-C must not meet Python's shutdown, nor wait for a stream's reader


def register(app: typer.Typer) -> None:
    app.command()(serve)
