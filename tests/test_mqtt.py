"""MQTT against a real mosquitto on a free local port: events through the outbox (a broker outage loses
none and repeats none), retained per-source state, Home Assistant discovery."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.core.config import load_settings
from agent.core.errors import ScenewatchError
from agent.events.delivery import DeliveryWorker
from agent.events.mqtt import MqttState, mqtt_target
from agent.events.rule_engine import RuleEngine
from agent.events.ruleset import RuleSet, StateChanges, parse_rules, watch_rule
from agent.events.sinks import DeliveryError, Sender
from agent.pipeline.watch import source_slug
from memory.events import NewEvent, Outbox
from memory.observation import Observation
from memory.store import Store

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
WAIT_S = 10.0  # the longest any test waits for a message or a connection
RECONNECT_S = 45.0  # the longest a client may take to reconnect (paho's backoff tops at 30 s)

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).is_file(), reason="mosquitto is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """A throwaway mosquitto on 127.0.0.1 (no persistence: a restart forgets retained messages)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
            "log_type error\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto failed: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
            time.sleep(0.05)
        raise TimeoutError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(WAIT_S)


class Subscriber:
    """A paho client that collects what arrives on ``topics`` and subscribes again after reconnects."""

    def __init__(self, port: int, *topics: str) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.subscriptions = 0  # one more after each (re)connection
        self._changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda client, *_: client.subscribe([(topic, 1) for topic in topics])
        self.client.on_subscribe = self._subscribed
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        self.wait_subscribed(1)

    def _subscribed(self, *_: Any) -> None:
        with self._changed:
            self.subscriptions += 1
            self._changed.notify_all()

    def wait_subscribed(self, count: int) -> None:
        """Wait until the ``count``-th subscription (the first, or the one after a reconnect) is made."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.subscriptions >= count, timeout=WAIT_S)

    def _message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))
            self._changed.notify_all()

    def wait_for(self, done: Callable[[list[tuple[str, str, bool]]], bool]) -> list[tuple[str, str, bool]]:
        """The messages so far, once ``done(messages)`` holds (fails after WAIT_S)."""
        with self._changed:
            assert self._changed.wait_for(lambda: done(self.messages), timeout=WAIT_S), self.messages
            return list(self.messages)

    def latest(self, topic: str) -> str | None:
        return next((payload for name, payload, _ in reversed(self.messages) if name == topic), None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path).start()
    yield running
    running.stop()


def target(port: int, **options: Any) -> dict[str, Any]:
    """An ``mqtt`` sink as a rules file gives it (checked by the sink's spec)."""
    entry = {"type": "mqtt", "host": "127.0.0.1", "port": port, "timeout_s": 2, **options}
    return parse_rules(json.dumps({"sinks": {"mqtt": entry}})).sinks["mqtt"]


def event(number: int, sink: dict[str, Any]) -> NewEvent:
    return NewEvent(
        ts=1000.0 + number,
        source="cam",
        rule="door_open",
        kind="rule",
        severity="warning",
        message=f"door open #{number}",
        sinks={"mqtt": sink},
    )


def test_events_wait_out_a_broker_outage_and_none_arrives_twice(broker: Broker, tmp_path: Path) -> None:
    sink = target(broker.port)
    store = Store(tmp_path / "events.db")
    outbox = Outbox(store)
    worker = DeliveryWorker(outbox, Sender(), backoff_s=0.05, backoff_max_s=0.2)
    listener = Subscriber(broker.port, "scenewatch/events")

    def deliver_all() -> None:
        """The outbox relay's retries, in bounded passes (the relay's thread does the same with backoff)."""
        deadline = time.monotonic() + RECONNECT_S
        while outbox.pending() and time.monotonic() < deadline:
            worker.deliver_pending(due_only=False)
            time.sleep(0.1)

    first = outbox.record([event(n, sink) for n in range(3)])
    deliver_all()
    assert outbox.pending() == 0

    broker.stop()
    second = outbox.record([event(n, sink) for n in range(3, 6)])
    report = worker.deliver_pending(due_only=False)
    assert (report.delivered, report.failed, outbox.pending()) == (0, 3, 3)
    errors = [d["error"] for e in outbox.events() for d in e["deliveries"] if d["error"]]
    assert len(errors) == 3 and all("MQTT broker 127.0.0.1:" in error for error in errors)

    broker.start()
    listener.wait_subscribed(2)  # subscribed again before anything is delivered
    deliver_all()
    assert outbox.pending() == 0
    received = listener.wait_for(lambda got: len(got) >= 6)
    time.sleep(0.5)  # a repeat would have come by now
    documents = [json.loads(payload) for _, payload, _ in listener.messages]
    # each once; retries may reorder them (a delivery that failed first can come after a later one)
    assert sorted(document["id"] for document in documents) == first + second
    by_id = {document["id"]: document for document in documents}
    assert by_id[second[1]]["message"] == "door open #4" and not any(retain for *_, retain in received)
    listener.close()
    worker.close()
    store.close()


def test_an_unreachable_broker_fails_the_delivery(tmp_path: Path) -> None:
    sender = Sender()
    document = {"id": 1, "payload": {}}
    down = target(free_port())
    for attempt in (1, 2):  # the second finds the same connection still retrying in the background
        with pytest.raises(DeliveryError, match=r"MQTT broker 127\.0\.0\.1:\d+: cannot connect"):
            sender.send(down, document, delivery_id=attempt)
    sender.close()


def test_state_and_discovery_on_retained_topics(broker: Broker, tmp_path: Path) -> None:
    settings = load_settings(db=tmp_path / "state.db", mqtt_host="127.0.0.1", mqtt_port=broker.port)
    sink = mqtt_target(settings)
    assert sink is not None and sink["type"] == "mqtt" and sink["topic_prefix"] == "scenewatch"
    store = Store(settings.db_path)
    rules = RuleSet({}, {}, (), StateChanges()).with_sink("mqtt", sink)
    rule_engine = RuleEngine(rules, store, settings)
    door_open = watch_rule("door_open", "Is the door open?", source="/videos/front door.mp4")
    rule_engine.add_rule(door_open, {"door_open": "Is the door open?"})
    state = MqttState({**sink, "discovery": True}, rule_engine)
    slug = source_slug("/videos/front door.mp4")
    config_topic = f"homeassistant/binary_sensor/scenewatch_{slug}/door_open/config"

    def observe(door: bool, ts: float) -> None:
        obs = Observation(
            source="/videos/front door.mp4", ts=ts, summary="a door", people=1, answers={"door_open": door}
        )
        store.add(obs)
        rule_engine.on_observation(obs)
        state.on_observation(obs)

    observe(False, 1000.0)  # connected or not yet: what is not sent now is sent on connecting
    observe(True, 1001.0)
    parts = ("state", "summary", "people", "door_open/state")
    wanted = {config_topic, "scenewatch/available"} | {f"scenewatch/{slug}/{part}" for part in parts}
    early = Subscriber(broker.port, "scenewatch/#", "homeassistant/#")
    early.wait_for(lambda got: wanted <= {topic for topic, _, _ in got})  # all published by now
    early.close()
    late = Subscriber(broker.port, "scenewatch/#", "homeassistant/#")  # gets them as retained messages
    got = late.wait_for(lambda got: wanted <= {topic for topic, _, retain in got if retain})
    retained = {topic: payload for topic, payload, retain in got if retain}
    assert retained["scenewatch/available"] == "online"
    assert retained[f"scenewatch/{slug}/door_open/state"] == "ON"
    assert retained[f"scenewatch/{slug}/people"] == "1" and retained[f"scenewatch/{slug}/summary"] == "a door"
    assert json.loads(retained[f"scenewatch/{slug}/state"])["rules"] == {"door_open": True}
    config = json.loads(retained[config_topic])
    node = f"scenewatch_{slug}".replace("-", "_")
    assert config["default_entity_id"] == f"binary_sensor.{node}_door_open" and "object_id" not in config
    assert config["state_topic"] == f"scenewatch/{slug}/door_open/state"
    assert config["availability_topic"] == "scenewatch/available"
    assert config["unique_id"] == f"{node}_door_open" and config["device"]["identifiers"] == [node]
    assert config["device"]["name"] == "scenewatch front door.mp4"

    configs = sum(topic == config_topic for topic, _, _ in late.messages)
    late.client.publish("homeassistant/status", "online", qos=1)  # Home Assistant restarted
    late.wait_for(lambda got: sum(topic == config_topic for topic, _, _ in got) > configs)

    broker.stop()  # a restart forgets retained messages: they are published again on reconnect
    late.close()
    broker.start()
    fresh = Subscriber(broker.port, "scenewatch/#", "homeassistant/#")
    fresh.wait_for(lambda got: {config_topic, f"scenewatch/{slug}/door_open/state"} <= {t for t, _, _ in got})
    assert fresh.latest(f"scenewatch/{slug}/door_open/state") == "ON"
    assert fresh.latest("scenewatch/available") == "online"

    rule_engine.remove_rule("door_open")  # a removed watch's entity is removed
    observe(False, 1002.0)
    fresh.wait_for(lambda got: (config_topic, "", True) in got or (config_topic, "", False) in got)
    state.close()
    fresh.wait_for(lambda got: got[-1][:2] == ("scenewatch/available", "offline"))
    assert fresh.latest("scenewatch/available") == "offline"
    fresh.close()
    rule_engine.close()
    store.close()


def test_the_spec_is_checked_in_rules_files() -> None:
    with pytest.raises(ScenewatchError, match="either password or password_env"):
        target(1883, password="x", password_env="MQTT_PASSWORD")
    with pytest.raises(ScenewatchError, match="unknown field 'prefix'"):
        target(1883, prefix="x")
    with pytest.raises(ScenewatchError, match="webhook secret not set for sink mqtt \\(NO_SUCH_VARIABLE\\)"):
        rules = RuleSet({}, {"mqtt": target(1883, password_env="NO_SUCH_VARIABLE")}, (), StateChanges())
        RuleEngine(rules, Store(":memory:"), load_settings())
    assert target(1883)["qos"] == 1 and target(1883)["discovery"] is False
