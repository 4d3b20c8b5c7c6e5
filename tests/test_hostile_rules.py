"""Hostile rules files (issue 12, hostile probe): a predicate of 600 ``not``s, a YAML alias bomb, a file
too large or endless: each is a one-line error naming the file (and line), found before anything
grows, never a RecursionError or gigabytes of expanded YAML."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.app import app
from agent.core.errors import ScenewatchError
from agent.events.predicates import BASE_VOCABULARY, MAX_DEPTH, PredicateError, compile_predicate
from agent.events.ruleset import MAX_RULES_BYTES, load_rules, parse_rules

runner = CliRunner()

NOTS = """\
rules:
  contrary:
    when: "{nots}parsed"
"""

BOMB = """\
questions:
  door: "Is the door open?"
lol1: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
lol2: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
lol3: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
lol4: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
lol5: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
lol6: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
lol7: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
lol8: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
lol9: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""

SHARED_SINKS = """\
sinks:
  console: {type: stdout}
  log: {type: jsonl, path: events.jsonl}
rules:
  crowd:
    when: "people > 3"
    sinks: &both [console, log]
  empty:
    when: "people == 0"
    sinks: *both
"""


@pytest.mark.parametrize("count", [600, 5000, 100_000])
def test_a_chain_of_nots_is_refused_in_words(count: int) -> None:
    with pytest.raises(ScenewatchError) as raised:
        parse_rules(NOTS.format(nots="not " * count), name="nots.yaml")
    assert str(raised.value).startswith(
        "nots.yaml, line 3: rules.contrary.when: the predicate nests more than"
    )


def test_the_depth_bound_is_where_it_says() -> None:
    assert compile_predicate("not " * (MAX_DEPTH - 1) + "parsed", BASE_VOCABULARY)({"parsed": True}) is False
    with pytest.raises(PredicateError, match=f"more than {MAX_DEPTH} levels"):
        compile_predicate("not " * MAX_DEPTH + "parsed", BASE_VOCABULARY)
    nested = "people > 0 and (" * MAX_DEPTH + "parsed" + ")" * MAX_DEPTH
    with pytest.raises(PredicateError, match="levels deep"):
        compile_predicate(nested, BASE_VOCABULARY)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    tracemalloc.start()
    try:
        with pytest.raises(ScenewatchError) as raised:
            load_rules(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(raised.value).startswith(f"{path}, line ")
    assert "more than 100,000 values once its aliases are followed" in str(raised.value)
    assert peak < 20 * 2**20  # the 387 million strings were never made


def test_aliases_within_reason_still_work() -> None:
    ruleset = parse_rules(SHARED_SINKS)
    assert [rule.sinks for rule in ruleset.rules] == [("console", "log"), ("console", "log")]


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(ScenewatchError, match="a YAML alias refers to the value that holds it"):
        parse_rules("rules: &loop\n  again: *loop\n", name="loop.yaml")


def test_yaml_nested_past_recursion_is_refused() -> None:
    with pytest.raises(ScenewatchError, match="nests too deeply"):
        parse_rules("[" * 50_000, name="deep.yaml")


def test_a_file_too_large_or_endless_is_refused(tmp_path: Path) -> None:
    large = tmp_path / "large.yaml"
    large.write_text("# padding\n" * (MAX_RULES_BYTES // 10 + 1))
    for path in (large, Path("/dev/zero")):
        if not path.exists():
            continue
        with pytest.raises(ScenewatchError, match="is larger than 1,000,000 bytes"):
            load_rules(path)


def test_the_commands_say_it_in_one_line(tmp_path: Path, synthetic_clip: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    nots = tmp_path / "nots.yaml"
    nots.write_text(NOTS.format(nots="not " * 600))
    for args in (
        ["rules", "check", str(bomb)],
        ["rules", "check", str(nots)],
        ["watch", str(synthetic_clip), "--rules", str(bomb), "--model", "no/such-model"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and isinstance(result.exception, ScenewatchError), (args, result.output)
        assert str(result.exception).startswith(str(args[-1] if args[0] == "rules" else bomb))
