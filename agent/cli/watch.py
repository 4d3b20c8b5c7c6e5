"""``scenewatch watch``: turn video sources into a change-aware observation log."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import console, err_console, exit_now, flag_seconds, settings
from agent.cli.display import WatchDisplay, label, summary_table
from agent.cli.options import BackendOption, DeviceOption, MaxSideOption, ModelOption
from agent.cli.signals import StopOnSignal
from agent.events.ruleset import load_rules
from agent.pipeline.session import open_pipeline
from agent.pipeline.stats import WatchSummary
from agent.sources import probe_source, quiet_video_logs

log = logging.getLogger(__name__)


def watch_questions(texts: list[str] | None) -> dict[str, str]:
    """``--question`` texts named q1, q2, ... in the order given."""
    asked = [text.strip() for text in texts or [] if text.strip()]
    return {f"q{index}": text for index, text in enumerate(asked, start=1)}


def watch(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Video files, image folders, webcam indexes (0) or stream URLs (rtsp://, http(s)://).",
            show_default=False,
        ),
    ],
    every: Annotated[str | None, typer.Option(help="Sampling interval: 1s, 500ms, 2 (seconds).")] = None,
    heartbeat: Annotated[
        str | None, typer.Option(help="Analyse at least this often, change or not: 10s, 1m.")
    ] = None,
    window: Annotated[
        int | None, typer.Option(min=0, help="Previous descriptions of the source in each prompt.")
    ] = None,
    question: Annotated[
        list[str] | None,
        typer.Option("--question", "-q", help="A yes/no watch question (repeatable; named q1, q2, ...)."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Changed share of the picture that wakes the model (0..1)."),
    ] = None,
    frame_interval: Annotated[
        str | None, typer.Option(help="Time between the images of a folder source (default: --every).")
    ] = None,
    max_side: MaxSideOption = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Most requests the model runs at once.")
    ] = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    device: DeviceOption = None,
    db: Annotated[
        Path | None, typer.Option(help="Observation database (default HOME/scenewatch.db).")
    ] = None,
    jsonl: Annotated[
        Path | None, typer.Option(help="Also append one JSON line per observation here.")
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(help="Rules file (YAML): watch questions and alert rules; see demos/rules/."),
    ] = None,
) -> None:
    """Watch sources with the vision model and log what changes, until the files end or Ctrl-C."""
    cfg = settings(
        every_s=flag_seconds(every, "--every"),
        heartbeat_s=flag_seconds(heartbeat, "--heartbeat"),
        frame_interval_s=flag_seconds(frame_interval, "--frame-interval"),
        window=window,
        gate_threshold=threshold,
        max_side=max_side,
        batch_size=batch_size,
        model=model,
        backend=backend,
        device=device,
        db=db,
    )
    ruleset = load_rules(rules) if rules is not None else None  # a bad file stops here, before the model
    if cfg.backend == "detector" and (question or (ruleset and ruleset.questions)):
        err_console.print(
            "[yellow]warning:[/] the detector backend answers no watch questions: their answers stay "
            "empty (use the detector's names in rules: README, Perception)",
            highlight=False,
        )
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        quiet_video_logs()
    for spec in sources:  # before the model loads: a typo or a bad file should not cost a minute
        probe_source(spec)
    stop, hurry = threading.Event(), threading.Event()
    with (
        StopOnSignal(stop, hurry) as signals,  # to the end: a signal never interrupts the shutdown
        open_pipeline(cfg, ruleset=ruleset, questions=watch_questions(question)) as pipeline,
    ):
        signals.arm()
        try:
            with WatchDisplay(console) as display:
                summary = pipeline.watch(
                    sources, jsonl=jsonl, on_update=display.update, stop=stop, hurry=hurry
                )
        finally:
            pipeline.abandon = hurry.is_set()  # the model may still be on a batch nobody waits for
        _report(summary)
    status = signals.exit_status(summary)
    if signals.received:  # a later Ctrl-C must not meet Python's shutdown, nor wait for a stream's reader
        exit_now(status)
    if status:
        raise typer.Exit(status)


def _report(summary: WatchSummary) -> None:
    """The summary table, then one line per source that stopped on an error."""
    console.print(summary_table(summary))
    for name, error in summary.errors.items():
        err_console.print(f"[bold red]error:[/] {label(name)}: {error}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(watch)
