"""MQTT (paho-mqtt 2): events as a sink, each source's state on retained topics, Home Assistant discovery.

Topics, after Frigate's layout (prefix ``scenewatch`` by default; ``<slug>`` is the source's
folder-safe name, :func:`~agent.pipeline.watch.source_slug`)::

    scenewatch/events                  each event, JSON (what a webhook gets: ``id`` is the event's
                                       id, the same on every retry, so a receiver drops a repeat)
    scenewatch/available               online / offline (retained; offline is also the will)
    scenewatch/<slug>/state            the latest observation: summary, people, rules (retained JSON)
    scenewatch/<slug>/summary          its summary (retained text)
    scenewatch/<slug>/people           its people count (retained number)
    scenewatch/<slug>/<rule>/state     ON while the rule's condition holds, else OFF (retained)
    homeassistant/binary_sensor/scenewatch_<slug>/<rule>/config   discovery (retained)

:class:`MqttSink` (sink type ``mqtt``) publishes events through the outbox: a delivery counts only
once the broker acknowledged it (QoS 1 by default); a broker that is down or does not answer fails
the delivery, which the outbox retries, so nothing is lost. A message that was not acknowledged is
dropped with its connection, never sent again behind the outbox's back, so a clean broker restart
delivers no event twice. :class:`MqttState` is an observation listener (after the rules engine) that
keeps the retained topics and discovery up to date, and publishes them again after each reconnect
and whenever Home Assistant announces itself (``online`` on ``homeassistant/status``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import Field, model_validator
from rich.console import Console

from agent.core.config import Settings
from agent.events.rule_engine import RuleEngine
from agent.events.sinks import ENV_NAME, DeliveryError, SinkSpec, encode, secret_from
from agent.pipeline.watch import source_slug
from memory.observation import Observation

log = logging.getLogger(__name__)

HA_STATUS = "homeassistant/status"
_TOPIC_PART = r"^[^#+\s]+$"
_RECONNECT_MAX_S = 30
_STATE_QUEUE = 1000  # state messages queued at most while (re)connecting; state is republished anyway


def _version() -> str:
    try:
        return version("scenewatch")
    except PackageNotFoundError:
        return "dev"


class MqttSpec(SinkSpec):
    """A broker and how scenewatch publishes there (an ``mqtt`` sink's entry in a rules file).
    ``discovery`` and ``discovery_prefix`` are for :class:`MqttState`; the sink publishes events only."""

    type: Literal["mqtt"] = "mqtt"
    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = Field(default="scenewatch", pattern=_TOPIC_PART)
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    password_env: str | None = Field(default=None, pattern=ENV_NAME)
    qos: Literal[0, 1, 2] = 1
    tls: bool = False
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    discovery: bool = False
    discovery_prefix: str = Field(default="homeassistant", pattern=_TOPIC_PART)

    @model_validator(mode="after")
    def _one_password(self) -> MqttSpec:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give either password or password_env, not both")
        return self


def mqtt_target(settings: Settings) -> dict[str, Any] | None:
    """The ``mqtt`` sink target the ``SCENEWATCH_MQTT_*`` settings describe (None: MQTT is off)."""
    if not settings.mqtt_host:
        return None
    spec = MqttSpec(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        topic_prefix=settings.mqtt_prefix,
        client_id=settings.mqtt_client_id,
        username=settings.mqtt_username,
        password=settings.mqtt_password,
        tls=settings.mqtt_tls,
        discovery=settings.mqtt_discovery,
    )
    return spec.target(settings.home)


class _Connection:
    """One paho client on its own network thread (from :meth:`start`), reconnecting by itself;
    ``on_connected`` runs on that thread after each connection."""

    def __init__(
        self,
        target: dict[str, Any],
        role: str,
        *,
        will: str | None = None,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.target = target
        self.where = f"{target['host']}:{target['port']}"
        self.connected = threading.Event()
        self.tried = threading.Event()  # a connection attempt has ended (well or not)
        self.problem = ""
        self.on_connected = on_connected
        client_id = f"{target['client_id']}-{role}" if target.get("client_id") else ""
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if target.get("username"):
            self.client.username_pw_set(target["username"], secret_from(target, "password"))
        if target.get("tls"):
            self.client.tls_set()
        if will is not None:
            self.client.will_set(will, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, _RECONNECT_MAX_S)
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected
        self.client.on_connect_fail = self._failed

    def start(self) -> _Connection:
        """Connect in the background (retrying until it works)."""
        self.client.connect_async(self.target["host"], int(self.target["port"]), keepalive=30)
        self.client.loop_start()
        return self

    def _connected(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self.problem = f"the broker refused the connection: {reason}"
            log.warning("MQTT %s: %s", self.where, self.problem)
        else:
            self.problem = ""
            self.connected.set()
            log.info("MQTT connected to %s", self.where)
            if self.on_connected is not None:
                self.on_connected()
        self.tried.set()

    def _disconnected(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self.connected.is_set():
            log.warning("MQTT %s: disconnected (%s); reconnecting", self.where, reason)
        self.connected.clear()
        self.problem = f"disconnected ({reason})"
        self.tried.set()

    def _failed(self, client: mqtt.Client, userdata: Any) -> None:
        self.problem = "cannot connect"
        self.tried.set()

    def ready(self, timeout: float) -> bool:
        """Connected; a new connection gets ``timeout`` for its first attempt, later ones fail at once."""
        self.tried.wait(timeout)
        return self.connected.is_set()

    def close(self, *, offline: str | None = None) -> None:
        """Disconnect (publishing ``offline`` on that topic first, if connected), stop the thread."""
        if offline is not None and self.connected.is_set():
            self.client.publish(offline, "offline", qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()


def _key(target: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(target.get(name) for name in ("host", "port", "client_id", "username", "tls"))


class MqttSink:
    """Publishes event documents to ``<topic_prefix>/events``; raises DeliveryError when the broker
    did not acknowledge them (the outbox retries)."""

    Spec = MqttSpec

    def __init__(self, console: Console) -> None:
        self._connections: dict[tuple[Any, ...], _Connection] = {}
        self._lock = threading.Lock()

    def send(
        self, target: dict[str, Any], document: dict[str, Any], *, delivery_id: int, timeout: float | None
    ) -> None:
        timeout = timeout or float(target.get("timeout_s", 5.0))
        connection = self._connection(target)
        if not connection.ready(timeout):
            raise DeliveryError(
                f"MQTT broker {connection.where}: {connection.problem or 'no connection yet'}"
            )
        topic = f"{target.get('topic_prefix', 'scenewatch')}/events"
        info = connection.client.publish(topic, encode(document), qos=int(target.get("qos", 1)))
        try:
            info.wait_for_publish(timeout)
            acknowledged = info.is_published()
        except (RuntimeError, ValueError) as exc:
            acknowledged, connection.problem = False, str(exc)
        if not acknowledged:
            self._drop(target)  # its queue holds the message: never let it go out after the retry
            raise DeliveryError(
                f"MQTT broker {connection.where} did not acknowledge event {document['id']} "
                f"within {timeout:g}s{f': {connection.problem}' if connection.problem else ''}"
            )

    def _connection(self, target: dict[str, Any]) -> _Connection:
        with self._lock:
            key = _key(target)
            if key not in self._connections:
                self._connections[key] = _Connection(target, "events").start()
            return self._connections[key]

    def _drop(self, target: dict[str, Any]) -> None:
        with self._lock:
            connection = self._connections.pop(_key(target), None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()


class MqttState:
    """An observation listener (after the rules engine) that publishes each source's state and rule
    states on retained topics and, with ``discovery``, one Home Assistant binary sensor per rule."""

    def __init__(self, target: dict[str, Any], rules: RuleEngine | None = None) -> None:
        self.target = target
        self.rules = rules
        self.prefix = target.get("topic_prefix", "scenewatch")
        self.available = f"{self.prefix}/available"
        self.discovery = bool(target.get("discovery"))
        self.discovery_prefix = target.get("discovery_prefix", "homeassistant")
        self._retained: dict[str, str] = {}  # topic -> latest payload, published again on reconnect
        self._sensors: dict[str, set[str]] = {}  # source -> rules with a discovery config
        self._lock = threading.Lock()
        self._connection = _Connection(target, "state", will=self.available, on_connected=self._republish)
        self._connection.client.max_queued_messages_set(_STATE_QUEUE)
        self._connection.client.on_message = self._message
        self._connection.start()

    def on_observation(self, obs: Observation) -> None:
        """Publish what changed: the source's state, people, summary, rule states; discovery of new rules."""
        slug = source_slug(obs.source)
        states = self.rules.rule_states(obs.source) if self.rules is not None else {}
        base = f"{self.prefix}/{slug}"
        updates = {
            f"{base}/state": json.dumps(
                {
                    "source": obs.source,
                    "ts": obs.ts,
                    "observation_id": obs.id,
                    "summary": obs.summary,
                    "people": obs.people,
                    "objects": obs.objects,
                    "rules": states,
                },
                ensure_ascii=False,
            ),
            f"{base}/summary": obs.summary,
            **({f"{base}/people": str(obs.people)} if obs.people is not None else {}),
            **{f"{base}/{rule}/state": "ON" if on else "OFF" for rule, on in states.items()},
        }
        with self._lock:
            known = self._sensors.setdefault(obs.source, set())
            gone = known - set(states)
            for rule in gone:  # a removed watch: its entity and state go too
                updates[f"{base}/{rule}/state"] = ""
                if self.discovery:
                    updates[self._config_topic(slug, rule)] = ""
            for rule in set(states) - known if self.discovery else ():
                updates[self._config_topic(slug, rule)] = json.dumps(self._config(obs.source, slug, rule))
            known.difference_update(gone)
            known.update(states)
            changed = {topic: value for topic, value in updates.items() if self._retained.get(topic) != value}
            for topic, value in changed.items():
                if value:
                    self._retained[topic] = value
                else:
                    self._retained.pop(topic, None)
        if self._connection.connected.is_set():
            for topic, value in changed.items():
                self._connection.client.publish(topic, value, qos=1, retain=True)

    def _config_topic(self, slug: str, rule: str) -> str:
        return f"{self.discovery_prefix}/binary_sensor/scenewatch_{slug}/{rule}/config"

    def _config(self, source: str, slug: str, rule: str) -> dict[str, Any]:
        """A Home Assistant binary sensor for ``rule`` on ``source`` (``default_entity_id``, not the
        deprecated ``object_id``)."""
        node = f"scenewatch_{slug}".replace("-", "_")
        name = source.rstrip("/").rsplit("/", 1)[-1] or source
        return {
            "name": rule.replace("_", " ").capitalize(),
            "unique_id": f"{node}_{rule}",
            "default_entity_id": f"binary_sensor.{node}_{rule}".lower(),
            "state_topic": f"{self.prefix}/{slug}/{rule}/state",
            "payload_on": "ON",
            "payload_off": "OFF",
            "availability_topic": self.available,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {
                "identifiers": [node],
                "name": f"scenewatch {name}",
                "manufacturer": "scenewatch",
                "model": "scenewatch serve",
                "sw_version": _version(),
            },
            "origin": {"name": "scenewatch", "sw_version": _version()},
        }

    def _republish(self) -> None:
        """On every (re)connect: online, then every retained topic (the broker may have lost them)."""
        client = self._connection.client
        client.publish(self.available, "online", qos=1, retain=True)
        if self.discovery:
            client.subscribe(HA_STATUS, qos=1)
        with self._lock:
            retained = dict(self._retained)
        for topic, value in retained.items():
            client.publish(topic, value, qos=1, retain=True)

    def _message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == HA_STATUS and message.payload == b"online":
            log.info("Home Assistant is online: publishing discovery again")
            self._republish()

    def close(self) -> None:
        """Publish ``offline`` and disconnect."""
        self._connection.close(offline=self.available)
