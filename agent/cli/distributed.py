"""``scenewatch capture``, ``worker`` and ``record``: one watch split over processes and machines,
joined by Redis Streams (docs/DEPLOY.md)."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from agent.cli.common import console, err_console, exit_now, flag_seconds, settings
from agent.cli.display import label
from agent.cli.options import BackendOption, DbOption, DeviceOption, JsonOption, MaxSideOption, ModelOption
from agent.cli.signals import StopOnSignal
from agent.cli.watch import watch_questions
from agent.events.ruleset import load_rules
from agent.sources import probe_source, quiet_video_logs

log = logging.getLogger(__name__)

RedisOption = Annotated[
    str | None,
    typer.Option(
        "--redis", help="Redis server: redis://HOST:6379/0 (SCENEWATCH_REDIS_URL).", show_default=False
    ),
]


def capture(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Video files, image folders, webcam indexes (0) or stream URLs (rtsp://, http(s)://).",
            show_default=False,
        ),
    ],
    redis: RedisOption = None,
    every: Annotated[str | None, typer.Option(help="Sampling interval: 1s, 500ms, 2 (seconds).")] = None,
    heartbeat: Annotated[
        str | None, typer.Option(help="Send a frame at least this often, change or not: 10s, 1m.")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Changed share of the picture that sends a frame (0..1)."),
    ] = None,
    frame_interval: Annotated[
        str | None, typer.Option(help="Time between the images of a folder source (default: --every).")
    ] = None,
    max_side: MaxSideOption = None,
    rules: Annotated[
        Path | None,
        typer.Option(help="Rules file (YAML): its sources' zones and gate options for the detector stage."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Sample, detect and gate sources; send the gated frames to the Redis frames stream for the workers.

    The detector stage runs here (SCENEWATCH_DETECTOR, on by default). Runs until the files end or
    Ctrl-C. A live frame is dropped (counted) when the stream is full; a file waits for room. --json
    ends with per-source counts: sampled, gated, sent, dropped.
    """
    from agent.distributed.capture import run_capture
    from agent.distributed.redis_streams import Streams, connect, redis_url
    from agent.pipeline.session import watch_perception

    cfg = settings(
        redis_url=redis,
        every_s=flag_seconds(every, "--every"),
        heartbeat_s=flag_seconds(heartbeat, "--heartbeat"),
        frame_interval_s=flag_seconds(frame_interval, "--frame-interval"),
        gate_threshold=threshold,
        max_side=max_side,
    )
    ruleset = load_rules(rules) if rules is not None else None
    streams = Streams(connect(redis_url(cfg)), cfg)
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        quiet_video_logs()
    for spec in sources:
        probe_source(spec)
    perception = watch_perception(cfg, ruleset)
    stop, hurry = threading.Event(), threading.Event()
    with StopOnSignal(stop, hurry) as signals:
        signals.arm()
        summary = run_capture(sources, cfg, streams, stop, perception)
    report = summary.to_dict()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        console.print(_capture_table(report))
    for name, error in summary.errors.items():
        err_console.print(f"[bold red]error:[/] {label(name)}: {error}", highlight=False, soft_wrap=True)
    status = 130 if signal.SIGINT in signals.received else int(len(summary.errors) == len(sources))
    if signals.received:
        exit_now(status)
    if status:
        raise typer.Exit(status)


