"""``scenewatch events`` (list, deliver) and ``scenewatch rules check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from agent.commands.common import DbOption, console, existing_store, settings
from agent.durations import clock, parse_since
from agent.errors import ScenewatchError
from agent.outbox import DeliveryWorker, Outbox
from agent.rules import RuleSet, format_seconds, load_rules
from agent.sinks import SEVERITY_STYLES, Sender
from agent.sources import resolve_source

events_app = typer.Typer(help="Events raised by rules; deliver what is still in the outbox.")
rules_app = typer.Typer(help="Rules files: named watch questions, predicates, sinks.", no_args_is_help=True)


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


@rules_app.command("check")
def check(file: Annotated[Path, typer.Argument(help="The rules file (YAML).")]) -> None:
    """Validate a rules file and print what it defines; errors name the line."""
    ruleset = load_rules(file)
    _print_ruleset(file, ruleset)


def _print_ruleset(file: Path, ruleset: RuleSet) -> None:
    console.print(
        f"[bold green]ok[/] {escape(str(file))}: {len(ruleset.questions)} questions, "
        f"{len(ruleset.rules)} rules, {len(ruleset.sinks)} sinks"
    )
    if ruleset.questions:
        questions = Table("question", "asked", title="watch questions", title_justify="left")
        for name, text in ruleset.questions.items():
            questions.add_row(name, escape(text))
        console.print(questions)
    if ruleset.rules:
        rules = Table(
            "rule", "when", "for", "cooldown", "severity", "sinks", title="rules", title_justify="left"
        )
        for rule in ruleset.rules:
            style = SEVERITY_STYLES.get(rule.severity, "")
            rules.add_row(
                rule.name,
                escape(rule.when.text),
                str(rule.hold),
                format_seconds(rule.cooldown_s) if rule.cooldown_s else "-",
                f"[{style}]{rule.severity}[/]",
                ", ".join(rule.sinks) or "(recorded only)",
            )
        console.print(rules)
    if ruleset.sinks:
        sinks = Table("sink", "type", "where", title="sinks", title_justify="left")
        for name, target in ruleset.sinks.items():
            where = target.get("url") or target.get("path") or ""
            if target.get("secret_env"):
                where += f" (signed, secret from ${target['secret_env']})"
            elif target.get("secret"):
                where += " (signed)"
            sinks.add_row(name, target["type"], escape(where))
        console.print(sinks)
    changes = ruleset.state_changes
    kinds = [
        name for name, wanted in (("episodes", changes.episodes), ("changes", changes.changes)) if wanted
    ]
    if kinds:
        console.print(
            f"state changes: {' and '.join(kinds)}, severity {changes.severity}, "
            f"to {', '.join(changes.sinks) or '(recorded only)'}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")
    app.add_typer(rules_app, name="rules")
