"""MCP: scenewatch's tools for other agents, with the SDK's own client, over stdio (``scenewatch mcp``
as a subprocess) and over streamable HTTP at /mcp in a FastAPI app (on a free local port)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from mcp import Client, StdioServerParameters
from test_assistant import ScriptedChat

from agent.core.config import Settings, load_settings
from agent.service.mcp import build_mcp_server, mcp_http
from agent.sources import source_name
from memory.episodes import EpisodeTracker
from memory.events import NewEvent, Outbox
from memory.indexer import reindex
from memory.observation import Observation
from memory.store import Store
from memory.vectors import open_vectors
from tools.vision.base import VisionRequest
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

SUMMARIES = ["an empty doorstep", "a courier leaves a parcel by the door", "the parcel lies by the door"]
TOOLS = {"look", "recall", "timeline", "events", "ask"}
LIMIT_S = 120  # the longest one client session may take (a stdio one spawns Python and loads embeddings)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, synthetic_clip: Path) -> Settings:
    """A database of the synthetic clip as a watch leaves it: three observations ten minutes ago, in
    episodes, indexed, and one event."""
    settings = load_settings(db=tmp_path_factory.mktemp("mcp") / "scenewatch.db")
    store = Store(settings.db_path)
    tracker = EpisodeTracker(store, settings)
    source, start = source_name(str(synthetic_clip)), time.time() - 600
    for index, summary in enumerate(SUMMARIES):
        obs = Observation(source=source, ts=start + 5 * index, video_t=5.0 * index, summary=summary)
        store.add(obs)
        tracker.on_observation(obs)
    tracker.close()
    event = NewEvent(start + 5, source, "parcel", "rule", "warning", "a parcel by the door")
    Outbox(store).record([event])
    with open_vectors(store, settings) as vectors:
        reindex(vectors)
    store.close()
    return settings


def text_of(result: Any) -> str:
    return "".join(getattr(part, "text", "") for part in result.content)


def see_parcel(request: VisionRequest) -> str:
    """The scripted vision model: what it was asked, and the size of the picture it got."""
    question = request.messages[-1]["content"][-1]["text"]
    return f"{request.images[0].size[0]}px wide; asked {question!r}: a parcel by the door"


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a free 127.0.0.1 port, in a thread; its /mcp URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=3)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(10)


def test_over_http_in_a_fastapi_app(watched: Settings, synthetic_clip: Path) -> None:
    clip = source_name(str(synthetic_clip))

    def script(messages: list[BaseMessage]) -> AIMessage:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if not results:
            return AIMessage("", tool_calls=[{"name": "recall", "args": {"query": "parcel"}, "id": "c1"}])
        return AIMessage(f"From memory: {results[-1].text}")

    store = Store(watched.db_path)
    with (
        Engine(ScriptedBackend(see_parcel), batch_wait_ms=0) as engine,
        open_vectors(store, watched) as vectors,
    ):
        server = build_mcp_server(
            watched, store=store, engine=engine, vectors=vectors, chat_model=ScriptedChat(script=script)
        )
        endpoint = mcp_http(server)

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with endpoint.session_manager.run():
                yield

        app = FastAPI(lifespan=lifespan)
        app.router.routes.extend(endpoint.routes)

        async def session(url: str) -> dict[str, Any]:
            with anyio.fail_after(LIMIT_S):
                async with Client(url) as client:
                    return {
                        "tools": {tool.name for tool in (await client.list_tools()).tools},
                        "recall": await client.call_tool(
                            "recall", {"query": "a parcel", "since": "1h", "k": 2}
                        ),
                        "timeline": await client.call_tool("timeline", {"since": "1h"}),
                        "events": await client.call_tool("events", {"source": "box.mp4"}),
                        "look": await client.call_tool("look", {"question": "Is there a parcel?", "at_s": 6}),
                        "ask": await client.call_tool("ask", {"question": "Where is the parcel?"}),
                        "unknown": await client.call_tool("recall", {"query": "x", "source": "garage.mp4"}),
                        "bad": await client.call_tool("timeline", {"since": "yesterday-ish"}),
                    }

        with served(app) as url:
            got = anyio.run(session, url)
            wrong_host = httpx.post(url, json={}, headers={"Host": "evil.example"}, timeout=10)
    store.close()

    assert got["tools"] == TOOLS
    recalled = got["recall"].structured_content["result"]
    assert recalled[0]["summary"] in SUMMARIES[1:] and len(recalled) == 2
    assert all(item["source"] == clip for item in recalled)
    entries = got["timeline"].structured_content["result"]
    assert [entry["kind"] for entry in entries].count("event") == 1
    assert any(entry["kind"] == "episode" and "parcel" in entry["text"] for entry in entries)
    [event] = got["events"].structured_content["result"]
    assert (event["rule"], event["message"]) == ("parcel", "a parcel by the door")
    assert (
        text_of(got["look"])
        == f"{clip} (video 0:06.0): 320px wide; asked 'Is there a parcel?': a parcel by the door"
    )
    answer = got["ask"].structured_content
    assert answer["answer"].startswith("From memory: Observations matching 'parcel'") and answer["thread"]
    assert "a courier leaves a parcel by the door" in answer["answer"]
    assert got["unknown"].is_error and "no source garage.mp4" in text_of(got["unknown"])
    assert got["bad"].is_error and "yesterday-ish" in text_of(got["bad"])
    assert wrong_host.status_code == 421  # DNS-rebinding protection on a loopback server


def test_over_stdio_with_the_scenewatch_mcp_command(watched: Settings) -> None:
    """``python -m agent.cli mcp``: recall and timeline answer without loading a model."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "agent.cli", "mcp", "--db", str(watched.db_path), "--backend", "no-such-backend"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )

    async def session() -> dict[str, Any]:
        with anyio.fail_after(LIMIT_S):
            async with Client(params) as client:
                return {
                    "tools": {tool.name for tool in (await client.list_tools()).tools},
                    "recall": await client.call_tool("recall", {"query": "parcel by the door", "k": 1}),
                    "timeline": await client.call_tool("timeline", {"since": "1h"}),
                    "look": await client.call_tool("look", {}),
                }

    got = anyio.run(session)
    assert got["tools"] == TOOLS
    [best] = got["recall"].structured_content["result"]
    assert best["summary"] in SUMMARIES[1:]
    assert len(got["timeline"].structured_content["result"]) >= 2
    assert got["look"].is_error and "no vision backend called 'no-such-backend'" in text_of(got["look"])
