"""Rules files: the format, errors that name the line, the demo packs, ``scenewatch rules check``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.core.errors import ScenewatchError
from agent.events.ruleset import Hold, load_rules, parse_rules

DEMOS = Path(__file__).resolve().parent.parent / "demos" / "rules"

GOOD = """\
questions:
  lights_on: "Are the lights on?"
sinks:
  console: {type: stdout}
  log: {type: jsonl, path: events.jsonl}
  hook:
    type: webhook
    url: http://127.0.0.1:9/hook
    secret_env: HOOK_SECRET
state_changes: {episodes: true, sinks: [log]}
rules:
  lit_and_empty:
    when: "lights_on and people == 0"
    for: 3 observations
    cooldown: 1h
    message: "Lights on at $source"
  cash:
    when: >
      'cash' in objects
      or summary contains 'cash'
    for: 30s
    severity: critical
    sinks: [console]
"""


def test_parses_questions_sinks_rules_and_state_changes(tmp_path: Path) -> None:
    ruleset = parse_rules(GOOD, base=tmp_path)
    assert ruleset.questions == {"lights_on": "Are the lights on?"}
    assert ruleset.sinks["log"] == {"type": "jsonl", "path": str(tmp_path / "events.jsonl")}
    assert ruleset.sinks["hook"]["secret_env"] == "HOOK_SECRET"
    lit, cash = ruleset.rules
    assert (lit.name, lit.hold, lit.cooldown_s, lit.severity) == (
        "lit_and_empty",
        Hold(observations=3),
        3600,
        "warning",
    )
    assert lit.sinks == ("console", "log", "hook")  # no sinks given: every sink of the file
    assert lit.when({"lights_on": True, "people": 0})
    assert (cash.hold, cash.severity, cash.sinks) == (Hold(seconds=30), "critical", ("console",))
    assert cash.when({"objects": [], "summary": "paid in cash"})
    assert ruleset.state_changes.episodes and not ruleset.state_changes.changes
    assert ruleset.state_changes.sinks == ("log",)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    cooldown: 1h",
            "    cooldwn: 1h",
            "line 15: rules.lit_and_empty.cooldwn: unknown field 'cooldwn'",
        ),
        (
            '"lights_on and people == 0"',
            '"lights_on and ppl == 0"',
            "line 13: rules.lit_and_empty.when: unknown name",
        ),
        (
            '"lights_on and people == 0"',
            "\"__import__('os').system('x')\"",
            "line 13: rules.lit_and_empty.when: function calls are not allowed",
        ),
        (
            '"lights_on and people == 0"',
            "summary.__class__",
            "line 13: rules.lit_and_empty.when: attribute access",
        ),
        (
            '"lights_on and people == 0"',
            '"lights_on and and people"',
            "line 13: rules.lit_and_empty.when: invalid",
        ),
        ("or summary contains 'cash'", "or summary.upper()", "line 19: rules.cash.when: function calls"),
        ("sinks: [console]", "sinks: [consol]", "line 23: rules.cash.sinks.0: unknown sink 'consol'"),
        ("type: webhook", "type: slack", "line 6: sinks.hook: unknown sink type 'slack'"),
        ("    url: http://127.0.0.1:9/hook\n", "", "line 6: sinks.hook.url: missing field 'url'"),
        ("for: 3 observations", "for: 3", "line 14: rules.lit_and_empty.for: 'for: 3' is ambiguous"),
        ("for: 30s", "for: soon", "line 21: rules.cash.for: not a duration"),
        ("severity: critical", "severity: urgent", "line 22: rules.cash.severity:"),
        ("  cash:", "  lit_and_empty:", "line 17: duplicate key 'lit_and_empty'"),
        ("$source", "$sauce", "line 16: rules.lit_and_empty.message: unknown placeholder $sauce"),
        ("  lights_on:", "  people:", "line 2: questions.people: 'people' is a reserved name"),
        ("  console: {type: stdout}", "  console: {type: stdout", "line 5: not valid YAML"),
    ],
)
def test_errors_name_the_line(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    with pytest.raises(ScenewatchError) as caught:
        parse_rules(GOOD.replace(old, new), name="bad.yaml")
    assert str(caught.value).startswith("bad.yaml, ")
    assert expected in str(caught.value)


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ScenewatchError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")
    with pytest.raises(ScenewatchError, match="empty"):
        parse_rules("# nothing\n")
    with pytest.raises(ScenewatchError, match="line 1: expected a mapping"):
        parse_rules("- a\n- b\n")


@pytest.mark.parametrize(
    ("pack", "questions", "rules"),
    [
        (
            "office",
            ["lights_on", "person_lying", "at_front_desk", "wears_badge"],
            ["lit_and_empty", "person_down", "stranger_at_desk_at_night"],
        ),
        (
            "livestream_commerce",
            ["cigarettes_shown", "medicine_shown", "cash_shown", "brand_logo"],
            ["tobacco_on_sale", "prescription_drugs", "cash_deal", "branded_goods"],
        ),
        (
            "home_entrance",
            ["person_at_door", "package_on_doorstep"],
            ["visitor", "night_visitor", "package_left"],
        ),
    ],
)
def test_demo_packs_load(pack: str, questions: list[str], rules: list[str]) -> None:
    ruleset = load_rules(DEMOS / f"{pack}.yaml")
    assert ruleset.questions and ruleset.rules
    assert list(ruleset.questions) == questions
    assert [rule.name for rule in ruleset.rules] == rules
    for rule in ruleset.rules:
        assert rule.sinks and set(rule.sinks) <= set(ruleset.sinks), rule.name
    assert set(ruleset.state_changes.sinks) <= set(ruleset.sinks)


def test_rules_check_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agent.cli.app import app

    for pack in sorted(DEMOS.glob("*.yaml")):
        result = CliRunner().invoke(app, ["rules", "check", str(pack)])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("ok ") and "rules" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace('"lights_on and people == 0"', "summary.__class__"))
    done = subprocess.run(
        [sys.executable, "-c", "from agent.cli.app import main; main()", "rules", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "line 13" in done.stderr and "attribute access" in done.stderr and "Traceback" not in done.stderr


def test_a_jsonl_path_is_relative_to_the_rules_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "door.yaml").write_text("sinks: {log: {type: jsonl, path: logs/events.jsonl}}\n")
    monkeypatch.chdir(tmp_path)  # elsewhere: the path still means the rules file's folder
    ruleset = load_rules("rules/door.yaml")
    assert ruleset.sinks["log"]["path"] == str(folder / "logs" / "events.jsonl")
