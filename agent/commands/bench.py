"""``scenewatch bench``: reproducible speed and memory measurements."""

from __future__ import annotations

import typer

bench_app = typer.Typer(
    help="Benchmarks (speed, memory); each prints the command that reproduces it.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
