"""The safe predicate language: what it accepts, what it means, what it refuses."""

from __future__ import annotations

import pytest

from agent.events.predicates import BASE_VOCABULARY, BOOL, PredicateError, compile_predicate

VOCABULARY = {**BASE_VOCABULARY, "lights_on": BOOL}
OFFICE = {
    "lights_on": True,
    "people": 0,
    "objects": ["Pack of Cigarettes", "desk"],
    "actions": [],
    "summary": "A cashier counts CASH at the desk.",
    "changes": "",
    "gate_score": 0.2,
    "source": "Office",
    "hour": 23,
    "minute": 5,
    "weekday": "sat",
    "parsed": True,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lights_on and people == 0", True),
        ("lights_on and people > 0", False),
        ("'cigarette' in objects", True),  # any object mentions it, case-insensitive
        ("'cigar' not in objects", False),
        ("summary contains 'cash'", True),
        ("objects contains 'desk' and not (summary contains 'toy')", True),
        ("'cash' in summary or false", True),
        ("source == 'office'", True),
        ("source in ['door', 'porch']", False),  # a literal list compares whole values
        ("hour >= 22 or hour < 6", True),
        ("9 <= hour < 17", False),
        ("hour in [22, 23, 0]", True),
        ("weekday in ['sat', 'sun']", True),
        ("gate_score > 0.1 and parsed", True),
        ("people == -1", False),
        ("changes", False),
        ("objects", True),
    ],
)
def test_meaning(text: str, expected: bool) -> None:
    assert compile_predicate(text, VOCABULARY)(OFFICE) is expected


def test_missing_values_make_comparisons_false() -> None:
    unparsed = {**OFFICE, "people": None, "lights_on": None, "summary": None}
    assert not compile_predicate("lights_on and people == 0", VOCABULARY)(unparsed)
    assert not compile_predicate("people < 1", VOCABULARY)(unparsed)
    assert not compile_predicate("lights_on == false", VOCABULARY)(unparsed)
    assert not compile_predicate("summary contains 'cash'", VOCABULARY)(unparsed)


def test_names_used_are_recorded() -> None:
    predicate = compile_predicate("lights_on and 'x' in objects", VOCABULARY)
    assert predicate.names == {"lights_on", "objects"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("__import__('os').system('x')", "function calls are not allowed"),
        ("summary.__class__", "attribute access"),
        ("objects[0] == 'x'", "subscripts"),
        ("people + 1 > 2", "arithmetic"),
        ("(lambda: 1)()", "function calls"),
        ("[x for x in objects]", "not allowed"),
        ("f'{summary}'", "not allowed"),
        ("ligths_on", "unknown name 'ligths_on' (did you mean 'lights_on'?)"),
        ("open", "unknown name 'open'"),
        ("lights_on and and people", "invalid syntax near 'and people'"),
        ("summary contains", "invalid syntax"),
        ("people @ 2", "'@' is not allowed"),
        ("objects == 'cash'", "use 'in' to look inside a list"),
        ("summary > 3", "'>' compares numbers"),
        ("'cash' in people", "needs text or a list"),
        ("", "empty"),
    ],
)
def test_refused_at_compile_time(text: str, fragment: str) -> None:
    with pytest.raises(PredicateError) as caught:
        compile_predicate(text, VOCABULARY)
    assert fragment in caught.value.reason


def test_error_position_is_inside_the_predicate() -> None:
    with pytest.raises(PredicateError) as caught:
        compile_predicate("lights_on and\n  nope == 1", VOCABULARY)
    assert (caught.value.line, caught.value.column) == (2, 3)
