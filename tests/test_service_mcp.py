"""MCP at ``/mcp`` of ``scenewatch serve``: the SDK's client over streamable HTTP against the real
service app, behind its bearer token, on the service's store, engine, vectors and watches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from helpers import UseBackend
from langchain_core.messages import AIMessage, BaseMessage
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from service_support import RULES, Served, frame_counter, served, settings_for
from test_assistant import ScriptedChat
from test_mcp import TOOLS, text_of

from agent.assistant.chat_model import CHAT_MODELS

TOKEN = "mcp-s3cret"
LIMIT_S = 120  # the longest the client session may take


def reply(messages: list[BaseMessage]) -> AIMessage:
    return AIMessage(f"{len(messages)} messages in; the box came at 0:05")


@pytest.fixture
def api(use_backend: UseBackend, synthetic_clip: Path, tmp_path: Path) -> Iterator[Served]:
    """A service with a token that watched the synthetic clip to its end, with a rule on the red box."""
    backend = frame_counter()
    use_backend(backend)
    CHAT_MODELS.add("test", lambda settings, engine: ScriptedChat(script=reply))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = settings_for(tmp_path / "home", api_token=TOKEN, detector=False)
    try:
        with served(
            settings,
            sources=[str(synthetic_clip)],
            backend=backend,
            rules=rules,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as running:
            running.wait_for(lambda: running.source_state(1) == "finished", what="the clip to end")
            running.wait_for(lambda: running.service.reader.unindexed_count() == 0, what="indexing")
            yield running
    finally:
        CHAT_MODELS.remove("test")


async def session(url: str) -> dict[str, Any]:
    """One MCP session with the token: the tools, and a call of each."""
    with anyio.fail_after(LIMIT_S):
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            return {
                "tools": {tool.name for tool in (await client.list_tools()).tools},
                "events": await client.call_tool("events", {"source": "box.mp4"}),
                "timeline": await client.call_tool("timeline", {"since": "1h"}),
                "recall": await client.call_tool("recall", {"query": "a red box", "k": 3}),
                "look": await client.call_tool("look", {"question": "Is there a box?", "at_s": 6}),
                "ask": await client.call_tool("ask", {"question": "When did the box come?"}),
                "elsewhere": await client.call_tool("look", {"source": "/etc/hostname"}),
            }


def test_mcp_over_http_in_the_service_behind_its_token(api: Served, synthetic_clip: Path) -> None:
    clip = str(synthetic_clip)
    got = anyio.run(session, f"{api.url}/mcp")
    assert got["tools"] == TOOLS
    stored = api.client.get("/api/events", params={"source": clip}).json()
    events = got["events"].structured_content["result"]
    assert [event["id"] for event in events] == [event["id"] for event in stored] and events
    assert {event["rule"] for event in events} == {"box_seen"}
    entries = got["timeline"].structured_content["result"]
    assert any(entry["kind"] == "episode" for entry in entries)
    assert [entry["kind"] for entry in entries].count("event") == len(stored)
    recalled = got["recall"].structured_content["result"]
    assert len(recalled) == 3 and all(item["source"] == clip for item in recalled)
    assert "a red box" in recalled[0]["summary"]
    assert "a red box" in text_of(got["look"])  # the service's engine answered, on the frame at 6 s
    answer = got["ask"].structured_content
    assert answer["answer"].endswith("the box came at 0:05") and answer["thread"]
    assert got["elsewhere"].is_error and "/etc/hostname" in text_of(got["elsewhere"])

    refused = httpx.post(f"{api.url}/mcp", json={}, timeout=10)  # no token
    assert refused.status_code == 401 and refused.json() == {"error": "missing or wrong API token"}
    rebinding = httpx.post(
        f"{api.url}/mcp",
        json={},
        headers={"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"},
        timeout=10,
    )
    assert rebinding.status_code == 421  # a loopback service answers only to a loopback Host
