"""scenewatch's tools for other agents, over MCP (the ``mcp`` SDK 2: ``MCPServer``).

:func:`build_mcp_server` exposes ``look``, ``recall``, ``timeline``, ``events`` and ``ask`` over the
process's own store, engine and vectors, so a service shares one model between its watch loops,
its API and MCP clients. Two transports:

- stdio: ``scenewatch mcp`` (:mod:`agent.cli.mcp`) runs ``server.run("stdio")``;
- streamable HTTP at exactly ``/mcp`` in the service's FastAPI app: :func:`mcp_http` gives the
  route to add to the app's router and the session manager to run in the app's lifespan
  (FastAPI does not run a mounted app's lifespan)::

      server = build_mcp_server(settings, store=store, engine=engine, vectors=vectors)
      endpoint = mcp_http(server, host=settings.api_host)
      app.router.routes.extend(endpoint.routes)
      # in the lifespan:  async with endpoint.session_manager.run(): yield

  One server per app: a session manager runs only once. The routes are raw Starlette routes, so
  FastAPI dependencies do not reach them: put the bearer-token check in an ASGI middleware.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import BaseRoute

from agent.assistant.agent import open_assistant
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.events.watchlist import Watchlist
from agent.sources import SourceReader, resolve_source
from memory.events import Outbox
from memory.store import Store
from memory.timeline import timeline as timeline_entries
from memory.vectors import VectorIndex
from tools.frames import FrameReader
from tools.look import make_look_tool
from tools.timeline import parse_when
from tools.vision.base import VisionBackend

INSTRUCTIONS = (
    "scenewatch watches cameras and videos with a vision model and remembers what it saw. "
    "look: ask about a source now; recall: past observations by meaning; timeline: what happened in "
    "a time range; events: alerts raised by rules; ask: a question answered by scenewatch's own agent. "
    "Times: a duration ago (10m, 2h), a clock time today (14:05) or a date and time (2024-05-01T14:05)."
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")

VectorsGiven = VectorIndex | Callable[[], VectorIndex]
"""An open vector index, or how to get it at each call (the service opens its own at first use)."""
WatchesGiven = Watchlist | Callable[[], Watchlist] | None
"""Where ``ask``'s agent puts watches, or how to get it at each call (the service's, once loaded)."""


def build_mcp_server(
    settings: Settings,
    *,
    store: Store,
    engine: VisionBackend,
    vectors: VectorsGiven,
    frames: FrameReader | None = None,
    watches: WatchesGiven = None,
    chat_model: BaseChatModel | None = None,
) -> MCPServer:
    """An MCP server over the caller's open ``store``, ``engine`` (the shared model) and ``vectors``
    (an index, or a function giving it: one index may serve every thread of a process).

    ``frames`` reads sources for ``look`` (default: :class:`~agent.sources.SourceReader` over the
    store); ``watches`` (or a function giving it) and ``chat_model`` go to the agent behind ``ask``
    (defaults: watches stored for the next serve; the chat model the settings name). The caller
    keeps ownership of everything it passes. A user error (an unknown source, a bad time, a service
    still loading its model) comes back as the tool's error with its message.
    """
    server = MCPServer("scenewatch", instructions=INSTRUCTIONS, log_level="WARNING")
    look_tool = make_look_tool(engine, store, frames or SourceReader(store), settings)

    def index() -> VectorIndex:
        return vectors() if callable(vectors) else vectors

    def watchlist() -> Watchlist | None:
        return watches() if callable(watches) else watches

    def source_of(given: str | None) -> str | None:
        return resolve_source(store, given, also=Outbox(store).sources()) if given else None

    def when(text: str | None) -> float | None:
        return parse_when(text) if text else None

    @server.tool()
    def look(source: str | None = None, question: str | None = None, at_s: float | None = None) -> str:
        """Look at a camera or video now: the newest frame of a live source (or the frame at ``at_s``
        seconds of a video file) is given to the vision model with ``question`` (default: describe it).
        ``source`` defaults to the source watched last."""
        with _user_errors():
            return str(look_tool.invoke({"source": source, "question": question, "at_s": at_s}))

    @server.tool()
    def recall(
        query: str, since: str | None = None, until: str | None = None, source: str | None = None, k: int = 5
    ) -> list[dict[str, Any]]:
        """Past observations closest in meaning to ``query`` (best first), optionally within a time
        range and of one source: id, source, ts (epoch seconds), video_t, summary, score."""
        with _user_errors():
            start, end, name = when(since), when(until), source_of(source)
            found = index().recall(query, source=name, since=start, until=end, k=max(1, min(k, 50)))
        return [item.to_dict() for item in found]

    @server.tool()
    def timeline(
        since: str = "1h", until: str | None = None, source: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """What happened in a time range, oldest first: episodes (spans of an unchanged scene, with
        their duration) and events."""
        with _user_errors():
            entries = timeline_entries(
                store, when(since), when(until), source_of(source), limit=max(1, limit)
            )
        return [entry.to_dict() for entry in entries]

    @server.tool()
    def events(
        since: str | None = None, rule: str | None = None, source: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Events raised by rules and watches (newest last), with their deliveries; a clip's path is in
        ``payload.clip``."""
        with _user_errors():
            outbox = Outbox(store)
            return outbox.events(since=when(since), rule=rule, source=source_of(source), limit=max(1, limit))

    @server.tool()
    def ask(question: str, source: str | None = None, thread: str | None = None) -> dict[str, str]:
        """Ask scenewatch's own agent (it looks, recalls and reads the timeline itself, and cites
        times) about a watched ``source`` (default: the one watched last). Pass the returned
        ``thread`` again to continue the conversation."""
        with (
            _user_errors(),
            open_assistant(
                settings,
                source=source_of(source),
                thread=thread,
                engine=engine,
                vectors=index(),
                chat_model=chat_model,
                watches=watchlist(),
            ) as assistant,
        ):
            return {"answer": assistant.ask(question), "thread": assistant.thread}

    return server


@contextmanager
def _user_errors() -> Iterator[None]:
    """A ScenewatchError (the user's mistake, in one line) becomes the tool's error message."""
    try:
        yield
    except ScenewatchError as exc:
        raise ToolError(str(exc)) from exc


@dataclass
class McpEndpoint:
    """The streamable-HTTP MCP endpoint for a Starlette/FastAPI app: add ``routes`` (``/mcp``) to the
    app's router; run ``session_manager.run()`` in its lifespan."""

    routes: list[BaseRoute]
    session_manager: StreamableHTTPSessionManager


def mcp_http(server: MCPServer, *, host: str = "127.0.0.1", allowed_hosts: Sequence[str] = ()) -> McpEndpoint:
    """The endpoint of ``server`` at exactly ``/mcp`` (no redirect). Requests must name the server in
    their Host header: a loopback address (on a loopback ``host``) or one of ``allowed_hosts``
    (``name:port`` or ``name:*``), against DNS rebinding; on another ``host`` without
    ``allowed_hosts`` the check is off (the service then requires its token)."""
    security = None
    if allowed_hosts:
        hosts = [*allowed_hosts, *(f"{name}:*" for name in ("127.0.0.1", "localhost", "[::1]"))]
        origins = [f"{scheme}://{name}" for name in hosts for scheme in ("http", "https")]
        security = TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)
    elif host not in LOOPBACK:
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(streamable_http_path="/mcp", transport_security=security, host=host)
    return McpEndpoint(list(app.routes), server.session_manager)
