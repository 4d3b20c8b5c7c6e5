"""Parsing Qwen-style ``<tool_call>`` blocks out of generated text."""

from __future__ import annotations

from agent.assistant.tool_calls import ParsedCall, parse_tool_calls


def test_one_call() -> None:
    reply = parse_tool_calls('<tool_call>\n{"name": "look", "arguments": {"source": "cam1"}}\n</tool_call>')
    assert reply.calls == [ParsedCall("look", {"source": "cam1"})]
    assert reply.content == ""
    assert reply.malformed == []


def test_two_calls() -> None:
    text = (
        '<tool_call>\n{"name": "recall", "arguments": {"query": "red box"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "timeline", "arguments": {"since": "1h"}}\n</tool_call>'
    )
    reply = parse_tool_calls(text)
    assert [call.name for call in reply.calls] == ["recall", "timeline"]
    assert reply.calls[1].arguments == {"since": "1h"}
    assert reply.content == ""


def test_nested_json_arguments() -> None:
    text = (
        '<tool_call>\n{"name": "recall", "arguments": {"query": "a </b> tag", '
        '"filters": {"since": "10m", "tags": ["door", {"x": [1, 2]}]}}}\n</tool_call>'
    )
    reply = parse_tool_calls(text)
    assert reply.calls == [
        ParsedCall(
            "recall", {"query": "a </b> tag", "filters": {"since": "10m", "tags": ["door", {"x": [1, 2]}]}}
        )
    ]


def test_arguments_as_json_string_and_missing() -> None:
    reply = parse_tool_calls(
        '<tool_call>{"name": "look", "arguments": "{\\"source\\": \\"cam1\\"}"}</tool_call>'
        '<tool_call>{"name": "compare"}</tool_call>'
    )
    assert reply.calls == [ParsedCall("look", {"source": "cam1"}), ParsedCall("compare", {})]


def test_truncated_block_is_kept_as_text() -> None:
    text = 'Let me check.\n<tool_call>\n{"name": "recall", "arguments": {"query": "red'
    reply = parse_tool_calls(text)
    assert reply.calls == []
    assert reply.content == text
    assert reply.malformed == ['<tool_call>\n{"name": "recall", "arguments": {"query": "red']


def test_malformed_block_between_good_ones() -> None:
    text = (
        '<tool_call>{"name": "look", "arguments": {}}</tool_call>'
        "<tool_call>not json</tool_call>"
        '<tool_call>{"arguments": {}}</tool_call>'
    )
    reply = parse_tool_calls(text)
    assert reply.calls == [ParsedCall("look", {})]
    assert reply.content == '<tool_call>not json</tool_call><tool_call>{"arguments": {}}</tool_call>'
    assert len(reply.malformed) == 2


def test_text_around_the_block() -> None:
    text = (
        "I will look at the camera.\n\n\n"
        '<tool_call>\n{"name": "look", "arguments": {"question": "Is the door open?"}}\n</tool_call>\n'
        "Then I will answer."
    )
    reply = parse_tool_calls(text)
    assert reply.calls == [ParsedCall("look", {"question": "Is the door open?"})]
    assert reply.content == "I will look at the camera.\n\nThen I will answer."


def test_plain_text() -> None:
    assert parse_tool_calls("  The box appeared at 14:03:05.  ").content == "The box appeared at 14:03:05."
