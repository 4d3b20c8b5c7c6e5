"""Parse Qwen/Hermes-style tool calls out of generated text.

Qwen3-VL writes each call as ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``.
Well-formed blocks become calls; text outside them is kept as the message content; a
malformed or truncated block is kept verbatim in the content, so nothing the model said
is lost and no half-read call is ever run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)


@dataclass(frozen=True)
class ParsedCall:
    """One well-formed tool call: a function name and its arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass
class ParsedReply:
    """Generated text split into the text for the user and the tool calls."""

    content: str
    calls: list[ParsedCall] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)


def _parse_block(body: str) -> ParsedCall | None:
    """A call from a block's JSON body, or None when it is not a well-formed call."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return None
    return ParsedCall(name=data["name"], arguments=arguments)


def parse_tool_calls(text: str) -> ParsedReply:
    """Split ``text`` into content and tool calls; malformed blocks stay in the content."""
    pieces: list[str] = []
    calls: list[ParsedCall] = []
    malformed: list[str] = []
    position = 0
    for match in _BLOCK.finditer(text):
        pieces.append(text[position : match.start()])
        position = match.end()
        call = _parse_block(match.group(1).strip())
        if call is None:
            malformed.append(match.group(0))
            pieces.append(match.group(0))
        else:
            calls.append(call)
    pieces.append(text[position:])
    content = re.sub(r"\n{3,}", "\n\n", "".join(pieces)).strip()
    return ParsedReply(content=content, calls=calls, malformed=malformed)
