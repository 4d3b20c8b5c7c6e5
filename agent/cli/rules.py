"""``scenewatch rules check``: validate a rules file and show what it defines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from agent.cli.common import console
from agent.core.durations import format_duration
from agent.events.ruleset import RuleSet, load_rules
from agent.events.sinks import SEVERITY_STYLES

rules_app = typer.Typer(help="Rules files: named watch questions, predicates, sinks.", no_args_is_help=True)


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
                format_duration(rule.cooldown_s) if rule.cooldown_s else "-",
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
    app.add_typer(rules_app, name="rules")
