"""Deliveries through the outbox: retries, a receiver that is down, restarts, ``events deliver``."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from agent.core.config import Settings, load_settings
from agent.events.rule_engine import RuleEngine
from agent.events.ruleset import RuleSet, parse_rules
from agent.events.sinks import DeliveryError, Sender
from memory.events import Outbox
from memory.observation import Observation
from memory.store import Store

T0 = 1_700_000_000.0
SECRET = "s3cret"


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1 that answers 500 to its first ``fail`` requests.

    Its port is bound from the start, so no other process can take it; until :meth:`start` it
    does not listen, and connections to it are refused (a receiver that is down).
    """

    def __init__(self, fail: int = 0, *, up: bool = True) -> None:
        self.fail = fail
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self._serving: threading.Thread | None = None
        super().__init__(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        try:
            self.server_bind()
        except OSError:
            self.server_close()
            raise
        if up:
            self.start()

    def start(self) -> None:
        """Listen and answer on the port held since construction."""
        self.server_activate()
        self._serving = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._serving.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def accepted(self) -> list[dict]:
        return [json.loads(body) for _, body, status in self.requests if status == 200]

    def stop(self) -> None:
        if self._serving is not None:
            self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 500 if len(self.server.requests) < self.server.fail else 200
        self.server.requests.append((dict(self.headers), body, status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def ruleset(url: str) -> RuleSet:
    return parse_rules(
        f"""
questions: {{door_open: "Is the door open?"}}
sinks: {{hook: {{type: webhook, url: "{url}", secret_env: HOOK_SECRET, timeout_s: 2}}}}
rules:
  door_open: {{when: "door_open", severity: critical, message: "door open at $source"}}
"""
    )


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    return load_settings(events_backoff_s=0.05, events_backoff_max_s=0.2, events_close_s=1.0)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "scenewatch.db"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail=2)
    yield server
    server.stop()


def watch(engine: RuleEngine, store: Store, opens: int) -> None:
    """Observations where the door opens ``opens`` times (one event each)."""
    for index in range(opens * 2):
        obs = Observation(source="door", ts=T0 + index, answers={"door_open": index % 2 == 0})
        store.add(obs)
        engine.on_observation(obs)


def test_event_arrives_once_after_retries(receiver: Receiver, settings: Settings, db: Path) -> None:
    store = Store(db)
    engine = RuleEngine(ruleset(receiver.url), store, settings)
    watch(engine, store, opens=1)
    wait_for(lambda: len(receiver.accepted()) == 1)
    engine.close()
    assert [status for _, _, status in receiver.requests] == [500, 500, 200]
    headers, body, _ = receiver.requests[-1]
    assert {h["X-Scenewatch-Delivery"] for h, _, _ in receiver.requests} == {headers["X-Scenewatch-Delivery"]}
    assert len({b for _, b, _ in receiver.requests}) == 1  # the same bytes on every retry
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Scenewatch-Signature"] == expected
    event = json.loads(body)
    assert (event["rule"], event["severity"], event["message"], event["source"]) == (
        "door_open",
        "critical",
        "door open at door",
        "door",
    )
    [listed] = Outbox(store).events()
    assert listed["deliveries"] == [{"sink": "hook", "delivered": True, "attempts": 3, "error": None}]


def test_receiver_down_for_the_whole_watch_then_restart(settings: Settings, db: Path) -> None:
    receiver = Receiver(up=False)
    try:
        rules = ruleset(receiver.url)
        store = Store(db)
        engine = RuleEngine(rules, store, settings)
        watch(engine, store, opens=3)
        engine.close()  # a bounded last attempt; the receiver is still down
        assert Outbox(store).pending() == 3
        store.close()

        receiver.start()
        store = Store(db)
        restarted = RuleEngine(rules, store, settings)  # resumes the outbox at start
        wait_for(lambda: len(receiver.accepted()) == 3)
        wait_for(lambda: Outbox(store).pending() == 0)  # marked delivered: the close sends none again
        restarted.close()
        assert sorted(event["id"] for event in receiver.accepted()) == [1, 2, 3]
        assert len(receiver.requests) == 3  # none twice
        assert Outbox(store).pending() == 0
    finally:
        receiver.stop()


def _cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    from agent.cli.app import main

    monkeypatch.setattr(sys, "argv", ["scenewatch", *args])
    with pytest.raises(SystemExit) as caught:
        main()
    out, err = capsys.readouterr()
    return int(caught.value.code or 0), out, err


def test_events_deliver_after_an_outage(
    settings: Settings,
    scratch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver = Receiver(up=False)
    try:
        store = Store(settings.db_path)
        engine = RuleEngine(ruleset(receiver.url), store, settings)
        watch(engine, store, opens=2)
        engine.close()

        code, out, err = _cli(monkeypatch, capsys, "events", "deliver")
        assert code == 1 and "2 deliveries are still in the outbox" in err

        receiver.start()
        code, out, err = _cli(monkeypatch, capsys, "events", "deliver")
        assert code == 0, err
        assert "delivered 2, failed 0" in out
        code, out, err = _cli(monkeypatch, capsys, "events", "deliver")
        assert "delivered 0, failed 0" in out
        assert len(receiver.requests) == 2
    finally:
        receiver.stop()

    code, out, _ = _cli(monkeypatch, capsys, "events", "--json", "--rule", "door_open")
    listed = json.loads(out)
    assert [event["message"] for event in listed] == ["door open at door"] * 2
    assert all(event["deliveries"][0]["delivered"] for event in listed)
    code, out, _ = _cli(monkeypatch, capsys, "events", "--since", "1h")
    assert code == 0 and "no events" in out  # observation time is 2023, not the last hour
    code, out, _ = _cli(monkeypatch, capsys, "events")
    assert "door_open" in out and "1/1" in out


@pytest.mark.parametrize("command", [["events"], ["events", "deliver"]])
def test_events_without_a_database_create_none(
    command: list[str],
    settings: Settings,
    scratch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _cli(monkeypatch, capsys, *command)
    assert code == 1 and out == ""
    assert err.startswith("error: no observation database at ") and err.count("\n") == 1
    assert not settings.db_path.exists()
    assert [path for path in scratch_home.rglob("*") if path.is_file()] == []


def test_stdout_and_jsonl_sinks(tmp_path: Path) -> None:
    document = {
        "id": 1,
        "ts": T0,
        "source": "door",
        "rule": "door_open",
        "severity": "critical",
        "message": "[b]x",
    }
    printed = StringIO()
    sender = Sender(console=Console(file=printed, width=200))
    sender.send({"type": "stdout"}, document, delivery_id=1)
    assert "CRITICAL door door_open: [b]x" in printed.getvalue()  # user text is not markup
    sender.send({"type": "jsonl", "path": str(tmp_path / "a" / "events.jsonl")}, document, delivery_id=2)
    assert json.loads((tmp_path / "a" / "events.jsonl").read_text()) == document
    with pytest.raises(DeliveryError, match="cannot append"):
        sender.send({"type": "jsonl", "path": str(tmp_path)}, document, delivery_id=3)
    sender.close()
