"""``scenewatch bench``: reproducible speed and memory measurements."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, TaskID
from rich.table import Table

from agent.cli.common import console, err_console, progress_bar, settings
from agent.cli.options import DeviceOption, ModelOption
from agent.core.durations import parse_duration
from agent.core.errors import ScenewatchError

bench_app = typer.Typer(
    help="Benchmarks (speed, memory); each prints the command that reproduces it.", no_args_is_help=True
)

ARCHS = ("qwen3-vl-8b", "qwen3-vl-4b", "qwen3-vl-2b")


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ScenewatchError(f"{flag} takes whole numbers separated by commas (got {text!r})") from None
    if not values or min(values) < 1:
        raise ScenewatchError(f"{flag} needs at least one number, each 1 or more (got {text!r})")
    return values


def _command(name: str, args: dict[str, Any]) -> str:
    """The command line that reproduces ``scenewatch bench NAME`` (flags at their given values; a flag
    set to True stands alone, None or False leaves it out)."""
    parts = ["scenewatch", "bench", name]
    for flag, value in args.items():
        if value is True:
            parts.append(flag)
        elif value not in (None, False):
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(parts)


def _phases(bar: Progress) -> Callable[[str, int, int], None]:
    """A progress callback with a bar per phase (``progress(phase, done, total)``)."""
    tasks: dict[str, TaskID] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done)

    return progress


def _emit(report: dict[str, Any], as_json: bool, out: Path | None = None) -> bool:
    """Write the report to ``out`` when given and print it as JSON with ``as_json``; True when done
    (else the caller prints its tables)."""
    text = json.dumps(report, indent=2)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    if as_json:
        typer.echo(text)
    return as_json


def _reproduce(command: str) -> None:
    console.print(f"reproduce: [bold]{escape(command)}[/]", highlight=False)


def _print_measures(report: dict[str, Any]) -> None:
    """Every measure of the report in a two-column table, then the command."""
    table = Table("measure", "value")
    for key, value in report.items():
        if key != "command":
            table.add_row(key, str(value))
    console.print(table)
    _reproduce(report["command"])


@bench_app.command("pipeline")
def pipeline(
    model: ModelOption = None,
    random_weights: Annotated[
        bool, typer.Option("--random-weights", help="Build --arch with random weights on the device.")
    ] = False,
    arch: Annotated[str, typer.Option(help="Architecture for --random-weights: " + ", ".join(ARCHS))] = ARCHS[
        0
    ],
    source: Annotated[
        Path | None, typer.Option(help="Video clip (default: a synthetic clip with known changes).")
    ] = None,
    sizes: Annotated[str, typer.Option(help="Square input sizes, comma-separated.")] = "224,336,448",
    streams: Annotated[str, typer.Option(help="Concurrent stream counts, comma-separated.")] = "1,4,16",
    max_new_tokens: Annotated[int, typer.Option(min=1, help="New tokens per look (forced).")] = 64,
    runs: Annotated[int, typer.Option(min=1, help="Timed looks per size.")] = 10,
    rounds: Annotated[int, typer.Option(min=1, help="Looks per stream.")] = 4,
    every: Annotated[str | None, typer.Option(help="Sampling interval: 1s, 500ms, 2 (seconds).")] = None,
    device: DeviceOption = None,
    decoder: Annotated[str, typer.Option(help="auto (static on GPU), hf or static.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report to this file.")] = None,
) -> None:
    """Look latency, throughput and memory per size and stream count; the naive loop side by side."""
    from agent.bench.pipeline import DECODERS, PipelineOptions, run_pipeline_bench

    if random_weights and model:
        raise ScenewatchError("give --model or --random-weights, not both")
    if arch not in ARCHS:
        raise ScenewatchError(f"--arch must be one of {', '.join(ARCHS)}")
    if decoder not in DECODERS:
        raise ScenewatchError(f"--decoder must be one of {', '.join(DECODERS)}")
    options = PipelineOptions(
        model=model,
        arch=arch if random_weights else None,
        source=source,
        sizes=_ints(sizes, "--sizes"),
        streams=_ints(streams, "--streams"),
        max_new_tokens=max_new_tokens,
        runs=runs,
        rounds=rounds,
        decoder=decoder,
    )
    cfg = settings(device=device, every_s=None if every is None else parse_duration(every))  # as watch
    command = _command(
        "pipeline",
        {
            "--model": model,
            "--random-weights": random_weights,
            "--arch": arch if random_weights else None,
            "--source": source,
            "--sizes": sizes,
            "--streams": streams,
            "--max-new-tokens": max_new_tokens,
            "--runs": runs,
            "--rounds": rounds,
            "--every": every,
            "--device": device,
            "--decoder": None if decoder == "auto" else decoder,
            "--json": as_json,
        },
    )
    report = {"command": command, **run_pipeline_bench(options, cfg, lambda text: err_console.log(text))}
    if not _emit(report, as_json, out):
        _print_report(report)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*[str(cell) for cell in row])
    return table


def _print_report(report: dict[str, Any]) -> None:
    weights = " (random weights)" if report["random_weights"] and "random" not in report["model"] else ""
    console.print(
        f"[bold]{report['model']}[/]{weights} on {report['hardware']} ({report['dtype']}, "
        f"decoder {report['decoder']}), {report['max_new_tokens']} new tokens per look",
        highlight=False,
    )
    memory = report["sizes"][0]["memory_kind"].replace("_", " ") if report["sizes"] else "memory"
    console.print(
        _table(
            "Look latency per input size (batch 1)",
            [
                "size",
                "image tokens",
                "p50 ms",
                "p95 ms",
                "first token ms",
                "ms/token",
                "frames/s",
                f"{memory} MiB",
            ],
            [
                [
                    f"{s['size']}²",
                    s["image_tokens"],
                    s["p50_ms"],
                    s["p95_ms"],
                    s["first_token_p50_ms"],
                    s["ms_per_token"],
                    s["fps"],
                    s["peak_memory_mib"],
                ]
                for s in report["sizes"]
            ],
        )
    )
    console.print(
        _table(
            "Concurrent streams through one engine",
            ["streams", "size", "mean batch", "frames/s", "× batch 1", "p50 ms", "p95 ms"],
            [
                [s["streams"], s["size"], s["mean_batch"], s["fps"], s["x_batch1"], s["p50_ms"], s["p95_ms"]]
                for s in report["streams"]
            ],
        )
    )
    naive, ours, ratios = report["baseline"], report["scenewatch"], report["ratios"]
    rows = [
        ["model calls", naive["model_calls"], ours["model_calls"], ratios["model_calls"]],
        ["frames analysed", naive["analysed"], ours["analysed"], ""],
        ["new tokens per answer", naive["mean_new_tokens"], ours["mean_new_tokens"], ""],
        ["wall s", naive["wall_s"], ours["wall_s"], ratios["speedup_wall"]],
        [
            "video s per wall s",
            naive["video_s_per_wall_s"],
            ours["video_s_per_wall_s"],
            ratios["video_s_per_wall_s"],
        ],
    ]
    console.print(
        _table(f"Naive loop vs scenewatch ({report['source']})", ["", "naive", "scenewatch", "ratio"], rows)
    )
    changes = report["changes"]
    missed = changes["missed_changes"]
    status = f"[red]{missed} missed[/]" if missed else "[green]none missed[/]"
    console.print(f"change moments: {len(changes['moments'])}, {status} ({changes['method']})")
    _reproduce(report["command"])


@bench_app.command("memory")
def bench_memory(
    observations: Annotated[int, typer.Option(min=10, help="Synthetic observations to store.")] = 10_000,
    queries: Annotated[int, typer.Option(min=10, help="Timed recalls of each kind.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Index throughput, recall latency (with and without a time filter), reindex time, disk size."""
    from agent.bench.memory_store import run_memory_bench

    command = _command("memory", {"--observations": observations, "--queries": queries, "--json": as_json})
    with progress_bar() as bar:
        report = {
            "command": command,
            **run_memory_bench(observations, settings(), queries=queries, progress=_phases(bar)),
        }
    if not _emit(report, as_json):
        _print_measures(report)


