"""``scenewatch events``: list the events rules raised; deliver what is still in the outbox."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from agent.cli.common import console, existing_store, settings
from agent.cli.options import DbOption
from agent.core.durations import clock, parse_since
from agent.core.errors import ScenewatchError
from agent.events.delivery import DeliveryWorker
from agent.events.sinks import SEVERITY_STYLES, Sender
from agent.sources import resolve_source
from memory.events import Outbox

events_app = typer.Typer(help="Events raised by rules; deliver what is still in the outbox.")


def _delivery_status(deliveries: list[dict[str, Any]]) -> str:
    if not deliveries:
        return "-"
    sent = sum(d["delivered"] for d in deliveries)
    return f"{sent}/{len(deliveries)}" + ("" if sent == len(deliveries) else " [yellow]pending[/]")


@events_app.callback(invoke_without_command=True)
def list_events(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="Only events after this: 10m, 2h, 2024-05-01T12:00.")
    ] = None,
    rule: Annotated[
        str | None, typer.Option(help="Only this rule (episode and changes: state changes).")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most events shown (the latest).")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    db: DbOption = None,
) -> None:
    """List events (oldest first), with how many of their deliveries went through."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = db  # `events --db PATH deliver`
        return
    start = parse_since(since) if since else None
    with existing_store(settings(db=db)) as store:
        outbox = Outbox(store)
        source = resolve_source(store, source, also=outbox.sources())
        found = outbox.events(since=start, rule=rule, source=source, limit=limit)
    if as_json:
        typer.echo(json.dumps(found, ensure_ascii=False))
        return
    if not found:
        console.print("no events")
        return
    table = Table("time", "source", "rule", "severity", "message", "delivered")
    for event in found:
        style = SEVERITY_STYLES.get(event["severity"], "")
        table.add_row(
            clock(event["ts"]),
            escape(event["source"]),
            escape(event["rule"]),
            f"[{style}]{event['severity']}[/]",
            escape(event["message"]),
            _delivery_status(event["deliveries"]),
        )
    console.print(table)


@events_app.command("deliver")
def deliver(ctx: typer.Context, db: DbOption = None) -> None:
    """Try every undelivered event again now (after a receiver outage, say)."""
    cfg = settings(db=db or ctx.obj)
    with existing_store(cfg) as store:
        outbox = Outbox(store)
        sender = Sender(console=console)
        worker = DeliveryWorker(
            outbox, sender, backoff_s=cfg.events_backoff_s, backoff_max_s=cfg.events_backoff_max_s
        )
        try:
            report = worker.deliver_pending(due_only=False)
        finally:
            sender.close()
        left = outbox.pending()
    console.print(f"delivered {report.delivered}, failed {report.failed}")
    if left:
        raise ScenewatchError(f"{left} deliveries are still in the outbox (see the log above; retry later)")


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")