def _capture_table(report: dict[str, Any]) -> Table:
    table = Table(
        title=f"captured {report['wall_s']:.1f} s: {report['sent']} frames sent, {report['dropped']} dropped",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    counts = ("sampled", "gated", "sent", "dropped", "abandoned")
    table.add_column("source", overflow="fold")
    for name in counts:
        table.add_column(name, justify="right")
    for name, stats in report["sources"].items():
        table.add_row(label(name), *(str(stats[count]) for count in counts))
    return table


def worker(
    redis: RedisOption = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    device: DeviceOption = None,
    max_side: MaxSideOption = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Frames read and run through the model at once.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Consumer name in the group (default: HOST-PID).", show_default=False)
    ] = None,
    claim_idle: Annotated[
        str | None, typer.Option(help="Take over frames another worker held unanswered this long: 30s.")
    ] = None,
    max_deliveries: Annotated[
        int | None, typer.Option(min=1, help="A frame handed out this many times goes to the dead letters.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Answer gated frames from Redis with the vision model; results go to the observations stream.

    Run any number, on any machine (--backend openai for a vLLM server). Runs until Ctrl-C: the batch
    in hand is finished (Ctrl-C again leaves it to another worker).
    """
    from agent.distributed.redis_streams import Streams, connect, redis_url
    from agent.distributed.worker import FrameWorker
    from tools.vision.engine import Engine
    from tools.vision.registry import make_backend

    cfg = settings(
        redis_url=redis,
        model=model,
        backend=backend,
        device=device,
        max_side=max_side,
        batch_size=batch_size,
        redis_claim_idle_s=flag_seconds(claim_idle, "--claim-idle"),
        redis_max_deliveries=max_deliveries,
    )
    streams = Streams(connect(redis_url(cfg)), cfg)  # before the model loads: a wrong URL costs nothing
    stop, hurry = threading.Event(), threading.Event()
    with StopOnSignal(stop, hurry) as signals:
        engine = Engine(make_backend(cfg), batch_size=cfg.batch_size, batch_wait_ms=cfg.batch_wait_ms)
        signals.arm()
        consumer = FrameWorker(streams, engine, cfg, name)
        log.info(
            "worker %s: answering frames from %s with %s", consumer.name, streams.frames, engine.model_name
        )
        try:
            stats = consumer.run(stop, hurry)
        finally:
            if not hurry.is_set():
                engine.close()
        _leave(consumer)
    if as_json:
        typer.echo(json.dumps(stats.to_dict(), indent=2))
    else:
        console.print(
            f"worker {stats.name}: {stats.answered} answered, {stats.failed} failed, "
            f"{stats.dead} dead letters, {stats.claimed} taken over, {stats.batches} batches",
            highlight=False,
        )
    if signals.received:
        exit_now(0)


def _leave(consumer: Any) -> None:
    """Leave the group on a clean exit (a Redis that is down now is no reason to fail)."""
    from agent.distributed.redis_streams import OUTAGES

    try:
        consumer.leave()
    except OUTAGES as exc:
        log.warning("could not leave the consumer group: %s", exc)


def record(
    redis: RedisOption = None,
    db: DbOption = None,
    rules: Annotated[
        Path | None,
        typer.Option(help="Rules file (YAML): watch questions and alert rules; see demos/rules/."),
    ] = None,
    question: Annotated[
        list[str] | None,
        typer.Option("--question", "-q", help="A yes/no watch question (repeatable; named q1, q2, ...)."),
    ] = None,
    window: Annotated[
        int | None, typer.Option(min=0, help="Previous descriptions of a source in each prompt.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Store the workers' results: the one writer of the observation database (episodes, vectors, rules).

    Publishes the watch questions for the workers. Runs until Ctrl-C; run exactly one per database.
    """
    from agent.distributed.recorder import Recorder
    from agent.distributed.redis_streams import Streams, connect, redis_url
    from agent.pipeline.session import open_recording

    cfg = settings(redis_url=redis, db=db, window=window)
    ruleset = load_rules(rules) if rules is not None else None
    streams = Streams(connect(redis_url(cfg)), cfg)
    stop, hurry = threading.Event(), threading.Event()
    with (
        StopOnSignal(stop, hurry) as signals,
        open_recording(cfg, ruleset=ruleset, questions=watch_questions(question)) as recording,
    ):
        signals.arm()
        recorder = Recorder(streams, recording)
        log.info("recording %s into %s", streams.observations, cfg.db_path)
        stats = recorder.run(stop)
    if as_json:
        typer.echo(json.dumps(stats.to_dict(), indent=2))
    else:
        console.print(
            f"recorded {stats.stored} observations ({stats.repeated} delivered again, stored once)",
            highlight=False,
        )
    if signals.received:
        exit_now(0)


def register(app: typer.Typer) -> None:
    for command in (capture, worker, record):
        app.command()(command)
