"""Where events go: sink plugins by type. scenewatch's own write a line on stdout, append a line to
a JSONL file, or POST signed JSON to a webhook; another package adds a type through the
``scenewatch.sinks`` entry-point group (:mod:`agent.core.plugins`).

A sink plugin is a class with a ``Spec`` (the pydantic model of its entry in a rules file, whose
``type`` field is the sink's name) built with the console that stdout sinks print to; its
``send`` raises :class:`DeliveryError` when the event was not accepted (the delivery is retried).

A webhook request carries the event as a JSON body and, when the sink has a secret, the header
``X-Scenewatch-Signature: sha256=<hex HMAC-SHA256 of the body>``. ``X-Scenewatch-Delivery`` is
the same on every retry of one delivery, so a receiver can drop a repeat it has already seen.

An event whose payload names a clip (a rule with ``clip:``) reaches every sink with ``clip_url``:
``/api/events/<id>/clip`` on ``scenewatch serve``, after ``SCENEWATCH_PUBLIC_URL`` when it is set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console
from rich.markup import escape

from agent.core.plugins import Registry

SIGNATURE_HEADER = "X-Scenewatch-Signature"
DELIVERY_HEADER = "X-Scenewatch-Delivery"
EVENT_HEADER = "X-Scenewatch-Event"
SEVERITY_STYLES = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class DeliveryError(RuntimeError):
    """A sink did not accept an event; the delivery is retried later."""


class SinkSpec(BaseModel):
    """A sink's entry in a rules file; subclasses add ``type: Literal[NAME]`` and their fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def target(self, base: Path) -> dict[str, Any]:
        """The target dict stored with each delivery; paths relative to ``base`` (the rules file's folder)."""
        return self.model_dump(mode="json", exclude_none=True)


class Sink(Protocol):
    """Sends event documents to targets of one sink type."""

    Spec: ClassVar[type[SinkSpec]]

    def send(
        self, target: dict[str, Any], document: dict[str, Any], *, delivery_id: int, timeout: float | None
    ) -> None: ...

    def close(self) -> None: ...


SINKS: Registry[type[Sink]] = Registry(
    "sink type",
    "scenewatch.sinks",
    {
        "stdout": "agent.events.sinks:StdoutSink",
        "jsonl": "agent.events.sinks:JsonlSink",
        "webhook": "agent.events.sinks:WebhookSink",
        "mqtt": "agent.events.mqtt:MqttSink",
    },
)


def encode(document: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed) for an event."""
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def clip_url(document: dict[str, Any], public_url: str | None = None) -> str | None:
    """Where the server serves the clip of an event document (None when it has none)."""
    if not document.get("payload", {}).get("clip"):
        return None
    return f"{(public_url or '').rstrip('/')}/api/events/{document['id']}/clip"


def sign(secret: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def secret_from(target: dict[str, Any], key: str = "secret") -> str | None:
    """A sink's secret: ``target[key]``, or the environment variable ``target[key + "_env"]`` names."""
    variable = target.get(f"{key}_env")
    if variable:
        secret = os.environ.get(variable)
        if not secret:
            raise DeliveryError(f"environment variable {variable} (the sink's {key}) is not set")
        return secret
    return target.get(key)


def missing_secrets(sinks: dict[str, dict[str, Any]]) -> list[str]:
    """``sink (VARIABLE)`` for each sink whose secret variable (a ``*_env`` field) is not set."""
    return [
        f"{name} ({variable})"
        for name, target in sinks.items()
        for key, variable in target.items()
        if key.endswith("_env") and not os.environ.get(variable)
    ]


class StdoutSink:
    """One coloured line per event on the console."""

    class Spec(SinkSpec):
        type: Literal["stdout"]

    def __init__(self, console: Console) -> None:
        self._console = console

    def send(
        self, target: dict[str, Any], document: dict[str, Any], *, delivery_id: int, timeout: float | None
    ) -> None:
        when = datetime.fromtimestamp(document["ts"]).strftime("%Y-%m-%d %H:%M:%S")
        style = SEVERITY_STYLES.get(document["severity"], "")
        self._console.print(
            f"{when} [{style}]{document['severity'].upper()}[/] {escape(document['source'])} "
            f"[bold]{escape(document['rule'])}[/]: {escape(document['message'])}",
            highlight=False,
        )

    def close(self) -> None:
        """Nothing to release."""


class JsonlSink:
    """One JSON line per event, appended to a file."""

    class Spec(SinkSpec):
        type: Literal["jsonl"]
        path: Path

        def target(self, base: Path) -> dict[str, Any]:
            return {**super().target(base), "path": str((base / self.path).resolve())}

    def __init__(self, console: Console) -> None:
        """No state: each event opens the file to append."""

    def send(
        self, target: dict[str, Any], document: dict[str, Any], *, delivery_id: int, timeout: float | None
    ) -> None:
        path = Path(target["path"])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(document, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise DeliveryError(f"cannot append to {path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Nothing to release."""


class WebhookSink:
    """A JSON POST per event, signed with HMAC-SHA256 when the sink has a secret."""

    class Spec(SinkSpec):
        type: Literal["webhook"]
        url: str = Field(pattern=r"^https?://\S+$")
        secret: str | None = None
        secret_env: str | None = Field(default=None, pattern=ENV_NAME)
        timeout_s: float = Field(default=5.0, gt=0, le=60)

        @model_validator(mode="after")
        def _one_secret(self) -> WebhookSink.Spec:
            if self.secret is not None and self.secret_env is not None:
                raise ValueError("give either secret or secret_env, not both")
            return self

    def __init__(self, console: Console) -> None:
        self._http = httpx.Client(follow_redirects=False, headers={"User-Agent": "scenewatch"})

    def send(
        self, target: dict[str, Any], document: dict[str, Any], *, delivery_id: int, timeout: float | None
    ) -> None:
        body = encode(document)
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: str(document["id"]),
            DELIVERY_HEADER: str(delivery_id),
        }
        secret = secret_from(target)
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        timeout = timeout or float(target.get("timeout_s", 5.0))
        try:
            response = self._http.post(target["url"], content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{target['url']}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"{target['url']} answered HTTP {response.status_code}")

    def close(self) -> None:
        self._http.close()


class Sender:
    """Sends an event document to a target of any sink type (a dict from the rules file); raises
    DeliveryError. One sink of each type is made when first needed."""

    def __init__(self, console: Console | None = None, *, public_url: str | None = None) -> None:
        self._console = console or Console()
        self._public_url = public_url
        self._sinks: dict[str, Sink] = {}

    def send(
        self,
        target: dict[str, Any],
        document: dict[str, Any],
        *,
        delivery_id: int,
        timeout: float | None = None,
    ) -> None:
        kind = str(target.get("type"))
        if kind not in self._sinks:
            try:
                self._sinks[kind] = SINKS.get(kind)(self._console)
            except Exception as exc:  # an unknown or broken sink plugin: a failed delivery, retried
                raise DeliveryError(str(exc)) from exc
        url = clip_url(document, self._public_url)
        if url is not None:
            document = {**document, "clip_url": url}
        self._sinks[kind].send(target, document, delivery_id=delivery_id, timeout=timeout)

    def close(self) -> None:
        for sink in self._sinks.values():
            sink.close()
        self._sinks.clear()
