"""The describe prompt and the tolerant parser of its answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from agent.pipeline.describe import (
    DESCRIBE_MAX_NEW_TOKENS,
    WINDOW_CHARS,
    describe_prompt,
    describe_request,
    frame_to_image,
    parse_description,
)
from memory.observation import Observation

QUESTIONS = {"q1": "Is the door open?", "q2": "Is anyone at the counter?"}


def test_prompt_carries_the_window_and_the_questions() -> None:
    previous = [
        Observation("cam", ts=100.0, summary="an empty shop"),
        Observation("cam", 110.0, "a man enters"),
    ]
    prompt = describe_prompt(previous, QUESTIONS, now_ts=115.0)
    assert "15 s ago: an empty shop" in prompt and "5 s ago: a man enters" in prompt
    assert prompt.index("an empty shop") < prompt.index("a man enters")
    assert "q1: Is the door open?" in prompt and "q2: Is anyone at the counter?" in prompt
    assert '"answers":{"q1":false,"q2":false}' in prompt
    assert "$" not in prompt


def test_prompt_without_history_or_questions() -> None:
    prompt = describe_prompt([], {}, now_ts=0.0)
    assert "first observation" in prompt
    assert "Watch questions" not in prompt
    assert '"answers":{}' in prompt


def test_request_has_one_shrunk_image_and_a_short_answer_cap() -> None:
    frame = np.zeros((720, 1280, 3), np.uint8)
    request = describe_request(frame, previous=[], questions={}, now_ts=0.0, max_side=448)
    assert [image.size for image in request.images] == [(448, 252)]
    assert request.max_new_tokens == DESCRIBE_MAX_NEW_TOKENS <= 200


def test_frame_to_image_is_rgb_and_never_enlarged() -> None:
    frame = np.zeros((10, 20, 3), np.uint8)
    frame[..., 2] = 255  # red in BGR
    image = frame_to_image(frame, 448)
    assert image.size == (20, 10)
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_clean_json() -> None:
    text = (
        '{"summary":"a man walks past","people":1,"objects":["door","bag"],"actions":["walking"],'
        '"changes":"a man entered","answers":{"q1":true,"q2":false}}'
    )
    result = parse_description(text, QUESTIONS)
    assert result.parsed
    assert result.summary == "a man walks past"
    assert (result.people, result.objects, result.actions) == (1, ["door", "bag"], ["walking"])
    assert result.changes == "a man entered"
    assert result.answers == {"q1": True, "q2": False}
    assert result.raw == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('```json\n{"summary": "empty street", "people": 0}\n```', {"summary": "empty street", "people": 0}),
        (
            'Here you go: {"summary": "a van", "people": "2"} Hope it helps {:)}',
            {"summary": "a van", "people": 2},
        ),
        (
            "{'summary': 'two people', 'people': 'two', 'objects': 'bag, car'}",
            {"people": 2, "objects": ["bag", "car"]},
        ),
        ('{"summary": "a cat", "people": 0, "objects": ["cat",],}', {"objects": ["cat"]}),
        ('{"summary": "x", "people": None, "changes": null}', {"people": None, "changes": ""}),
        ('{"summary": ["a", "b"], "people": [{"id": 1}, {"id": 2}]}', {"summary": "a; b", "people": 2}),
        ('{"summary": "ok", "people": "none", "actions": "none"}', {"people": 0, "actions": []}),
        ('{"description": "a quiet yard", "people": 1.0}', {"summary": "a quiet yard", "people": 1}),
        ('{"people": 0, "actions": ["rain falling"]}', {"summary": "rain falling"}),
    ],
)
def test_tolerant_parsing(text: str, expected: dict) -> None:
    result = parse_description(text, QUESTIONS)
    assert result.parsed
    for name, value in expected.items():
        assert getattr(result, name) == value, name


def test_a_cut_off_answer_keeps_what_was_complete() -> None:
    result = parse_description(
        '{"summary": "a dog", "people": 0, "objects": ["dog", "ball"], "answers": {"q1": tr'
    )
    assert result.parsed
    assert (result.summary, result.people, result.objects) == ("a dog", 0, ["dog", "ball"])


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ('{"q1": "Yes", "q2": "no"}', {"q1": True, "q2": False}),
        ('{"q1": 1, "q2": 0}', {"q1": True, "q2": False}),
        ('{"Is the door open?": "yes, wide open"}', {"q1": True}),
        ('{"Q1": true, "2": "No, nobody"}', {"q1": True, "q2": False}),
        ('[true, "no"]', {"q1": True, "q2": False}),
        ('{"q1": "maybe", "q3": true}', {}),
        ('"yes"', {}),
    ],
)
def test_answers_become_booleans_keyed_by_question_name(answers: str, expected: dict) -> None:
    result = parse_description(f'{{"summary": "s", "answers": {answers}}}', QUESTIONS)
    assert result.answers == expected


@pytest.mark.parametrize(
    "text", ["I see a shop door.\n\n  Nobody is there.", "", '{"foo": 1}', "{not json at all"]
)
def test_unparseable_answers_are_kept_as_text(text: str) -> None:
    result = parse_description(text, QUESTIONS)
    assert not result.parsed
    assert result.raw == text
    assert result.summary == " ".join(text.split())


def test_long_unparseable_answer_is_trimmed() -> None:
    result = parse_description("word " * 500)
    assert not result.parsed and len(result.summary) <= 500 and result.summary.endswith("…")


def test_a_garbled_answer_is_kept_unparsed_without_a_syntax_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        description = parse_description("{'summary': 1if x}")
    assert not description.parsed and description.summary == "{'summary': 1if x}"
    assert not [w for w in caught if issubclass(w.category, SyntaxWarning)]


def test_the_window_repeats_at_most_a_short_sentence_of_each_previous_answer() -> None:
    rambling = Observation("cam", ts=100.0, summary="word " * 100)
    prompt = describe_prompt([rambling], {}, now_ts=101.0)
    line = next(line for line in prompt.splitlines() if line.startswith("- 1 s ago: "))
    assert len(line) == len("- 1 s ago: ") + WINDOW_CHARS and line.endswith("…")
