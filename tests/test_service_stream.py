"""``GET /api/stream``: every observation and event once, live and across reconnects; several servers."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import pytest
from service_support import RULES, frame_counter, served, settings_for, sse_messages

from agent.service.runtime import Service
from agent.service.server import ServerThread
from agent.service.stream import Cursor
from memory.events import Outbox


def _stored(service: Service) -> list[tuple[str, int]]:
    """Every observation and event of the store as (kind, id), each event after its observation."""
    items = []
    events = Outbox(service.reader).events(limit=10_000)
    for obs in service.reader.page(limit=10_000):
        items.append(("observation", obs.id))
        items += [("event", event["id"]) for event in events if event["observation_id"] == obs.id]
    return items


def test_a_client_that_reconnects_gets_what_it_missed_once_each(synthetic_clip: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = settings_for(tmp_path / "home", pipeline_depth=1, api_stream_ping_s=0.2)
    with served(settings, backend=frame_counter(delay=0.15), rules=rules) as api:
        with api.client.stream("GET", "/api/stream", params={"after": "0-0"}) as first:
            assert first.headers["content-type"].startswith("text/event-stream")
            added = api.client.post("/api/sources", json={"source": str(synthetic_clip)})
            assert added.status_code == 201
            before = sse_messages(first, limit=2)  # then the client goes, mid-stream
        assert [m["event"] for m in before] == ["observation", "observation"]
        api.wait_for(lambda: api.source_state(added.json()["id"]) == "finished", what="the clip to end")
        expected = _stored(api.service)
        assert any(kind == "event" for kind, _ in expected)
        again = {"Last-Event-ID": before[-1]["id"]}
        with api.client.stream("GET", "/api/stream", headers=again) as second:
            after = sse_messages(second, limit=len(expected) - 2)
        got = [(m["event"], m["data"]["id"]) for m in before + after]
        assert got == expected  # everything, once, each event after its observation
        last = Cursor.parse(after[-1]["id"])
        assert (last.observation, last.event) == (api.service.reader.last_id(), api.service.outbox.last_id())
        observation = next(m["data"] for m in after if m["event"] == "observation")
        assert observation["thumbnail"].startswith("/api/observations/")
        api.wait_for(
            lambda: not api.service.commits._waiters, what="the streams to let go"
        )  # both clients gone
        with api.client.stream("GET", "/api/stream") as idle:  # from now: nothing new, pings only
            lines = []
            for line in idle.iter_lines():
                lines.append(line)
                if len(lines) >= 4:
                    break
        assert ": ping" in lines and not any(line.startswith("data:") for line in lines)


def test_bad_cursors_and_kinds_are_400(tmp_path: Path) -> None:
    with served(settings_for(tmp_path / "home")) as api:
        assert api.client.get("/api/stream", params={"after": "12"}).status_code == 400
        assert api.client.get("/api/stream", headers={"Last-Event-ID": "x-1"}).status_code == 400
        assert api.client.get("/api/stream", params={"kinds": "frames"}).status_code == 400


def test_a_later_server_streams_after_an_earlier_one_stopped_on_a_signal(
    synthetic_clip: Path, tmp_path: Path
) -> None:
    """sse-starlette (the MCP SDK's) sets a process-wide exit flag when any server handles a signal."""
    sse_starlette = pytest.importorskip("sse_starlette.sse")
    first = ServerThread(Service(settings_for(tmp_path / "one"), backend=frame_counter()))
    with first:
        assert first.service.wait_ready(60)
        first.server.handle_exit(signal.SIGTERM, None)  # as a signal would: the flag is set
        first._thread.join(30)
    assert not first._thread.is_alive()
    assert sse_starlette.AppStatus.should_exit is True
    with served(settings_for(tmp_path / "two"), sources=[str(synthetic_clip)]) as second:
        assert sse_starlette.AppStatus.should_exit is False
        with second.client.stream("GET", "/api/stream", params={"after": "0-0"}) as stream:
            assert [m["event"] for m in sse_messages(stream, limit=2)] == ["observation", "observation"]


def test_open_streams_end_when_the_server_stops(tmp_path: Path) -> None:
    api = ServerThread(Service(settings_for(tmp_path / "home"), backend=frame_counter()))
    ended = threading.Event()
    with api as url:
        assert api.service.wait_ready(60)

        def listen() -> None:
            with httpx.stream("GET", f"{url}/api/stream", timeout=30) as stream:
                for _ in stream.iter_lines():
                    pass
            ended.set()

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        threading.Event().wait(0.5)  # the listener is connected
    assert ended.wait(5)  # the stream ended with the server, which did not wait out its grace period