@bench_app.command("kb")
def bench_kb(
    size_mb: Annotated[
        float, typer.Option("--size-mb", min=0.01, max=1000, help="Size of the generated manual, in MB.")
    ] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Add one large generated manual to a scratch knowledge base: chunks per second, peak memory."""
    from agent.bench.knowledge import run_kb_bench

    command = _command("kb", {"--size-mb": size_mb, "--json": as_json})
    with progress_bar() as bar:
        task = bar.add_task("adding the manual", total=None)
        report = {
            "command": command,
            **run_kb_bench(
                size_mb, settings(), lambda done, total: bar.update(task, completed=done, total=total)
            ),
        }
    if not _emit(report, as_json):
        _print_measures(report)


@bench_app.command("api")
def bench_api(
    observations: Annotated[int, typer.Option(min=100, help="Synthetic observations to store.")] = 100_000,
    requests: Annotated[int, typer.Option(min=10, help="Timed requests of each kind.")] = 200,
    clients: Annotated[int, typer.Option(min=1, max=500, help="SSE clients on the live stream.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """API latency (observations, timeline, recall) over a large store; SSE clients missing nothing."""
    from agent.bench.api import run_api_bench

    flags = {"--observations": observations, "--requests": requests, "--clients": clients, "--json": as_json}
    command = _command("api", flags)
    with progress_bar() as bar:
        report = {
            "command": command,
            **run_api_bench(
                observations, settings(), requests=requests, clients=clients, progress=_phases(bar)
            ),
        }
    if _emit(report, as_json):
        return
    table = Table("endpoint", "p50 ms", "p95 ms", "max ms", "requests")
    for name, figures in report["latency"].items():
        table.add_row(name, *(str(figures[key]) for key in ("p50_ms", "p95_ms", "max_ms", "requests")))
    console.print(table)
    stream = report["stream"]
    console.print(
        f"stream: {stream['clients_complete']} of {stream['clients']} clients got all "
        f"{stream['observations']} observations and {stream['events']} events in order; "
        f"missed {stream['missed']}, "
        f"duplicates {stream['duplicates']}",
        highlight=False,
    )
    _reproduce(command)


@bench_app.command("capture")
def bench_capture(
    sizes: Annotated[str, typer.Option(help="Frame sizes, comma-separated.")] = "640x360,1920x1080",
    key_every: Annotated[
        str, typer.Option("--key-every", help="Key-frame intervals of the clips in seconds, comma-separated.")
    ] = "1,2",
    every: Annotated[str, typer.Option(help="Sampling interval: 1s, 500ms, 2 (seconds).")] = "1s",
    seconds: Annotated[float, typer.Option(min=2, max=600, help="Length of each clip in seconds.")] = 30.0,
    repeats: Annotated[int, typer.Option(min=1, help="Runs of each reader; the least CPU counts.")] = 3,
    static: Annotated[bool, typer.Option("--static", help="Also clips of a static scene.")] = False,
    clips: Annotated[
        Path | None, typer.Option(help="Folder for the clips, reused across runs (default: a temporary one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report to this file.")] = None,
) -> None:
    """CPU per stream of sampling and gating H.264 (streams per core), scenewatch's reader against
    OpenCV reading every frame."""
    import tempfile

    from agent.bench.capture import capture_options, run_capture_bench

    options = capture_options(sizes, key_every, parse_duration(every), seconds, repeats, static)
    flags = {"--sizes": sizes, "--key-every": key_every, "--every": every, "--seconds": seconds}
    flags |= {"--repeats": repeats, "--static": static, "--json": as_json}
    command = _command("capture", flags)
    with tempfile.TemporaryDirectory(prefix="scenewatch-clips-") as scratch:
        bench = run_capture_bench(options, clips or Path(scratch), lambda text: err_console.log(text))
    report = {"command": command, **bench}
    if not _emit(report, as_json, out):
        _print_capture(report)


def _print_capture(report: dict[str, Any]) -> None:
    machine = report["machine"]
    console.print(
        f"{machine['cpu']}, {machine['cores']} cores (load {machine['load_1m']}); one sample every "
        f"{report['every_s']:g} s, gate on each; best of {report['repeats']}",
        highlight=False,
    )
    columns = ["clip", "reader", "CPU s / s", "streams/core", "× read()", "offset max s"]
    rows = [
        [
            f"{row['width']}x{row['height']} key {row['gop_s']:g}s {row['scene']}",
            row["reader"],
            row["cpu_per_video_s"],
            row["streams_per_core"],
            row["x_read_all"],
            row["offset_max_s"],
        ]
        for row in report["rows"]
    ]
    console.print(_table("Streams per core", columns, rows))
    for verdict in report["target"]:
        status = "[green]met[/]" if verdict["met"] else "[red]not met[/]"
        console.print(
            f"{verdict['clip']} {verdict['reader']}: {verdict['x_read_all']}× read() "
            f"(target {report['target_x']:g}×): {status}",
            highlight=False,
        )


@bench_app.command("detector")
def bench_detector(
    media: Annotated[
        Path | None,
        typer.Option(help="Folder of shopfront_cctv.mp4 and runner.mp4 (default SCENEWATCH_TEST_MEDIA)."),
    ] = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed detector calls per frame size and tiling.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report to this file.")] = None,
) -> None:
    """Detector ms per frame with and without tiling; model calls of the detector-aware gate against the
    pixel gate on the shop clip (change moments missed); people counted per second against labels."""
    from agent.bench.detector import run_detector_bench

    folder = media or Path(os.environ.get("SCENEWATCH_TEST_MEDIA", ""))
    if folder == Path(""):
        raise ScenewatchError("bench detector needs the shared clips: --media DIR or SCENEWATCH_TEST_MEDIA")
    command = _command("detector", {"--media": folder, "--runs": runs, "--json": as_json})
    found = run_detector_bench(settings(), folder, runs, lambda text: err_console.log(text))
    report = {"command": command, **found}
    if not _emit(report, as_json, out):
        _print_detector_report(report)


def _print_detector_report(report: dict[str, Any]) -> None:
    console.print(f"[bold]detector[/] on {report['hardware']}: {report['detector']}", highlight=False)
    columns = ["frame", "tiling", "passes", "p50 ms", "p95 ms", "CPU ms", "frames/s"]
    keys = ["frame", "tiling", "passes", "p50_ms", "p95_ms", "cpu_ms", "fps"]
    console.print(_table("Detector per frame", columns, [[row[k] for k in keys] for row in report["speed"]]))
    gate = report["gate"]
    rows = []
    for name, run in gate.items():
        if isinstance(run, dict):
            reasons = ", ".join(f"{reason} {count}" for reason, count in run["reasons"].items())
            counts = [run["model_calls"], run["sampled"], run["missed_changes"]]
            rows.append([name.replace("_", " "), *counts, reasons])
    moments = gate["change_moments"]
    title = f"Model calls on {gate['source']} every {gate['every_s']:g} s, {moments} change moments"
    console.print(_table(title, ["gate", "model calls", "sampled", "missed changes", "reasons"], rows))
    for tiling, clips in report["people"].items():
        rows = []
        for name, counted in clips.items():
            right, wrong = f"{counted['right']}/{counted['seconds']}", " ".join(counted["wrong"])
            rows.append([name, right, counted["exact_share"], counted["mean_abs_error"], wrong])
        title = f"People per second, {tiling.replace('_', ' ')}"
        console.print(_table(title, ["clip", "right", "exact", "MAE", "wrong at s"], rows))
    _reproduce(report["command"])


@bench_app.command("redis")
def bench_redis(
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis", help="A Redis server to use (its own keys); default: a scratch redis-server."
        ),
    ] = None,
    frames: Annotated[
        int, typer.Option(min=10, help="Frames for the write rates and the latency run.")
    ] = 200,
    rate: Annotated[float, typer.Option(min=1, help="Frames a second sent in the latency run.")] = 20.0,
    workers: Annotated[str, typer.Option(help="Worker process counts, comma-separated; 0: none.")] = "1,2",
    worker_frames: Annotated[int, typer.Option(min=1, help="Frames through each worker count.")] = 64,
    model: ModelOption = None,
    backend: Annotated[
        str, typer.Option(help="The workers' backend: local (--model; default the tiny one), detector, ...")
    ] = "local",
    max_new_tokens: Annotated[
        int, typer.Option(min=1, help="Most new tokens per answer in the workers.")
    ] = 16,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Torch threads per worker (default: the cores / workers).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report to this file.")] = None,
) -> None:
    """The scale-out streams: Redis and SQLite write rates, the latency the streams add, frames per
    second through 1 and 2 worker processes (the tiny checkpoint unless --model)."""
    from agent.bench.scaleout import ScaleOptions, run_scale_bench

    counts = [] if workers.strip() == "0" else _ints(workers, "--workers")
    options = ScaleOptions(
        frames, rate, counts, worker_frames, model, backend, max_new_tokens, redis, threads
    )
    flags = {"--frames": frames, "--rate": rate, "--workers": workers, "--worker-frames": worker_frames}
    flags |= {"--max-new-tokens": max_new_tokens, "--model": model}
    flags |= {"--backend": None if backend == "local" else backend, "--threads": threads, "--json": as_json}
    command = _command("redis", flags)
    report = {"command": command, **run_scale_bench(options, settings(), lambda text: err_console.log(text))}
    if _emit(report, as_json, out):
        return
    table = Table("measure", "value")
    for section in ("writes", "latency"):
        for key, value in report[section].items():
            table.add_row(f"{section}.{key}", str(value))
    for row in report["workers"]:
        table.add_row(
            f"{row['workers']} worker(s)",
            f"{row['fps']} frames/s, {row['worker_cpu_s_per_frame']} CPU s/frame",
        )
    console.print(table)
    _reproduce(command)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
